from __future__ import annotations

import pytest
from django.urls import reverse

from diagnosis.models import Prediction
from tests.factories import ModelVersionFactory, PredictionFactory

pytestmark = pytest.mark.django_db

MODELS = [
    "diagnosis/patient",
    "diagnosis/case",
    "diagnosis/scan",
    "diagnosis/prediction",
    "diagnosis/review",
    "ml/modelversion",
]


@pytest.mark.parametrize("model", MODELS)
def test_admin_changelist_and_search_load_for_staff(client, staff, model):
    PredictionFactory(status=Prediction.Status.DONE, label="ddd", probability=0.9)
    ModelVersionFactory()
    client.force_login(staff)
    app_label, model_name = model.split("/")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    assert client.get(url).status_code == 200
    assert client.get(url, {"q": "x"}).status_code == 200


def test_admin_prediction_is_read_only(client, staff):
    prediction = PredictionFactory()
    client.force_login(staff)
    url = reverse("admin:diagnosis_prediction_change", args=[prediction.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert b'name="status"' not in response.content
    client.post(url, {"status": "done", "label": "ddd", "probability": "0.99"})
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.QUEUED


def test_admin_detail_pages_load(client, staff):
    prediction = PredictionFactory()
    client.force_login(staff)
    for name, pk in [
        ("diagnosis_scan", prediction.scan.pk),
        ("diagnosis_case", prediction.scan.case.pk),
        ("diagnosis_patient", prediction.scan.case.patient.pk),
    ]:
        assert client.get(reverse(f"admin:{name}_change", args=[pk])).status_code == 200


def test_admin_is_closed_to_clinicians(client, clinician):
    client.force_login(clinician)
    response = client.get(reverse("admin:diagnosis_case_changelist"))
    assert response.status_code == 302
