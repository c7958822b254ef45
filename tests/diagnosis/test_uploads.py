"""scan_upload: a good file becomes a scan with a queued prediction; a bad one leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from pydicom.data import get_testdata_file

from diagnosis.errors import ApplicationError, NotFound
from diagnosis.imaging import load_model_view
from diagnosis.models import Case, Prediction, Scan
from diagnosis.services.scans import scan_upload
from tests.factories import png_bytes


def _mr_small() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))


def _dicom_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _dicom_without_pixels() -> bytes:
    dataset = _mr_small()
    del dataset.PixelData
    return _dicom_bytes(dataset)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A small valid PNG whose header is rewritten to claim width x height pixels."""
    data = bytearray(png_bytes(8, 8))
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


def _files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def _upload(case: Case, name: str, data: bytes):
    return scan_upload(user=case.owner, case=case, uploaded_file=SimpleUploadedFile(name, data))


def test_png_upload_stores_the_scan_and_queues_its_prediction(
    case, media_root, django_capture_on_commit_callbacks
):
    data = png_bytes(40, 30)

    with django_capture_on_commit_callbacks() as callbacks:
        result = _upload(case, "C:\\scans\\spine.png", data)

    assert result.created
    assert (result.scan.original_name, result.scan.format) == ("spine.png", Scan.Format.PNG)
    assert (result.scan.width, result.scan.height) == (40, 30)
    assert result.prediction.status == Prediction.Status.QUEUED
    assert len(callbacks) == 1  # the task is sent only once the rows are committed
    assert [path.name for path in _files_under(media_root)] == [f"{hashlib.sha256(data).hexdigest()}.png"]
    np.testing.assert_array_equal(load_model_view(result.scan.file.path), load_model_view(data))


def test_png_with_appended_zip_and_html_is_stored_without_them_and_recognised_again(case, media_root):
    data = png_bytes(40, 30, value=90) + b"PK\x03\x04 a zip archive" + b"<html><body>page</body></html>"

    first = _upload(case, "spine.png", data)
    again = _upload(case, "spine-again.png", data)

    stored = first.scan.file.open("rb").read()
    assert stored.endswith(b"IEND\xaeB`\x82") and b"PK\x03\x04" not in stored and b"<html" not in stored
    assert first.scan.sha256 == hashlib.sha256(data).hexdigest()  # the original's, not the stored copy's
    assert not again.created and again.scan == first.scan
    assert (Scan.objects.count(), Prediction.objects.count(), len(_files_under(media_root))) == (1, 1, 1)


def test_jpeg_upload_is_stored_as_a_png_of_its_oriented_pixels(case, media_root):
    image = Image.new("L", (40, 30), 120)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif)

    scan = _upload(case, "spine.jpg", buffer.getvalue()).scan

    assert (scan.format, scan.width, scan.height) == (Scan.Format.PNG, 30, 40)
    assert scan.file.name.endswith(".png") and scan.original_name == "spine.jpg"
    assert Image.open(scan.file.path).size == (30, 40)


def test_same_bytes_uploaded_again_return_the_existing_scan(case, media_root):
    first = _upload(case, "a.png", png_bytes(value=7))
    again = _upload(case, "b.png", png_bytes(value=7))

    assert not again.created
    assert (again.scan, again.prediction) == (first.scan, first.prediction)
    assert (Scan.objects.count(), Prediction.objects.count(), len(_files_under(media_root))) == (1, 1, 1)


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("empty.png", b"", "empty"),
        ("notes.png", b"Patient notes, definitely not an image.\n" * 20, "unsupported_type"),
        ("cut.png", png_bytes(64, 64, value=50)[:-30], "corrupt_image"),
        ("cut.dcm", _dicom_bytes(_mr_small())[:5000], "dicom_unreadable"),
        ("header-only.dcm", _dicom_without_pixels(), "dicom_no_pixels"),
        ("bomb.png", _png_claiming_size(100_000, 100_000), "too_many_pixels"),
    ],
    ids=["zero-bytes", "text-named-png", "truncated-png", "truncated-dicom", "dicom-without-pixels", "huge"],
)
@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_bad_upload_is_refused_and_leaves_nothing(case, media_root, name, data, code):
    with pytest.raises(ApplicationError) as refused:
        _upload(case, name, data)

    assert refused.value.code == code
    assert refused.value.errors["file"][0].startswith(f"{name}: ")
    assert not Scan.objects.exists() and not Prediction.objects.exists()
    assert _files_under(media_root) == []


def test_file_over_the_size_limit_is_refused(case, media_root, settings):
    settings.LUMBAR_MAX_UPLOAD_BYTES = 1024 * 1024

    with pytest.raises(ApplicationError, match="larger than the limit of 1 MB"):
        _upload(case, "big.png", b"\x89PNG\r\n\x1a\n" + bytes(1024 * 1024))

    assert not Scan.objects.exists() and _files_under(media_root) == []


def test_upload_to_someone_elses_case_is_not_found(case, other_clinician, media_root):
    with pytest.raises(NotFound):
        scan_upload(user=other_clinician, case=case, uploaded_file=SimpleUploadedFile("a.png", png_bytes()))

    assert not Scan.objects.exists() and _files_under(media_root) == []
