from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from diagnosis.models import Patient, Prediction, Scan
from ml.models import ModelVersion
from tests.factories import ModelVersionFactory, PatientFactory, PredictionFactory, ScanFactory

pytestmark = pytest.mark.django_db


def test_patient_identifier_is_unique():
    PatientFactory(identifier="MRN-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        PatientFactory(identifier="MRN-1")


def test_patient_identifier_cannot_be_empty():
    with pytest.raises(IntegrityError), transaction.atomic():
        PatientFactory(identifier="")


def test_second_active_model_version_is_refused():
    ModelVersion.objects.update(is_active=False)  # a shipped model may be active after migrate
    ModelVersionFactory(is_active=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersionFactory(is_active=True)


def test_many_inactive_model_versions_are_allowed():
    ModelVersion.objects.update(is_active=False)
    ModelVersionFactory(is_active=True)
    ModelVersionFactory(is_active=False)
    ModelVersionFactory(is_active=False)


def test_same_bytes_twice_in_one_case_is_refused():
    scan = ScanFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Scan.objects.create(
            case=scan.case,
            file=scan.file.name,
            original_name="again.png",
            sha256=scan.sha256,
            format="png",
            width=1,
            height=1,
            uploaded_by=scan.uploaded_by,
        )


def test_prediction_probability_must_be_a_probability():
    with pytest.raises(IntegrityError), transaction.atomic():
        PredictionFactory(status=Prediction.Status.DONE, label="ddd", probability=1.5)


def test_done_prediction_needs_label_and_probability():
    with pytest.raises(IntegrityError), transaction.atomic():
        PredictionFactory(status=Prediction.Status.DONE)


def test_failed_prediction_needs_a_reason():
    with pytest.raises(IntegrityError), transaction.atomic():
        PredictionFactory(status=Prediction.Status.FAILED, error="")


def test_scan_format_is_constrained():
    with pytest.raises(IntegrityError), transaction.atomic():
        ScanFactory(format="gif")


def test_patient_str_is_identifier():
    assert str(Patient(identifier="X1")) == "X1"
