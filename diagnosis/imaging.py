"""Validation, de-identification and decoding of uploaded scan images (PNG, JPEG, DICOM).

What is stored is never the uploaded file itself. DICOM is de-identified. PNG and JPEG are re-encoded from
their decoded pixels as PNG: that drops anything hidden after the image data or in metadata (EXIF with
dates and device serials, text chunks, ICC profiles), applies the EXIF orientation to the pixels, and keeps
every decoded value. JPEG is stored as lossless PNG rather than re-compressed as JPEG, so the stored scan,
and the image the model reads, are exactly the pixels of the upload with no second generation of JPEG loss;
the scan's format is then "png", which is what the stored file is.

Django-free on purpose: the upload service passes its configured limits in, and the Celery worker calls
`load_model_view` on stored files without touching the web stack.
"""

from __future__ import annotations

import hashlib
import io
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pydicom.dataelem
import pydicom.encaps
import pydicom.filereader
import pydicom.pixels
from PIL import ExifTags, Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from ml.errors import ImageError
from ml.preprocessing import (
    DEFAULT_MAX_PIXELS,
    JPEG_SOI,
    LUMA_WEIGHTS,
    PNG_SIGNATURE,
    check_pixel_count,
    decode_16_bit_png_pixels,
    decode_grey,
    open_raster,
    png_is_16_bit_colour,
)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"

UNCOMPRESSED_TRANSFER_SYNTAXES = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
)
JPEG_TRANSFER_SYNTAXES = frozenset(
    {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless}
)
JPEG2000_TRANSFER_SYNTAXES = frozenset({JPEG2000Lossless, JPEG2000})
SUPPORTED_TRANSFER_SYNTAXES = (
    UNCOMPRESSED_TRANSFER_SYNTAXES | JPEG_TRANSFER_SYNTAXES | JPEG2000_TRANSFER_SYNTAXES | {RLELossless}
)

MONOCHROME_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2"})
COLOUR_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})

# ITU-R BT.601 luma, the same weights Pillow uses for convert("L"), so PNG/JPEG and DICOM colour
# images turn grey the same way.

PERCENTILE_WINDOW = (0.5, 99.5)

# PS3.16 CID 7050 codes recorded in DeidentificationMethodCodeSequence.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
RETAIN_UIDS_CODE = ("113108", "Retain UIDs Option")
# DeidentificationMethod is LO: at most 64 characters.
DEIDENTIFICATION_METHOD = "PS3.15 E.1-1 Basic Profile with Retain UIDs Option"

# PS3.15 Annex E, Table E.1-1, Basic Profile. "blank" is used wherever the profile allows Z (zero-length)
# so that type 2 attributes stay present and the object stays valid; "remove" (X) elsewhere. Attributes the
# profile marks D (dummy value) are blanked or removed instead: none is type 1 in the image IODs accepted
# here, so no dummy values are invented.
#
# UIDs (Study/Series/SOP Instance, Frame of Reference, ...) are deliberately NOT replaced: this is the
# "Retain UIDs Option" of PS3.15 (Table E.1-1, column "Rtn. UIDs Opt."), because the platform stores the
# Study/Series/Instance UIDs to link each scan back to the PACS it came from.
DEIDENTIFICATION_ACTIONS: dict[str, str] = {
    # Patient identity and demographics.
    "PatientName": "blank",
    "PatientID": "blank",
    "PatientBirthDate": "blank",
    "PatientSex": "blank",
    "PatientBirthTime": "remove",
    "PatientBirthName": "remove",
    "PatientMotherBirthName": "remove",
    "PatientAge": "remove",
    "PatientSize": "remove",
    "PatientWeight": "remove",
    "PatientAddress": "remove",
    "PatientTelephoneNumbers": "remove",
    "PatientComments": "remove",
    "PatientState": "remove",
    "PatientReligiousPreference": "remove",
    "PatientInsurancePlanCodeSequence": "remove",
    "PatientPrimaryLanguageCodeSequence": "remove",
    "PatientTransportArrangements": "remove",
    "OtherPatientIDs": "remove",
    "OtherPatientIDsSequence": "remove",
    "OtherPatientNames": "remove",
    "IssuerOfPatientID": "remove",
    "ReferencedPatientSequence": "remove",
    "ReferencedPatientAliasSequence": "remove",
    "MedicalRecordLocator": "remove",
    "EthnicGroup": "remove",
    "Occupation": "remove",
    "MilitaryRank": "remove",
    "BranchOfService": "remove",
    "CountryOfResidence": "remove",
    "RegionOfResidence": "remove",
    "MedicalAlerts": "remove",
    "Allergies": "remove",
    "SmokingStatus": "remove",
    "PregnancyStatus": "remove",
    "LastMenstrualDate": "remove",
    "AdditionalPatientHistory": "remove",
    "SpecialNeeds": "remove",
    "PatientSexNeutered": "blank",
    "ResponsiblePerson": "remove",
    "ResponsibleOrganization": "remove",
    "PersonName": "blank",
    "PersonAddress": "remove",
    "PersonTelephoneNumbers": "remove",
    # Visit, order and study identification.
    "AccessionNumber": "blank",
    "StudyID": "blank",
    "StudyIDIssuer": "remove",
    "AdmissionID": "remove",
    "IssuerOfAdmissionID": "remove",
    "AdmittingDate": "remove",
    "AdmittingTime": "remove",
    "AdmittingDiagnosesDescription": "remove",
    "AdmittingDiagnosesCodeSequence": "remove",
    "DischargeDiagnosisDescription": "remove",
    "CurrentPatientLocation": "remove",
    "ScheduledPatientInstitutionResidence": "remove",
    "VisitComments": "remove",
    "ServiceEpisodeID": "remove",
    "ServiceEpisodeDescription": "remove",
    "PlacerOrderNumberImagingServiceRequest": "blank",
    "FillerOrderNumberImagingServiceRequest": "blank",
    "OrderEnteredBy": "remove",
    "OrderEntererLocation": "remove",
    "OrderCallbackPhoneNumber": "remove",
    "RequestAttributesSequence": "remove",
    "RequestedProcedureID": "remove",
    "RequestedProcedureDescription": "blank",
    "RequestedProcedureComments": "remove",
    "RequestedProcedureLocation": "remove",
    "RequestedContrastAgent": "remove",
    "RequestingPhysician": "remove",
    "RequestingService": "remove",
    "ReasonForStudy": "remove",
    "ReasonForTheImagingServiceRequest": "remove",
    "ImagingServiceRequestComments": "remove",
    "ReferencedStudySequence": "remove",
    "ReferencedPerformedProcedureStepSequence": "remove",
    "ScheduledProcedureStepDescription": "remove",
    "ScheduledProcedureStepLocation": "remove",
    "ScheduledProcedureStepStartDate": "remove",
    "ScheduledProcedureStepEndDate": "remove",
    "ScheduledPerformingPhysicianName": "remove",
    "ScheduledPerformingPhysicianIdentificationSequence": "remove",
    "ScheduledHumanPerformersSequence": "remove",
    "ScheduledStationAETitle": "remove",
    "ScheduledStationName": "remove",
    "ScheduledStationNameCodeSequence": "remove",
    "ScheduledStationGeographicLocationCodeSequence": "remove",
    "ScheduledStudyLocation": "remove",
    "ScheduledStudyLocationAETitle": "remove",
    "PerformedProcedureStepID": "remove",
    "PerformedProcedureStepDescription": "remove",
    "PerformedProcedureStepStartDate": "remove",
    "PerformedProcedureStepStartTime": "remove",
    "PerformedProcedureStepEndDate": "remove",
    "PerformedProcedureStepEndTime": "remove",
    "PerformedLocation": "remove",
    "CommentsOnThePerformedProcedureStep": "remove",
    "PreMedication": "remove",
    # Free text that may name the patient or staff.
    "StudyDescription": "remove",
    "SeriesDescription": "remove",
    "ProtocolName": "remove",
    "StudyComments": "remove",
    "ImageComments": "remove",
    "AcquisitionComments": "remove",
    "FrameComments": "remove",
    "DerivationDescription": "remove",
    "AcquisitionDeviceProcessingDescription": "remove",
    "ContributionDescription": "remove",
    "IdentifyingComments": "remove",
    "ImagePresentationComments": "remove",
    "TextComments": "remove",
    "TextString": "remove",
    "ModifiedImageDescription": "remove",
    "ResultsComments": "remove",
    "Impressions": "remove",
    "InterpretationText": "remove",
    "InterpretationDiagnosisDescription": "remove",
    "InterpretationAuthor": "remove",
    "InterpretationRecorder": "remove",
    "InterpretationTranscriber": "remove",
    "InterpretationApproverSequence": "remove",
    "InterpretationID": "remove",
    "InterpretationIDIssuer": "remove",
    "TopicTitle": "remove",
    "TopicSubject": "remove",
    "TopicAuthor": "remove",
    "TopicKeywords": "remove",
    "Arbitrary": "remove",
    "ContentSequence": "remove",
    "AcquisitionContextSequence": "remove",
    "GraphicAnnotationSequence": "remove",
    # Staff.
    "ReferringPhysicianName": "blank",
    "ReferringPhysicianAddress": "remove",
    "ReferringPhysicianTelephoneNumbers": "remove",
    "ReferringPhysicianIdentificationSequence": "remove",
    "ConsultingPhysicianName": "remove",
    "ConsultingPhysicianIdentificationSequence": "remove",
    "PerformingPhysicianName": "remove",
    "PerformingPhysicianIdentificationSequence": "remove",
    "PhysiciansOfRecord": "remove",
    "PhysiciansOfRecordIdentificationSequence": "remove",
    "NameOfPhysiciansReadingStudy": "remove",
    "PhysiciansReadingStudyIdentificationSequence": "remove",
    "PhysicianApprovingInterpretation": "remove",
    "OperatorsName": "blank",
    "OperatorIdentificationSequence": "remove",
    "HumanPerformerName": "remove",
    "HumanPerformerOrganization": "remove",
    "ActualHumanPerformersSequence": "remove",
    "ContentCreatorName": "blank",
    "ContentCreatorIdentificationCodeSequence": "remove",
    "VerifyingObserverName": "blank",
    "VerifyingObserverSequence": "blank",
    "VerifyingObserverIdentificationCodeSequence": "blank",
    "VerifyingOrganization": "remove",
    "AuthorObserverSequence": "remove",
    "ParticipantSequence": "remove",
    "CustodialOrganizationSequence": "remove",
    "NamesOfIntendedRecipientsOfResults": "remove",
    "DistributionName": "remove",
    "DistributionAddress": "remove",
    "ResultsDistributionListSequence": "remove",
    "ResultsIDIssuer": "remove",
    # Institution and equipment.
    "InstitutionName": "blank",
    "InstitutionAddress": "remove",
    "InstitutionCodeSequence": "blank",
    "InstitutionalDepartmentName": "remove",
    "StationName": "blank",
    "DeviceSerialNumber": "blank",
    "DeviceUID": "remove",
    "DetectorID": "remove",
    "GantryID": "remove",
    "GeneratorID": "remove",
    "CassetteID": "remove",
    "PlateID": "remove",
    "ModifyingDeviceID": "remove",
    "ModifyingDeviceManufacturer": "remove",
    # Dates and times, which together with the rest can re-identify a patient.
    "StudyDate": "blank",
    "StudyTime": "blank",
    "SeriesDate": "remove",
    "SeriesTime": "remove",
    "AcquisitionDate": "blank",
    "AcquisitionTime": "blank",
    "AcquisitionDateTime": "remove",
    "ContentDate": "blank",
    "ContentTime": "blank",
    "InstanceCreationDate": "remove",
    "InstanceCreationTime": "remove",
    "OverlayDate": "remove",
    "OverlayTime": "remove",
    "CurveDate": "remove",
    "CurveTime": "remove",
    # Audit trails and signatures that may quote the removed values.
    "OriginalAttributesSequence": "remove",
    "ModifiedAttributesSequence": "remove",
    "DigitalSignaturesSequence": "remove",
    "ReferencedDigitalSignatureSequence": "remove",
    "ReferencedSOPInstanceMACSequence": "remove",
    "DataSetTrailingPadding": "remove",
    "IconImageSequence": "remove",
}

# Repeating groups the profile removes: curve data (50xx,xxxx), overlay data and overlay comments
# (60xx,3000 / 60xx,4000), which can carry burned-in names.
_OVERLAY_ELEMENTS_REMOVED = frozenset({0x3000, 0x4000})


class ImageRejected(ValueError):
    """An upload that cannot be accepted; `str(error)` is safe to show to the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@contextmanager
def _rejected_when_undecodable():
    """PNG and JPEG pixels are decoded by the ML core's decoder; its errors become upload rejections."""
    try:
        yield
    except ImageError as error:
        raise ImageRejected(error.code, str(error)) from error


@dataclass(frozen=True)
class DicomInfo:
    study_uid: str | None
    series_uid: str | None
    instance_uid: str | None
    modality: str | None
    series_description: str | None
    pixel_spacing: list[float] | None  # [row spacing, column spacing] in mm
    frame_index: int  # 0-based index of the frame used for the model's view
    frame_count: int
    note: str | None  # e.g. "frame 6 of 12 used"; None for single-frame objects
    transfer_syntax: str
    photometric_interpretation: str
    burned_in_annotation: bool  # the pixels themselves may show identifying text
    sop_class_uid: str | None
    study_date: str | None  # DA, YYYYMMDD, as the file says it
    body_part: str | None
    instance_number: int | None
    image_position: tuple[float, float, float] | None  # ImagePositionPatient of the frame used, mm
    image_orientation: tuple[float, ...] | None  # ImageOrientationPatient: row then column cosines
    # Read before de-identification blanks them, so the upload can be checked against the case's patient;
    # held in memory only, never stored.
    patient_id: str | None
    patient_name: str | None


@dataclass(frozen=True)
class InspectedImage:
    format: str  # of the stored file: "png" (PNG and JPEG uploads, re-encoded) or "dicom"
    width: int  # as displayed, i.e. after the EXIF orientation
    height: int
    sha256: str  # of the uploaded bytes, so a re-upload of the same file is recognised
    stored_bytes: bytes  # PNG re-encoded from the decoded pixels, or the de-identified DICOM
    dicom: DicomInfo | None


@dataclass(frozen=True)
class _DecodedDicom:
    dataset: Dataset
    view: np.ndarray  # (rows, columns) uint8
    info: DicomInfo
    values: np.ndarray  # (rows, columns) float64: after the modality LUT (monochrome) or grey (colour)
    inverted: bool  # MONOCHROME1: low values are shown bright


def inspect_upload(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS
) -> InspectedImage:
    """Validate an upload completely and return what to store about it.

    Raises ImageRejected for anything that is not a complete, decodable PNG, JPEG or DICOM image within
    the limits.
    """
    if len(data) == 0:
        raise ImageRejected("empty", "The file is empty.")
    if len(data) > max_bytes:
        raise ImageRejected(
            "too_large", f"The file is {_megabytes(len(data))}; the limit is {_megabytes(max_bytes)}."
        )
    image_format = _detect_format(data)
    sha256 = hashlib.sha256(data).hexdigest()
    if image_format == "dicom":
        with _rejected_when_undecodable():
            decoded = _decode_dicom(data, max_pixels=max_pixels)
        return InspectedImage(
            format="dicom",
            width=decoded.view.shape[1],
            height=decoded.view.shape[0],
            sha256=sha256,
            stored_bytes=_deidentified_bytes(decoded.dataset),
            dicom=decoded.info,
        )
    with _rejected_when_undecodable():
        image = open_raster(data, max_pixels=max_pixels)
        stored, width, height = _reencoded_png(image, data, image_format)
    return InspectedImage(
        format="png", width=width, height=height, sha256=sha256, stored_bytes=stored, dicom=None
    )


def load_model_view(source: bytes | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The 2-D greyscale array the classifier sees for a stored PNG, JPEG or DICOM file.

    DICOM: uint8 after the modality LUT and the VOI window (MONOCHROME1 inverted, middle frame of a
    multi-frame object). PNG/JPEG: the decoded grey values, uint8, or uint16 for 16-bit PNGs.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) == 0:
        raise ImageRejected("empty", "The file is empty.")
    image_format = _detect_format(data)
    if image_format == "dicom":
        with _rejected_when_undecodable():
            return _decode_dicom(data, max_pixels=max_pixels).view
    with _rejected_when_undecodable():
        return decode_grey(data, max_pixels=max_pixels)


# Window presets of the series viewer, as percentiles of the slice's own values: MR signal has no absolute
# scale (unlike CT's Hounsfield units), so a fixed centre and width would suit one scanner only. "default"
# is the view the model reads: the file's own window when it has one.
DISPLAY_WINDOWS: dict[str, tuple[float, float] | None] = {
    "default": None,
    "full": (0.0, 100.0),
    "soft-tissue": (2.0, 98.0),
    "fluid": (60.0, 99.9),
}


def load_display_view(
    source: bytes | str | Path, *, window: str = "default", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """The uint8 grey image the series viewer shows for a stored DICOM slice under one of DISPLAY_WINDOWS."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if _detect_format(data) != "dicom":
        raise ImageRejected("unsupported_type", "Only DICOM slices have window presets.")
    decoded = _decode_dicom(data, max_pixels=max_pixels)
    percentiles = DISPLAY_WINDOWS[window]
    if percentiles is None:
        return decoded.view
    low, high = np.percentile(decoded.values, percentiles)
    if high <= low:
        return np.zeros(decoded.values.shape, dtype=np.uint8)
    view = np.rint(np.clip((decoded.values - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)
    return 255 - view if decoded.inverted else view


# Detection ---------------------------------------------------------------------------------------------


def _detect_format(data: bytes) -> str:
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SOI):
        return "jpeg"
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return "dicom"
    if _looks_like_dicom_without_preamble(data):
        return "dicom"
    raise ImageRejected("unsupported_type", "The file is not a PNG, JPEG or DICOM file.")


def _looks_like_dicom_without_preamble(data: bytes) -> bool:
    # pydicom's force=True will "parse" almost anything, so only try it when the first element is in the
    # file meta group (0002) or the identifying group (0008), where real datasets start, and then insist
    # on an SOP class or pixel data.
    if len(data) < 8:
        return False
    first_group_le = int.from_bytes(data[0:2], "little")
    first_group_be = int.from_bytes(data[0:2], "big")
    if first_group_le not in (0x0002, 0x0008) and first_group_be != 0x0008:
        return False
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        return "SOPClassUID" in dataset or "PixelData" in dataset
    except Exception:
        return False


# PNG / JPEG ----------------------------------------------------------------------------------------------


_PNG_COMPRESS_LEVEL = 1

# What each EXIF orientation (TIFF tag 274) asks the viewer to do before showing the pixels.
_EXIF_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _reencoded_png(image: Image.Image, data: bytes, image_format: str) -> tuple[bytes, int, int]:
    """A PNG of the decoded, oriented pixels with nothing else in it; returns it with its width and height.

    Bit depth is kept: 16-bit grey stays 16-bit through Pillow, and 16-bit colour, which Pillow would
    reduce to 8 bits, goes through OpenCV.
    """
    transpose = _EXIF_TRANSPOSES.get(_exif_orientation(image))
    if image_format == "png" and png_is_16_bit_colour(data):
        import cv2  # imported here: heavy, and only needed for this rare case

        pixels = decode_16_bit_png_pixels(data)
        if transpose is not None:
            pixels = _transposed_array(pixels, transpose)
        ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, _PNG_COMPRESS_LEVEL])
        if not ok:
            raise ImageRejected("corrupt_image", "The PNG file's pixels cannot be stored.")
        return encoded.tobytes(), pixels.shape[1], pixels.shape[0]
    if image.mode == "CMYK":  # only JPEG has it; PNG cannot hold it
        image = image.convert("RGB")
    clean = image.transpose(transpose) if transpose is not None else image.copy()
    # Transparency is part of what the pixels show; everything else in `info` (text, EXIF, ICC, gamma,
    # dpi...) is metadata, and Pillow writes some of it back out unless it is dropped here.
    clean.info = {key: value for key, value in image.info.items() if key == "transparency"}
    buffer = io.BytesIO()
    # On 384x384 MRI slices level 1 takes 14 ms against 115 ms for Pillow's default 6, and the file is 5%
    # larger: the upload request waits for this, the disk hardly notices.
    clean.save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue(), clean.width, clean.height


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:
        # A damaged EXIF block does not make the pixels unreadable: show them as stored.
        return 1


def _transposed_array(pixels: np.ndarray, transpose: Image.Transpose) -> np.ndarray:
    # Pillow has no 16-bit colour mode, so it transposes an image of pixel indices instead, and the
    # pixels are gathered by those: one table (Pillow's) says what each orientation means.
    rows, columns = pixels.shape[:2]
    indices = Image.fromarray(np.arange(rows * columns, dtype=np.int32).reshape(rows, columns))
    order = np.asarray(indices.transpose(transpose))
    return pixels.reshape(rows * columns, *pixels.shape[2:])[order]


# DICOM -------------------------------------------------------------------------------------------------


def _decode_dicom(data: bytes, *, max_pixels: int) -> _DecodedDicom:
    has_preamble = data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC
    if has_preamble:
        _refuse_deflated(data)
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
        _check_not_truncated(dataset, data)
        # Elements are parsed lazily; touching all of them now surfaces a malformed file here rather than
        # half-way through de-identification.
        dataset.walk(lambda _dataset, _element: None)
    except ImageRejected:
        raise
    except Exception as error:
        raise ImageRejected("dicom_unreadable", f"The DICOM file cannot be read: {error}") from error

    if "PixelData" not in dataset:
        raise ImageRejected("dicom_no_pixels", "DICOM file has no pixel data.")
    transfer_syntax = _ensure_transfer_syntax(dataset)
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        name = transfer_syntax.name if transfer_syntax.is_valid else str(transfer_syntax)
        raise ImageRejected(
            "dicom_unsupported_transfer_syntax", f"DICOM transfer syntax {name} is not supported."
        )
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    if photometric not in MONOCHROME_PHOTOMETRICS | COLOUR_PHOTOMETRICS:
        raise ImageRejected(
            "dicom_unsupported_photometric",
            f"DICOM photometric interpretation {photometric or '(missing)'} is not supported; "
            "only MONOCHROME1, MONOCHROME2, RGB and YBR images are accepted.",
        )
    rows, columns = _positive_int(dataset, "Rows"), _positive_int(dataset, "Columns")
    check_pixel_count(columns, rows, max_pixels)

    frame_count = _positive_int(dataset, "NumberOfFrames", default=1)
    frame_index = (frame_count - 1) // 2
    if transfer_syntax not in UNCOMPRESSED_TRANSFER_SYNTAXES:
        _check_codestream_size(dataset, transfer_syntax, frame_index, frame_count, rows, columns, max_pixels)
    try:
        pixels = pydicom.pixels.pixel_array(dataset, index=frame_index)
    except Exception as error:
        raise ImageRejected(
            "dicom_unreadable", f"The DICOM pixel data is truncated or cannot be decoded: {error}"
        ) from error
    expected_shape = (rows, columns) if photometric in MONOCHROME_PHOTOMETRICS else (rows, columns, 3)
    if pixels.shape != expected_shape:
        raise ImageRejected(
            "dicom_unreadable",
            f"The DICOM pixel data decodes to shape {pixels.shape}, expected {expected_shape}.",
        )

    if photometric in MONOCHROME_PHOTOMETRICS:
        values = _apply_modality_lut(pixels, dataset, frame_index)
        view = _monochrome_view(values, dataset, frame_index, invert=photometric == "MONOCHROME1")
    else:
        view = _colour_view(pixels, dataset)
        values = view.astype(np.float64)
    info = DicomInfo(
        study_uid=_text(dataset, "StudyInstanceUID"),
        series_uid=_text(dataset, "SeriesInstanceUID"),
        instance_uid=_text(dataset, "SOPInstanceUID"),
        modality=_text(dataset, "Modality"),
        series_description=_text(dataset, "SeriesDescription"),
        pixel_spacing=_pixel_spacing(dataset, frame_index),
        frame_index=frame_index,
        frame_count=frame_count,
        note=f"frame {frame_index + 1} of {frame_count} used" if frame_count > 1 else None,
        transfer_syntax=str(transfer_syntax),
        photometric_interpretation=photometric,
        burned_in_annotation=str(dataset.get("BurnedInAnnotation", "")).upper() == "YES",
        sop_class_uid=_text(dataset, "SOPClassUID"),
        study_date=_text(dataset, "StudyDate"),
        body_part=_text(dataset, "BodyPartExamined"),
        instance_number=_integer(dataset.get("InstanceNumber")),
        image_position=_floats(
            _functional_value(dataset, frame_index, "PlanePositionSequence", "ImagePositionPatient"), 3
        ),
        image_orientation=_floats(
            _functional_value(dataset, frame_index, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
        ),
        patient_id=_text(dataset, "PatientID"),
        patient_name=_text(dataset, "PatientName"),
    )
    return _DecodedDicom(
        dataset=dataset, view=view, info=info, values=values, inverted=photometric == "MONOCHROME1"
    )


def _refuse_deflated(data: bytes) -> None:
    # pydicom inflates a deflated dataset in one go while reading it, so a small file could expand to
    # gigabytes before any limit applies: look at the file meta (always explicit VR little endian) first.
    try:
        meta = pydicom.filereader.read_dataset(
            io.BytesIO(data[DICOM_MAGIC_OFFSET + 4 :]),
            is_implicit_VR=False,
            is_little_endian=True,
            stop_when=_past_file_meta,
        )
        transfer_syntax = meta.get("TransferSyntaxUID")
    except Exception as error:
        raise ImageRejected(
            "dicom_unreadable", f"The DICOM file meta header cannot be read: {error}"
        ) from error
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        raise ImageRejected(
            "dicom_unsupported_transfer_syntax",
            "DICOM files with the Deflated transfer syntax are not accepted; please send them uncompressed.",
        )


_SEQUENCE_DELIMITERS = (b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", b"\xff\xfe\xe0\xdd\x00\x00\x00\x00")
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _check_not_truncated(dataset: Dataset, data: bytes) -> None:
    """Refuse a file that stops inside an element.

    pydicom stops quietly at the end of the data, even in the middle of an element, and keeps a short
    value; a file cut before its pixel data would otherwise pass as "has no pixel data".
    """
    if len(dataset) == 0:
        raise ImageRejected("dicom_unreadable", "The DICOM file is truncated: it has no data set.")
    last = dataset.get_item(max(dataset.keys()))
    if not isinstance(last, pydicom.dataelem.RawDataElement):
        return  # already parsed by pydicom itself, so it was complete
    if last.length == _UNDEFINED_LENGTH:
        complete = data.endswith(_SEQUENCE_DELIMITERS)
    else:
        tail = data[last.value_tell + last.length :]
        # Fewer than 8 zero bytes after the last element are padding pydicom skips, not a cut element.
        complete = len(last.value or b"") == last.length and len(tail) < 8 and not tail.strip(b"\x00")
    if not complete:
        raise ImageRejected("dicom_unreadable", "The DICOM file is truncated: it ends inside an element.")


def _past_file_meta(tag: BaseTag, _vr: str | None, _length: int) -> bool:
    return tag.group != 0x0002


def _ensure_transfer_syntax(dataset: Dataset) -> UID:
    """Return the transfer syntax, filling in the file meta for datasets stored without one."""
    file_meta = dataset.file_meta if hasattr(dataset, "file_meta") else FileMetaDataset()
    transfer_syntax = file_meta.get("TransferSyntaxUID")
    if transfer_syntax is None:
        implicit_vr, little_endian = dataset.original_encoding
        if implicit_vr is None or dataset["PixelData"].is_undefined_length:
            # Encapsulated pixel data without a transfer syntax: the codec is unknown.
            raise ImageRejected(
                "dicom_unreadable", "The DICOM file does not say how its pixel data is encoded."
            )
        if implicit_vr:
            transfer_syntax = ImplicitVRLittleEndian
        else:
            transfer_syntax = ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian
        file_meta.TransferSyntaxUID = transfer_syntax
        dataset.file_meta = file_meta
    return UID(str(transfer_syntax))


def _positive_int(dataset: Dataset, keyword: str, default: int | None = None) -> int:
    value = dataset.get(keyword)
    if value in (None, "") and default is not None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ImageRejected("dicom_unreadable", f"The DICOM file has no valid {keyword} ({value!r}).")
    return number


def _check_codestream_size(
    dataset: Dataset,
    transfer_syntax: UID,
    frame_index: int,
    frame_count: int,
    rows: int,
    columns: int,
    max_pixels: int,
) -> None:
    """Refuse a compressed frame whose own header disagrees with Rows/Columns, before decoding it.

    Decoders allocate what the codestream asks for, so a lying Rows/Columns would otherwise bypass the
    pixel limit (a decompression bomb inside a small DICOM file).
    """
    if transfer_syntax == RLELossless:
        return  # RLE carries no dimensions; the decoder is bounded by Rows x Columns.
    try:
        frame = pydicom.encaps.get_frame(dataset.PixelData, frame_index, number_of_frames=frame_count)
    except Exception as error:
        raise ImageRejected(
            "dicom_unreadable", f"The DICOM compressed pixel data is damaged: {error}"
        ) from error
    size = _j2k_size(frame) if transfer_syntax in JPEG2000_TRANSFER_SYNTAXES else _jpeg_size(frame)
    if size is None:
        raise ImageRejected("dicom_unreadable", "The DICOM compressed frame has no readable image header.")
    width, height = size
    check_pixel_count(width, height, max_pixels)
    if (width, height) != (columns, rows):
        raise ImageRejected(
            "dicom_unreadable",
            f"The DICOM compressed frame is {width}x{height} but the header says {columns}x{rows}.",
        )


# Start-of-frame markers of JPEG (SOF0-3, 5-7, 9-11, 13-15) and JPEG-LS (SOF55).
_SOF_MARKERS = frozenset(
    {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7}
)
_STANDALONE_MARKERS = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    position = 0
    while position + 9 <= len(frame):
        if frame[position] != 0xFF:
            return None
        marker = frame[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in _STANDALONE_MARKERS:
            position += 2
        elif marker in _SOF_MARKERS:
            height = int.from_bytes(frame[position + 5 : position + 7], "big")
            width = int.from_bytes(frame[position + 7 : position + 9], "big")
            return width, height
        else:
            position += 2 + int.from_bytes(frame[position + 2 : position + 4], "big")
    return None


def _j2k_size(frame: bytes) -> tuple[int, int] | None:
    # The SIZ segment follows SOC; a JP2 file wraps the same codestream in boxes, so look for it.
    start = frame.find(b"\xff\x4f\xff\x51")
    if start < 0 or len(frame) < start + 24:
        return None
    siz = frame[start + 4 :]
    x_size, y_size, x_offset, y_offset = (int.from_bytes(siz[i : i + 4], "big") for i in range(4, 20, 4))
    return x_size - x_offset, y_size - y_offset


def _monochrome_view(values: np.ndarray, dataset: Dataset, frame_index: int, *, invert: bool) -> np.ndarray:
    window = _window(dataset, frame_index)
    if window is not None:
        centre, width, function = window
        scaled = _apply_window(values, centre, width, function)
    else:
        scaled = _percentile_window(values)
    view = np.rint(scaled * 255.0).astype(np.uint8)
    # MONOCHROME1 shows low values bright; invert after the VOI stage (as a display would) so bright
    # always means high signal for the model.
    return 255 - view if invert else view


def _apply_modality_lut(pixels: np.ndarray, dataset: Dataset, frame_index: int) -> np.ndarray:
    if "ModalityLUTSequence" in dataset:
        return pydicom.pixels.apply_modality_lut(pixels, dataset).astype(np.float64)
    slope = _functional_value(dataset, frame_index, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _functional_value(
        dataset, frame_index, "PixelValueTransformationSequence", "RescaleIntercept"
    )
    values = pixels.astype(np.float64)
    if slope is not None and _first_float(slope) is not None:
        values *= _first_float(slope)
    if intercept is not None and _first_float(intercept) is not None:
        values += _first_float(intercept)
    return values


def _window(dataset: Dataset, frame_index: int) -> tuple[float, float, str] | None:
    centre = _first_float(_functional_value(dataset, frame_index, "FrameVOILUTSequence", "WindowCenter"))
    width = _first_float(_functional_value(dataset, frame_index, "FrameVOILUTSequence", "WindowWidth"))
    function = _functional_value(dataset, frame_index, "FrameVOILUTSequence", "VOILUTFunction")
    function = str(function or "LINEAR").strip().upper()
    if centre is None or width is None:
        return None
    # PS3.3 C.11.2.1.2: LINEAR needs a width of at least 1, the others a positive width; anything else
    # is a broken header and the percentile window is the better guess.
    if (function == "LINEAR" and width < 1) or width <= 0:
        return None
    return centre, width, function


def _apply_window(values: np.ndarray, centre: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing onto [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (values - centre) / width, -700.0, 700.0)))
    if function == "LINEAR_EXACT":
        return np.clip((values - centre) / width + 0.5, 0.0, 1.0)
    if width == 1:
        return (values > centre - 0.5).astype(np.float64)
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _percentile_window(values: np.ndarray) -> np.ndarray:
    low, high = np.percentile(values, PERCENTILE_WINDOW)
    if high <= low:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _colour_view(pixels: np.ndarray, dataset: Dataset) -> np.ndarray:
    # pydicom has already converted YBR to RGB. Colour images carry no modality or VOI LUT: their values
    # are display-ready, so only the bit depth is normalised.
    bits_stored = _positive_int(dataset, "BitsStored", default=8)
    grey = pixels.astype(np.float64) @ LUMA_WEIGHTS
    return np.rint(np.clip(grey / (2**bits_stored - 1), 0.0, 1.0) * 255.0).astype(np.uint8)


def _functional_value(dataset: Dataset, frame_index: int, sequence_keyword: str, keyword: str) -> object:
    """An attribute from the top level or, for enhanced multi-frame objects, its functional groups."""
    if keyword in dataset:
        return dataset[keyword].value
    for groups_keyword, index in (
        ("PerFrameFunctionalGroupsSequence", frame_index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = dataset.get(groups_keyword)
        if groups is None or len(groups) <= index:
            continue
        items = groups[index].get(sequence_keyword)
        if items and keyword in items[0]:
            return items[0][keyword].value
    return None


def _first_float(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _pixel_spacing(dataset: Dataset, frame_index: int) -> list[float] | None:
    value = _functional_value(dataset, frame_index, "PixelMeasuresSequence", "PixelSpacing")
    if value is None or isinstance(value, str | bytes) or len(value) != 2:
        return None
    try:
        spacing = [float(value[0]), float(value[1])]
    except (TypeError, ValueError):
        return None
    return spacing if all(math.isfinite(s) and s > 0 for s in spacing) else None


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    if value is None or isinstance(value, str | bytes):
        return None
    try:
        numbers = tuple(float(number) for number in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(math.isfinite(n) for n in numbers) else None


def _integer(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = dataset.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# De-identification -------------------------------------------------------------------------------------


def _deidentified_bytes(dataset: Dataset) -> bytes:
    """Apply the basic profile (retaining UIDs) in place and serialise the result as a DICOM file."""
    dataset.walk(_deidentify_element)
    dataset.remove_private_tags()
    _remove_repeating_groups_and_group_lengths(dataset)

    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = DEIDENTIFICATION_METHOD
    dataset.DeidentificationMethodCodeSequence = Sequence(
        [_dcm_code(*BASIC_PROFILE_CODE), _dcm_code(*RETAIN_UIDS_CODE)]
    )
    dataset.LongitudinalTemporalInformationModified = "REMOVED"

    file_meta = dataset.file_meta
    if "SOPClassUID" in dataset:
        file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    if "SOPInstanceUID" in dataset:
        file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    # The preamble may hold anything (e.g. a TIFF header with its own tags): never pass it on.
    dataset.preamble = b"\x00" * DICOM_MAGIC_OFFSET

    buffer = io.BytesIO()
    try:
        dataset.save_as(buffer, enforce_file_format=True)
    except Exception as error:
        raise ImageRejected(
            "dicom_unreadable", f"The DICOM file cannot be re-written after de-identification: {error}"
        ) from error
    return buffer.getvalue()


def _deidentify_element(dataset: Dataset, element: pydicom.DataElement) -> None:
    action = DEIDENTIFICATION_ACTIONS.get(element.keyword)
    if action == "remove":
        del dataset[element.tag]
    elif action == "blank":
        element.value = Sequence() if element.VR == "SQ" else None


def _remove_repeating_groups_and_group_lengths(dataset: Dataset) -> None:
    # Group lengths (gggg,0000) are retired and would be wrong after the removals above.
    doomed = [
        tag
        for tag in dataset.keys()
        if tag.element == 0x0000
        or 0x5000 <= tag.group <= 0x50FF
        or (0x6000 <= tag.group <= 0x60FF and tag.element in _OVERLAY_ELEMENTS_REMOVED)
    ]
    for tag in doomed:
        del dataset[tag]


def _dcm_code(value: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = meaning
    return code


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
