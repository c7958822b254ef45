from __future__ import annotations

import hashlib
import io
import struct
import tracemalloc
import zipfile
import zlib

import cv2
import numpy as np
import pydicom
import pytest
from PIL import ExifTags, Image, ImageFile, PngImagePlugin
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from diagnosis.imaging import (
    DEIDENTIFICATION_METHOD,
    ImageRejected,
    inspect_upload,
    load_model_view,
)

# Every image is generated here or taken from the test files that ship inside pydicom (never downloaded).


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_header_size(width: int, height: int) -> bytes:
    """A few hundred bytes whose IHDR claims width x height 8-bit grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _gradient(rows: int = 48, columns: int = 40, maximum: int = 4000) -> np.ndarray:
    ramp = np.linspace(0, maximum, rows * columns)
    return np.rint(ramp).astype(np.uint16).reshape(rows, columns)


def _dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", **attributes: object) -> Dataset:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = MRImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.Modality = "MR"
    dataset.SeriesDescription = "T2 SAG"
    dataset.PixelSpacing = [0.5, 0.625]
    bits_stored = 8 if pixels.dtype == np.uint8 else 12
    dataset.set_pixel_data(pixels, photometric, bits_stored)
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


def _dicom_bytes(dataset: Dataset, transfer_syntax: str | None = None) -> bytes:
    if transfer_syntax == ExplicitVRBigEndian:
        # pydicom writes pixel data as given, so swap it to match the declared byte order.
        pixels = dataset.pixel_array
        dataset.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        dataset.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
    elif transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        dataset.file_meta.TransferSyntaxUID = transfer_syntax
    elif transfer_syntax is not None:
        dataset.compress(transfer_syntax)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """Encode one grey frame as JPEG lossless, process 14, predictor 1 (left neighbour).

    pydicom has no encoder for this family, and the decoder deserves a test, so this is the minimal
    encoder: one Huffman table giving every difference category 0-16 a 5-bit code.
    """
    samples = pixels.astype(np.int64)
    prediction = np.empty_like(samples)
    prediction[0, 0] = 1 << (precision - 1)
    prediction[0, 1:] = samples[0, :-1]
    prediction[1:, 0] = samples[:-1, 0]  # the first column of later rows predicts from above
    prediction[1:, 1:] = samples[1:, :-1]
    bits: list[str] = []
    for difference in ((samples - prediction) % 65536).ravel().tolist():
        difference = difference - 65536 if difference >= 32768 else difference
        category = abs(difference).bit_length()
        bits.append(f"{category:05b}")
        if 0 < category < 16:
            extra = difference if difference > 0 else difference + (1 << category) - 1
            bits.append(f"{extra:0{category}b}")
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    scan = int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")
    rows, columns = pixels.shape
    huffman = bytes([0x00] + [0, 0, 0, 0, 17] + [0] * 11 + list(range(17)))
    return (
        b"\xff\xd8"
        + b"\xff\xc4" + struct.pack(">H", 2 + len(huffman)) + huffman
        + b"\xff\xc3" + struct.pack(">HBHHBBBB", 11, precision, rows, columns, 1, 1, 0x11, 0)
        + b"\xff\xda" + struct.pack(">HBBBBBB", 8, 1, 1, 0x00, 1, 0, 0)
        + scan
        + b"\xff\xd9"
    )  # fmt: skip


def _sample(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} should ship with pydicom"
    with open(path, "rb") as sample:
        return sample.read()


def _rejection_code(data: bytes, **limits: int) -> str:
    with pytest.raises(ImageRejected) as caught:
        inspect_upload(data, **limits)
    assert str(caught.value)  # every refusal carries a readable reason
    return caught.value.code


# PNG and JPEG --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "expected_dtype"),
    [
        (np.arange(30 * 20, dtype=np.uint8).reshape(30, 20), np.uint8),
        (np.full((30, 20, 3), (200, 100, 50), dtype=np.uint8), np.uint8),
        (np.full((30, 20, 4), (200, 100, 50, 128), dtype=np.uint8), np.uint8),
        (np.arange(30 * 20, dtype=np.uint16).reshape(30, 20) * 100, np.uint16),
    ],
    ids=["grey8", "rgb", "rgba", "grey16"],
)
def test_png_is_accepted_and_viewed_as_2d_grey(array: np.ndarray, expected_dtype: type) -> None:
    data = _png(array)

    inspected = inspect_upload(data)
    view = load_model_view(data)

    assert (inspected.format, inspected.width, inspected.height) == ("png", 20, 30)
    assert inspected.sha256 == hashlib.sha256(data).hexdigest()
    assert inspected.dicom is None
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), view)
    assert view.shape == (30, 20) and view.dtype == expected_dtype
    if array.ndim == 2:
        np.testing.assert_array_equal(view, array)
    else:
        assert np.all(view == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50))


def test_16_bit_rgb_png_view_keeps_16_bits(tmp_path) -> None:
    bgr = np.zeros((10, 12, 3), dtype=np.uint16)
    bgr[..., 2] = 60000  # OpenCV order: this is the red channel
    ok, encoded = cv2.imencode(".png", bgr)
    assert ok
    path = tmp_path / "scan.png"
    path.write_bytes(encoded.tobytes())

    view = load_model_view(path)

    assert view.dtype == np.uint16 and view.shape == (10, 12)
    assert np.all(view == round(0.299 * 60000))


def test_jpeg_is_accepted_and_viewed_as_2d_grey() -> None:
    data = _jpeg(np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1)))

    inspected = inspect_upload(data)
    view = load_model_view(data)

    assert (inspected.format, inspected.width, inspected.height) == ("png", 64, 32)
    assert inspected.sha256 == hashlib.sha256(data).hexdigest()
    assert view.shape == (32, 64) and view.dtype == np.uint8


# Stored bytes: re-encoded from the decoded pixels ---------------------------------------------------------


def _png_chunks(data: bytes) -> list[bytes]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        chunks.append(data[position + 4 : position + 8])
        position += 12 + length
    assert position == len(data), "bytes after the last chunk"
    return chunks


def _zip_with_html() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<html><script>alert(document.cookie)</script></html>")
    return buffer.getvalue()


def _with_exif(array: np.ndarray, image_format: str, **tags: object) -> bytes:
    image = Image.fromarray(array)
    exif = image.getexif()
    for name, value in tags.items():
        exif[ExifTags.Base[name]] = value
    buffer = io.BytesIO()
    extra = {"quality": 95, "comment": b"Patient John Smith"} if image_format == "JPEG" else {}
    image.save(buffer, format=image_format, exif=exif, **extra)
    return buffer.getvalue()


def test_png_with_a_zip_and_an_html_page_appended_is_stored_without_them() -> None:
    array = np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)
    data = _png(array) + _zip_with_html() + b"<!doctype html><html><body>hello</body></html>"

    inspected = inspect_upload(data)

    assert inspected.sha256 == hashlib.sha256(data).hexdigest()  # of what was uploaded
    assert _png_chunks(inspected.stored_bytes) == [b"IHDR", b"IDAT", b"IEND"]
    assert b"PK\x03\x04" not in inspected.stored_bytes and b"html" not in inspected.stored_bytes
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), array)


def test_png_text_chunks_and_exif_are_removed() -> None:
    array = np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "John Smith")
    text.add_itxt("Comment", "MRN-123456", zip=True)
    exif = Image.Exif()
    exif[ExifTags.Base.BodySerialNumber] = "SN-98765"
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", pnginfo=text, exif=exif, dpi=(300, 300))
    data = buffer.getvalue()
    assert {b"tEXt", b"iTXt", b"eXIf", b"pHYs"} <= set(_png_chunks(data))

    inspected = inspect_upload(data)

    assert _png_chunks(inspected.stored_bytes) == [b"IHDR", b"IDAT", b"IEND"]
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), array)


def test_jpeg_is_stored_as_lossless_png_of_its_pixels_without_exif() -> None:
    array = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    data = _with_exif(array, "JPEG", BodySerialNumber="SN-98765", DateTimeOriginal="2026:01:02 03:04:05")

    inspected = inspect_upload(data)

    assert inspected.format == "png"
    assert _png_chunks(inspected.stored_bytes) == [b"IHDR", b"IDAT", b"IEND"]
    for secret in (b"SN-98765", b"2026:01:02", b"John Smith"):
        assert secret not in inspected.stored_bytes
    # Exactly the pixels the original decodes to: no second round of JPEG loss for the model.
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), load_model_view(data))


def test_cmyk_jpeg_is_stored_as_rgb_with_the_same_grey_view() -> None:
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 8), (10, 80, 160, 20)).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()

    inspected = inspect_upload(data)

    assert Image.open(io.BytesIO(inspected.stored_bytes)).mode == "RGB"
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), load_model_view(data))


# The EXIF orientation tag (TIFF 274) says how to turn the stored pixels for display.
ORIENTED = {
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # rotated 90 clockwise
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # transversed
    8: lambda a: np.rot90(a, 1),  # rotated 90 counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(ORIENTED))
def test_exif_orientation_is_applied_to_the_stored_pixels(orientation: int) -> None:
    array = np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)
    data = _with_exif(array, "PNG", Orientation=orientation)

    inspected = inspect_upload(data)

    expected = ORIENTED[orientation](array)
    assert (inspected.height, inspected.width) == expected.shape
    assert _png_chunks(inspected.stored_bytes) == [b"IHDR", b"IDAT", b"IEND"]
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), expected)


def test_exif_orientation_of_a_jpeg_is_applied() -> None:
    array = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    data = _with_exif(array, "JPEG", Orientation=6)

    inspected = inspect_upload(data)

    assert (inspected.width, inspected.height) == (32, 64)
    np.testing.assert_array_equal(
        load_model_view(inspected.stored_bytes), np.rot90(load_model_view(data), -1)
    )


def test_16_bit_grey_png_is_stored_losslessly_in_16_bits() -> None:
    array = _gradient(maximum=65535)
    data = _png(array) + b"trailing"

    stored = inspect_upload(data).stored_bytes

    assert stored[24:26] == bytes([16, 0])  # IHDR: bit depth 16, greyscale
    view = load_model_view(stored)
    assert view.dtype == np.uint16
    np.testing.assert_array_equal(view, array)


@pytest.mark.parametrize("orientation", [1, 6, 7])
def test_16_bit_colour_png_is_stored_in_16_bits_and_oriented(orientation: int) -> None:
    bgr = np.zeros((10, 12, 3), dtype=np.uint16)
    bgr[..., 2] = np.arange(120, dtype=np.uint16).reshape(10, 12) * 500  # OpenCV order: red
    ok, encoded = cv2.imencode(".png", bgr)
    assert ok
    data = encoded.tobytes()
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    data = data[:33] + _png_chunk(b"eXIf", exif.tobytes()) + data[33:]  # right after IHDR

    inspected = inspect_upload(data)

    assert inspected.stored_bytes[24:26] == bytes([16, 2])  # IHDR: bit depth 16, RGB
    assert b"eXIf" not in inspected.stored_bytes
    original_view = load_model_view(data)
    expected = ORIENTED[orientation](original_view) if orientation in ORIENTED else original_view
    assert (inspected.height, inspected.width) == expected.shape
    view = load_model_view(inspected.stored_bytes)
    assert view.dtype == np.uint16
    np.testing.assert_array_equal(view, expected)


def test_text_file_named_png_is_refused_as_unsupported(tmp_path) -> None:
    path = tmp_path / "scan.png"
    path.write_text("Patient: John Smith\nnot really an image\n" * 20)

    assert _rejection_code(path.read_bytes()) == "unsupported_type"
    with pytest.raises(ImageRejected, match="not a PNG, JPEG or DICOM file"):
        load_model_view(path)


@pytest.mark.parametrize(
    ("data", "limits", "code"),
    [
        (b"", {}, "empty"),
        pytest.param(
            b"\x08\x00\x05\x00" + bytes(range(256)) * 4,  # starts like a DICOM element, then junk
            {},
            "unsupported_type",
            marks=pytest.mark.filterwarnings("ignore:Unknown encoding"),
        ),
        (_png(np.zeros((64, 64), dtype=np.uint8)), {"max_bytes": 50}, "too_large"),
        (
            _png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))[:-400],
            {},
            "corrupt_image",
        ),
        (
            _jpeg(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))[:-400],
            {},
            "corrupt_image",
        ),
        (_png(np.zeros((64, 64), dtype=np.uint8)), {"max_pixels": 64 * 63}, "too_many_pixels"),
    ],
    ids=["zero-bytes", "binary-junk", "over-size", "truncated-png", "truncated-jpeg", "over-pixel-limit"],
)
def test_bad_uploads_are_refused_with_their_code(data: bytes, limits: dict[str, int], code: str) -> None:
    assert _rejection_code(data, **limits) == code


@pytest.mark.parametrize(
    ("width", "height"),
    [(100_000, 100_000), (10_000, 5_000)],
    ids=["beyond-pillow-bomb-limit", "beyond-our-limit-only"],
)
def test_png_header_claiming_huge_size_is_refused_without_decoding(width: int, height: int) -> None:
    data = _png_with_header_size(width, height)

    tracemalloc.start()
    try:
        code = _rejection_code(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert code == "too_many_pixels"
    assert peak < 5 * 1024 * 1024


def test_truncated_images_are_never_accepted_even_if_pillow_is_told_to_load_them(monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)

    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        inspect_upload(_png(np.zeros((8, 8), dtype=np.uint8)))


# DICOM: model view ---------------------------------------------------------------------------------------


def test_dicom_window_tags_set_the_view() -> None:
    pixels = np.array([[800, 999, 1000, 1200]], dtype=np.uint16).repeat(4, axis=0)
    data = _dicom_bytes(_dicom(pixels, WindowCenter=1000, WindowWidth=401))

    view = load_model_view(data)

    assert view.dtype == np.uint8 and view.shape == (4, 4)
    np.testing.assert_array_equal(view[0], [0, 127, 128, 255])


def test_dicom_first_of_several_windows_is_used() -> None:
    pixels = np.array([[800, 999, 1000, 1200]], dtype=np.uint16).repeat(4, axis=0)
    data = _dicom_bytes(_dicom(pixels, WindowCenter=[1000, 40], WindowWidth=[401, 80]))

    np.testing.assert_array_equal(load_model_view(data)[0], [0, 127, 128, 255])


def test_dicom_rescale_is_applied_before_the_window() -> None:
    # The window is in rescaled (e.g. Hounsfield) units, so it only fits after slope and intercept.
    stored = np.array([[412, 512, 537, 612]], dtype=np.uint16).repeat(4, axis=0)  # -200, 0, 50, 200
    dataset = _dicom(stored, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=201)

    np.testing.assert_array_equal(load_model_view(_dicom_bytes(dataset))[0], [0, 128, 192, 255])


def test_monochrome1_is_inverted_so_bright_means_high_signal() -> None:
    pixels = _gradient()
    window = {"WindowCenter": 2000, "WindowWidth": 4000}

    monochrome2 = load_model_view(_dicom_bytes(_dicom(pixels, "MONOCHROME2", **window)))
    monochrome1 = load_model_view(_dicom_bytes(_dicom(pixels, "MONOCHROME1", **window)))

    np.testing.assert_array_equal(monochrome1, 255 - monochrome2)
    assert monochrome1[0, 0] == 255 and monochrome1[-1, -1] == 0


def test_dicom_without_window_uses_a_percentile_window() -> None:
    pixels = _gradient(rows=100, columns=100, maximum=1000)
    pixels[0, 0] = 4095  # a hot pixel must not squash the rest of the image

    view = load_model_view(_dicom_bytes(_dicom(pixels)))

    assert view.min() == 0 and view.max() == 255
    assert 120 <= view[50, 0] <= 135  # the middle of the ramp stays mid-grey


@pytest.mark.parametrize(
    "transfer_syntax",
    [
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ImplicitVRLittleEndian,
        RLELossless,
        JPEGLSLossless,
        JPEG2000Lossless,
    ],
    ids=lambda uid: uid.name,
)
def test_generated_dicom_in_each_lossless_transfer_syntax_gives_the_same_view(transfer_syntax: str) -> None:
    pixels = _gradient()
    reference = load_model_view(_dicom_bytes(_dicom(pixels)))
    data = _dicom_bytes(_dicom(pixels), transfer_syntax)

    inspected = inspect_upload(data)

    assert inspected.dicom is not None and inspected.dicom.transfer_syntax == transfer_syntax
    assert (inspected.width, inspected.height) == (40, 48)
    np.testing.assert_array_equal(load_model_view(data), reference)
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), reference)


def test_generated_jpeg_baseline_dicom_is_decoded() -> None:
    pixels = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (32, 1))
    dataset = _dicom(pixels)
    dataset.PixelData = encapsulate([_jpeg(pixels)])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit

    inspected = inspect_upload(_dicom_bytes(dataset))
    view = load_model_view(inspected.stored_bytes)

    assert inspected.dicom is not None and inspected.dicom.transfer_syntax == JPEGBaseline8Bit
    assert np.abs(view.astype(int) - pixels.astype(int)).max() <= 8  # lossy, and percentile-windowed


@pytest.mark.parametrize("transfer_syntax", [JPEGLosslessSV1, JPEGLossless], ids=lambda uid: uid.name)
def test_generated_jpeg_lossless_dicom_gives_the_same_view(transfer_syntax: str) -> None:
    pixels = _gradient()
    reference = load_model_view(_dicom_bytes(_dicom(pixels)))
    dataset = _dicom(pixels)
    dataset.PixelData = encapsulate([_jpeg_lossless(pixels, precision=12)])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = transfer_syntax

    inspected = inspect_upload(_dicom_bytes(dataset))

    assert inspected.dicom is not None and inspected.dicom.transfer_syntax == transfer_syntax
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), reference)


LOSSLESS_MR_SAMPLES = [
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
]


@pytest.mark.parametrize("name", LOSSLESS_MR_SAMPLES)
def test_pydicom_mr_samples_in_every_lossless_syntax_give_the_same_view(name: str) -> None:
    reference = load_model_view(_sample("MR_small.dcm"))

    inspected = inspect_upload(_sample(name))

    assert (inspected.format, inspected.width, inspected.height) == ("dicom", 64, 64)
    assert inspected.dicom is not None and inspected.dicom.modality == "MR"
    np.testing.assert_array_equal(load_model_view(_sample(name)), reference)
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), reference)


@pytest.mark.parametrize(
    ("name", "transfer_syntax", "size"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", (100, 100)),  # JPEG baseline, YBR_FULL
        ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", (256, 1024)),  # JPEG extended, 12-bit
        ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81", (10, 50)),  # JPEG-LS near-lossless
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", (256, 1024)),  # JPEG 2000 lossy
        ("SC_rgb_rle_2frame.dcm", "1.2.840.10008.1.2.5", (100, 100)),  # RLE, RGB, 2 frames
    ],
)
def test_pydicom_compressed_samples_are_accepted(
    name: str, transfer_syntax: str, size: tuple[int, int]
) -> None:
    inspected = inspect_upload(_sample(name))
    view = load_model_view(inspected.stored_bytes)

    assert inspected.dicom is not None and inspected.dicom.transfer_syntax == transfer_syntax
    assert (inspected.width, inspected.height) == size
    assert view.dtype == np.uint8 and view.shape == size[::-1]
    assert view.max() > view.min()
    if name == "SC_rgb_rle_2frame.dcm":
        assert inspected.dicom.note == "frame 1 of 2 used"


def test_multi_frame_dicom_uses_the_middle_frame_and_says_so() -> None:
    # Frame k holds values k*100 .. k*100+99; the window only shows frame 5 (0-based) as a ramp.
    ramp = np.arange(100, dtype=np.uint16).reshape(10, 10)
    frames = np.stack([ramp + 100 * k for k in range(12)])
    dataset = _dicom(frames, WindowCenter=550, WindowWidth=100)

    inspected = inspect_upload(_dicom_bytes(dataset, RLELossless))
    view = load_model_view(inspected.stored_bytes)

    assert inspected.dicom is not None
    assert (inspected.dicom.frame_index, inspected.dicom.frame_count) == (5, 12)
    assert inspected.dicom.note == "frame 6 of 12 used"
    assert view.shape == (10, 10) and view[0, 0] <= 3 and view[-1, -1] >= 252


def test_enhanced_multi_frame_window_and_spacing_come_from_the_functional_groups() -> None:
    ramp = np.arange(100, dtype=np.uint16).reshape(10, 10)
    frames = np.stack([ramp + 100 * k for k in range(3)])
    dataset = _dicom(frames)
    del dataset.PixelSpacing
    voi, measures, shared = Dataset(), Dataset(), Dataset()
    voi.WindowCenter, voi.WindowWidth = 150, 100
    measures.PixelSpacing = [0.8, 0.9]
    shared.FrameVOILUTSequence = [voi]
    shared.PixelMeasuresSequence = [measures]
    dataset.SharedFunctionalGroupsSequence = [shared]

    inspected = inspect_upload(_dicom_bytes(dataset))
    view = load_model_view(inspected.stored_bytes)

    assert inspected.dicom is not None and inspected.dicom.pixel_spacing == [0.8, 0.9]
    assert view[0, 0] <= 3 and view[-1, -1] >= 252  # frame 1 (values 100-199) fills the window


def test_dicom_metadata_is_extracted() -> None:
    dataset = _dicom(_gradient())

    info = inspect_upload(_dicom_bytes(dataset)).dicom

    assert info is not None
    assert (info.study_uid, info.series_uid, info.instance_uid) == (
        dataset.StudyInstanceUID,
        dataset.SeriesInstanceUID,
        dataset.SOPInstanceUID,
    )
    assert (info.modality, info.series_description) == ("MR", "T2 SAG")
    assert info.pixel_spacing == [0.5, 0.625]
    assert (info.frame_index, info.frame_count, info.note) == (0, 1, None)
    assert info.photometric_interpretation == "MONOCHROME2"


def test_dicom_without_preamble_is_recognised_by_content() -> None:
    dataset = _dicom(_gradient())
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, implicit_vr=False, little_endian=True)  # no preamble, no file meta
    data = buffer.getvalue()
    assert data[128:132] != b"DICM"

    inspected = inspect_upload(data)

    assert inspected.format == "dicom" and inspected.stored_bytes[128:132] == b"DICM"
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), load_model_view(data))


# DICOM: refusals -----------------------------------------------------------------------------------------


def test_dicom_without_pixel_data_is_refused() -> None:
    dataset = _dicom(_gradient())
    del dataset.PixelData

    with pytest.raises(ImageRejected, match="DICOM file has no pixel data") as caught:
        inspect_upload(_dicom_bytes(dataset))
    assert caught.value.code == "dicom_no_pixels"
    assert _rejection_code(_sample("rtplan.dcm")) == "dicom_no_pixels"
    assert _rejection_code(_sample("ExplVR_BigEndNoMeta.dcm")) == "dicom_no_pixels"  # no preamble either


@pytest.mark.parametrize(
    "data",
    [
        _sample("MR_small.dcm")[:5000],
        _sample("MR_small.dcm")[:1000],
        _sample("MR_small.dcm")[:300],
        _sample("MR_small_jpeg_ls_lossless.dcm")[:3000],
        _sample("MR_small_jpeg_ls_lossless.dcm")[:-1],
        _sample("MR_truncated.dcm"),
    ],
    ids=[
        "cut-in-pixel-data",
        "cut-in-dataset",
        "cut-after-meta",
        "cut-in-jpeg-ls",
        "last-byte-cut",
        "pydicom-sample",
    ],
)
@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_truncated_dicom_is_refused(data: bytes) -> None:
    assert _rejection_code(data) == "dicom_unreadable"


def test_palette_colour_dicom_is_refused() -> None:
    assert _rejection_code(_sample("examples_palette.dcm")) == "dicom_unsupported_photometric"


def test_dicom_pixel_limit_is_checked_on_the_header_before_decoding() -> None:
    dataset = _dicom(_gradient())
    dataset.Rows, dataset.Columns = 30_000, 30_000

    assert _rejection_code(_dicom_bytes(dataset)) == "too_many_pixels"


def test_compressed_frame_larger_than_its_header_is_refused_before_decoding() -> None:
    dataset = _dicom(_gradient(rows=64, columns=64))
    dataset.compress(JPEGLSLossless)
    dataset.Rows, dataset.Columns = 8, 8  # a small header hiding a bigger codestream

    assert _rejection_code(_dicom_bytes(dataset)) == "dicom_unreadable"


def test_deflated_dicom_is_refused_before_inflating() -> None:
    data = _dicom_bytes(_dicom(_gradient()), DeflatedExplicitVRLittleEndian)

    assert _rejection_code(data) == "dicom_unsupported_transfer_syntax"


# DICOM: de-identification --------------------------------------------------------------------------------


def test_stored_dicom_copy_is_deidentified_but_keeps_uids_and_pixels() -> None:
    dataset = _dicom(
        _gradient(),
        PatientName="Smith^John",
        PatientID="MRN-123456",
        PatientBirthDate="19600101",
        PatientSex="M",
        PatientAddress="1 High Street",
        OtherPatientIDs="OLD-1",
        InstitutionName="St Elsewhere",
        InstitutionAddress="2 Hospital Road",
        ReferringPhysicianName="House^Gregory",
        OperatorsName="Tech^Tina",
        AccessionNumber="ACC42",
        StudyID="S1",
        StudyDate="20250102",
        DeviceSerialNumber="SN-99",
        WindowCenter=2000,
        WindowWidth=4000,
    )
    referenced = Dataset()
    referenced.ReferencedSOPInstanceUID = generate_uid()
    referenced.OperatorsName = "Nested^Name"
    dataset.ReferencedImageSequence = [referenced]
    dataset.add_new(0x00091001, "LO", "private vendor note")
    dataset.add_new(0x60004000, "LT", "overlay comment naming Smith")
    dataset.add_new(0x00100000, "UL", 999)  # a stale group length
    original = _dicom_bytes(dataset)

    inspected = inspect_upload(original)
    stored = pydicom.dcmread(io.BytesIO(inspected.stored_bytes))

    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "InstitutionName"):
        assert not stored.get(keyword), keyword
    for keyword in ("PatientAddress", "OtherPatientIDs", "InstitutionAddress", "StudyDate", "StudyID"):
        assert not stored.get(keyword), keyword
    for keyword in ("ReferringPhysicianName", "OperatorsName", "AccessionNumber", "DeviceSerialNumber"):
        assert not stored.get(keyword), keyword
    assert not stored.ReferencedImageSequence[0].get("OperatorsName")
    assert all(tag not in stored for tag in (0x00091001, 0x60004000, 0x00100000))
    assert b"Smith" not in inspected.stored_bytes and b"MRN-123456" not in inspected.stored_bytes
    assert stored.PatientIdentityRemoved == "YES"
    assert stored.DeidentificationMethod == DEIDENTIFICATION_METHOD
    assert [code.CodeValue for code in stored.DeidentificationMethodCodeSequence] == ["113100", "113108"]
    assert (stored.StudyInstanceUID, stored.SeriesInstanceUID, stored.SOPInstanceUID) == (
        dataset.StudyInstanceUID,
        dataset.SeriesInstanceUID,
        dataset.SOPInstanceUID,
    )
    assert stored.ReferencedImageSequence[0].ReferencedSOPInstanceUID == referenced.ReferencedSOPInstanceUID
    np.testing.assert_array_equal(stored.pixel_array, _gradient())
    np.testing.assert_array_equal(load_model_view(inspected.stored_bytes), load_model_view(original))
    assert inspected.sha256 == hashlib.sha256(original).hexdigest()  # of the upload, not the stored copy
