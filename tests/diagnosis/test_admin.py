from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken

from diagnosis.models import Prediction, Series
from diagnosis.services.accounts import token_create
from tests.factories import ModelVersionFactory, PredictionFactory

pytestmark = pytest.mark.django_db

MODELS = [
    "diagnosis/patient",
    "diagnosis/case",
    "diagnosis/scan",
    "diagnosis/prediction",
    "diagnosis/review",
    "diagnosis/series",
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


def test_admin_password_change_ends_the_users_api_tokens(client, staff, clinician):
    token_create(user=clinician)
    client.force_login(staff)
    url = reverse("admin:auth_user_password_change", args=[clinician.pk])
    new = {
        "password1": "lumbar-disc-9-review",
        "password2": "lumbar-disc-9-review",
        "usable_password": "true",
    }
    assert client.post(url, new).status_code == 302
    clinician.refresh_from_db()
    assert clinician.check_password("lumbar-disc-9-review")
    assert not AuthToken.objects.filter(user=clinician).exists()


def test_admin_deactivation_ends_the_users_api_tokens_and_sessions(client, staff, clinician):
    token_create(user=clinician)
    session = Client()
    session.force_login(clinician)
    client.force_login(staff)
    url = reverse("admin:auth_user_change", args=[clinician.pk])
    edit = {
        "username": clinician.username,
        "date_joined_0": "2026-01-01",
        "date_joined_1": "08:00:00",
        "groups": [group.pk for group in clinician.groups.all()],
    }
    assert client.post(url, edit).status_code == 302
    clinician.refresh_from_db()
    assert not clinician.is_active
    assert not AuthToken.objects.filter(user=clinician).exists()
    assert not Session.objects.filter(session_key=session.session.session_key).exists()


def test_admin_lists_login_failures_and_tokens(client, staff, clinician):
    Client().post("/accounts/login/", {"username": clinician.username, "password": "wrong"})
    token_create(user=clinician)
    client.force_login(staff)
    failures = client.get(reverse("admin:axes_accessattempt_changelist"))
    assert failures.status_code == 200 and clinician.username.encode() in failures.content
    assert client.get(reverse("admin:knox_authtoken_changelist")).status_code == 200


def test_admin_finds_a_series_by_uid_and_cannot_change_it(client, staff):
    case = PredictionFactory().scan.case
    series = Series.objects.create(
        case=case,
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        series_description="T2 SAG",
        plane="sagittal",
        patient_id_check="match",
        patient_name_check="match",
    )
    client.force_login(staff)
    listing = client.get(reverse("admin:diagnosis_series_changelist"), {"q": "1.2.3.4"})
    assert listing.status_code == 200 and b"T2 SAG" in listing.content
    url = reverse("admin:diagnosis_series_change", args=[series.pk])
    assert client.get(url).status_code == 200
    client.post(url, {"series_description": "changed"})
    series.refresh_from_db()
    assert series.series_description == "T2 SAG"
