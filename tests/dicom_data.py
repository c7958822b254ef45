"""DICOM MR series built from the sample PNGs, with the geometry a scanner writes, for the series, receiver
and report tests. Each instance is a complete MR Image object (dciodvfy finds no error in it)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

SAMPLE_PNGS = sorted((Path(__file__).parent / "data" / "sudirman_sample").glob("*/*.png"))
SIZE = 96  # pixels a side: small, so that a 15-slice series is read in well under a second

# ImageOrientationPatient (row, then column direction cosines) and the direction the slices step along.
PLANES = {
    "sagittal": ((0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0, 0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "axial": ((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
}
SLICE_GAP_MM = 4.0


def slice_pixels(index: int, size: int = SIZE) -> np.ndarray:
    """A sample slice as 12-bit MR values, different for each index."""
    image = Image.open(SAMPLE_PNGS[index % len(SAMPLE_PNGS)]).convert("L").resize((size, size))
    return (np.asarray(image, dtype=np.uint16) * 12 + index).astype(np.uint16)


def mr_instance(
    index: int,
    *,
    study_uid: str,
    series_uid: str,
    frame_of_reference_uid: str,
    plane: str = "sagittal",
    geometry: bool = True,
    patient_id: str = "WALK-0001",
    patient_name: str = "Walker^Ann",
    series_description: str = "T2 TSE SAG",
    size: int = SIZE,
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = "20261102", "101500"
    ds.ContentDate, ds.ContentTime = "20261102", "101800"
    ds.AccessionNumber = "A1001"
    ds.Modality = "MR"
    ds.Manufacturer = "Test scanner"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "MRI lumbar spine"
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "LSPINE"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = "4"
    ds.RepetitionTime = "3000"
    ds.EchoTime = "100"
    ds.EchoTrainLength = "16"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = "3"
    ds.InstanceNumber = str(index + 1)
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    if geometry:
        orientation, step = PLANES[plane]
        offset = (index - 7) * SLICE_GAP_MM
        ds.ImagePositionPatient = [f"{-100.0 + offset * s:g}" if s else "-100" for s in step]
        ds.ImageOrientationPatient = [f"{value:g}" for value in orientation]
        ds.SliceLocation = f"{offset:g}"
    else:
        ds.PatientOrientation = ["P", "F"]
    pixels = slice_pixels(index, size)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = ["1", "1"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def mr_series(count: int = 5, **kwargs) -> list[Dataset]:
    """The instances of one series, in acquisition order (instance numbers 1 to count)."""
    uids = {
        "study_uid": kwargs.pop("study_uid", None) or generate_uid(),
        "series_uid": kwargs.pop("series_uid", None) or generate_uid(),
        "frame_of_reference_uid": generate_uid(),
    }
    return [mr_instance(index, **uids, **kwargs) for index in range(count)]


def dicom_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_series(folder: Path, datasets: list[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in datasets:
        path = folder / f"{dataset.SOPInstanceUID}.dcm"
        path.write_bytes(dicom_bytes(dataset))
        paths.append(path)
    return paths
