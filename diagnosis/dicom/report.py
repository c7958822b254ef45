"""A finished prediction as DICOM, to file next to the images in the PACS: a Comprehensive SR holding a
TID 1500 Measurement Report, and the heatmap as a Secondary Capture image.

Django-free (highdicom and pydicom): the caller passes the stored source instance, the patient as the
platform registered it (the stored copy is de-identified; the PACS files results by the hospital's
patient ID) and the result as plain dataclasses.

Coded concepts: SNOMED CT for the anatomy and the disorder, DCM and UCUM where they have a term, and the
local scheme 99LUMBAR (PS3.16 8.2: a "99" prefix marks a private scheme) for what no standard codes: the
model's probabilities, the Pfirrmann grade and the clinician's review.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

MANUFACTURER = "Lumbar platform"
LOCAL_SCHEME = "99LUMBAR"
SR_SERIES_NUMBER = 9001
HEATMAP_SERIES_NUMBER = 9002

PROCEDURE = Code("24939-1", "LN", "MR Lumbar spine")  # LOINC: MRI of the lumbar spine
DISC_DEGENERATION = Code("77547008", "SCT", "Degeneration of intervertebral disc")
NOT_ASSESSABLE = Code("NOT-ASSESSABLE", LOCAL_SCHEME, "Not assessable")
DDD_PROBABILITY = Code("DDD-PROBABILITY", LOCAL_SCHEME, "Probability of degenerative disc disease")
PFIRRMANN_GRADE = Code("PFIRRMANN-GRADE", LOCAL_SCHEME, "Pfirrmann grade")
DEGENERATED_PROBABILITY = Code(
    "DEGENERATED-PROBABILITY", LOCAL_SCHEME, "Probability of Pfirrmann grade 3 or more"
)
CLINICIAN_REVIEW = Code("CLINICIAN-REVIEW", LOCAL_SCHEME, "Clinician review")
FINAL_LABEL = Code("FINAL-LABEL", LOCAL_SCHEME, "Label after review")
NO_UNITS = Code("1", "UCUM", "no units")
# The disc below each vertebra (SNOMED CT body structures).
DISC_SITES = {
    "L3-L4": Code("62551000", "SCT", "Intervertebral disc structure of third lumbar vertebra"),
    "L4-L5": Code("84020006", "SCT", "Intervertebral disc structure of fourth lumbar vertebra"),
    "L5-S1": Code("75782005", "SCT", "Intervertebral disc structure of fifth lumbar vertebra"),
}
REVIEW_DECISIONS = {
    "agree": Code("AGREE", LOCAL_SCHEME, "Agrees with the model"),
    "override": Code("OVERRIDE", LOCAL_SCHEME, "Overrides the model"),
}


@dataclass(frozen=True)
class PatientIdentity:
    identifier: str
    name: str
    birth_date: date | None
    sex: str  # "F", "M", "O" or ""


@dataclass(frozen=True)
class LevelFinding:
    level: str  # "L3-L4", "L4-L5", "L5-S1"
    grade: int
    grade_probabilities: list[float]  # grades 1 to 5
    degenerated_probability: float
    box: list[float] | None  # [x0, y0, x1, y1] in image pixels


@dataclass(frozen=True)
class ReviewDecision:
    decision: str  # "agree" or "override"
    final_label: str
    reviewer: str
    comment: str


@dataclass(frozen=True)
class PredictionResult:
    prediction_id: int
    label: str  # "normal", "ddd" or "not_assessable"
    probability: float | None
    reason: str
    model_name: str
    model_version: str
    finished_at: datetime | None
    levels: list[LevelFinding]
    review: ReviewDecision | None


def _label_code(label: str) -> Code:
    return {"ddd": codes.SCT.Present, "normal": codes.SCT.Absent}.get(label, NOT_ASSESSABLE)


def _probability(name: Code, value: float, algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=round(float(value), 6), unit=NO_UNITS, algorithm_id=algorithm)


def _evidence(source: Dataset, patient: PatientIdentity) -> Dataset:
    """The source instance carrying the platform's patient: SR and image inherit patient and study from it."""
    evidence = copy.deepcopy(source)
    evidence.PatientID = patient.identifier
    evidence.PatientName = _person_name(patient.name)
    evidence.PatientBirthDate = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    evidence.PatientSex = patient.sex if patient.sex in ("F", "M", "O") else ""
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence"):
        if keyword in evidence:
            delattr(evidence, keyword)
    return evidence


def _person_name(name: str) -> str:
    """'Ann Walker' as the PN 'Walker^Ann', a user name 'jdoe' as 'jdoe^'; a name in PN form is kept."""
    if "^" in name or not name.strip():
        return name.strip()
    *given, family = name.split()
    return f"{family}^{' '.join(given)}"


def _uid(*parts: object) -> str:
    """The same UID for the same parts: asking twice for the report of a prediction gives the same
    instance, which a PACS then stores once; a review makes it a new one."""
    return generate_uid(entropy_srcs=[str(part) for part in parts])


def _local_scheme() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = LOCAL_SCHEME
    item.CodingSchemeName = "Lumbar platform local codes"
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    return item


def _level_group(
    finding: LevelFinding, source: Dataset, algorithm: hd.sr.AlgorithmIdentification
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations:
    measurements = [
        hd.sr.Measurement(
            name=PFIRRMANN_GRADE, value=int(finding.grade), unit=NO_UNITS, algorithm_id=algorithm
        ),
        _probability(DEGENERATED_PROBABILITY, finding.degenerated_probability, algorithm),
        *(
            _probability(
                Code(f"GRADE-{grade}-PROBABILITY", LOCAL_SCHEME, f"Probability of Pfirrmann grade {grade}"),
                probability,
                algorithm,
            )
            for grade, probability in enumerate(finding.grade_probabilities, start=1)
        ),
    ]
    common = {
        "tracking_identifier": hd.sr.TrackingIdentifier(
            uid=_uid(source.SOPInstanceUID, finding.level), identifier=finding.level
        ),
        "finding_type": DISC_DEGENERATION,
        "finding_sites": [hd.sr.FindingSite(anatomic_location=DISC_SITES[finding.level])],
        "algorithm_id": algorithm,
        "measurements": measurements,
    }
    if finding.box is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)], **common
        )
    x0, y0, x1, y1 = (float(value) for value in finding.box)
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]),
        source_image=hd.sr.SourceImageForRegion.from_source_image(source),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=region, **common)


def structured_report(*, source: Dataset, patient: PatientIdentity, result: PredictionResult) -> Dataset:
    """The prediction as a Comprehensive SR (TID 1500) referencing the slice it was made on."""
    algorithm = hd.sr.AlgorithmIdentification(
        name=result.model_name or "none", version=result.model_version or "0"
    )
    evaluations = [hd.sr.QualitativeEvaluation(name=DISC_DEGENERATION, value=_label_code(result.label))]
    if result.review is not None:
        evaluations += [
            hd.sr.QualitativeEvaluation(
                name=CLINICIAN_REVIEW, value=REVIEW_DECISIONS[result.review.decision]
            ),
            hd.sr.QualitativeEvaluation(name=FINAL_LABEL, value=_label_code(result.review.final_label)),
        ]
    whole_slice = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid(source.SOPInstanceUID, "slice"), identifier="Mid-sagittal slice"
        ),
        finding_type=DISC_DEGENERATION,
        algorithm_id=algorithm,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        measurements=[_probability(DDD_PROBABILITY, result.probability, algorithm)]
        if result.probability is not None
        else None,
        qualitative_evaluations=evaluations,
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_uid(MANUFACTURER, result.model_name, result.model_version),
            name=MANUFACTURER,
            model_name=result.model_name or None,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE,
        imaging_measurements=[
            whole_slice,
            *(_level_group(finding, source, algorithm) for finding in result.levels),
        ],
    )
    reviewed = result.review is not None
    version = (result.review.decision, result.review.final_label) if reviewed else ()
    sr = hd.sr.ComprehensiveSR(
        evidence=[_evidence(source, patient)],
        content=report[0],
        series_instance_uid=_uid(source.StudyInstanceUID, result.prediction_id, "sr series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid(source.SOPInstanceUID, result.prediction_id, "sr", *version),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=reviewed,
        is_verified=reviewed,
        verifying_observer_name=_person_name(result.review.reviewer) if reviewed else None,
        verifying_organization=MANUFACTURER if reviewed else None,
        institution_name=None,
        series_description=f"Lumbar DDD prediction {result.prediction_id}",
    )
    sr.CodingSchemeIdentificationSequence = [_local_scheme()]
    return sr


def heatmap_secondary_capture(
    *, source: Dataset, patient: PatientIdentity, result: PredictionResult, heatmap_rgb: np.ndarray
) -> Dataset:
    """The Grad-CAM overlay (rows, columns, 3) uint8 as a Secondary Capture in the source's study."""
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=_evidence(source, patient),
        pixel_array=np.ascontiguousarray(heatmap_rgb, dtype=np.uint8),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=_uid(source.StudyInstanceUID, result.prediction_id, "heatmap series"),
        series_number=HEATMAP_SERIES_NUMBER,
        sop_instance_uid=_uid(source.SOPInstanceUID, result.prediction_id, "heatmap"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("P", "F"),
        series_description=f"Lumbar DDD heatmap {result.prediction_id}",
    )
    # The lumbar spine is not a paired body part, so Laterality (type 2C) is absent; saying which part it is
    # lets a validator know that.
    image.BodyPartExamined = str(source.get("BodyPartExamined") or "LSPINE")
    return image
