"""Admins browse the history of each record and the access log; reviews and the log stay untouched."""

from __future__ import annotations

import pytest
from django.urls import reverse

from diagnosis.models import AccessEvent, Patient, Prediction, Referral, Review
from diagnosis.services.history import access_record
from diagnosis.services.referrals import referral_create
from diagnosis.services.reviews import review_create
from tests.factories import ClinicianFactory, PatientFactory, PredictionFactory, ScanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def review(case, clinician):
    prediction = PredictionFactory(
        scan=ScanFactory(case=case), status=Prediction.Status.DONE, label="ddd", probability=0.8
    )
    return review_create(user=clinician, prediction=prediction, decision="agree", comment="Clinician's words")


@pytest.mark.parametrize("model", ["referral", "accessevent"])
def test_admin_lists_referrals_and_the_access_log(client, staff, case, clinician, model):
    referral_create(user=clinician, case=case, clinician=ClinicianFactory().username)
    access_record(user=clinician, obj=case, action=AccessEvent.Action.VIEW_CASE)
    client.force_login(staff)
    url = reverse(f"admin:diagnosis_{model}_changelist")
    response = client.get(url)
    assert response.status_code == 200 and clinician.username in response.content.decode()
    assert client.get(url, {"q": clinician.username}).status_code == 200


def test_admin_shows_a_records_history_with_who_changed_what(client, staff, case):
    client.force_login(staff)
    url = reverse("admin:diagnosis_case_change", args=[case.pk])
    edit = {"patient": case.patient_id, "owner": case.owner_id, "status": "open", "notes": "Edited by admin"}
    for inline in ("scans", "reports"):
        edit |= {f"{inline}-{key}": value for key, value in {"TOTAL_FORMS": 0, "INITIAL_FORMS": 0}.items()}
    assert client.post(url, edit).status_code == 302
    latest = case.history.first()
    assert (latest.history_user, latest.notes) == (staff, "Edited by admin")
    history = client.get(reverse("admin:diagnosis_case_history", args=[case.pk]))
    assert history.status_code == 200 and staff.username in history.content.decode()


def test_admin_cannot_edit_or_delete_a_review_nor_revert_it(client, staff, review):
    client.force_login(staff)
    change = reverse("admin:diagnosis_review_change", args=[review.pk])
    page = client.get(change)
    assert page.status_code == 200 and b'name="comment"' not in page.content
    client.post(change, {"comment": "Admin's words", "decision": "override", "final_label": "normal"})
    assert (
        client.post(reverse("admin:diagnosis_review_delete", args=[review.pk]), {"post": "yes"}).status_code
        == 403
    )
    review.refresh_from_db()
    assert (review.comment, review.decision) == ("Clinician's words", "agree")
    history = client.get(reverse("admin:diagnosis_review_history", args=[review.pk]))
    assert history.status_code == 200
    record = review.history.first()
    revert = reverse("admin:diagnosis_review_simple_history", args=[review.pk, record.history_id])
    assert b"Revert" not in client.get(revert).content
    client.post(revert, {"comment": "Admin's words", "decision": "agree", "final_label": "ddd"})
    review.refresh_from_db()
    assert review.comment == "Clinician's words"
    assert Review.objects.count() == 1


def test_admin_cannot_change_the_access_log_or_referrals(client, staff, case, clinician):
    referral = referral_create(user=clinician, case=case, clinician=ClinicianFactory().username)
    event = access_record(user=clinician, obj=case, action=AccessEvent.Action.VIEW_CASE)
    client.force_login(staff)
    for name, pk in [("accessevent", event.pk), ("referral", referral.pk)]:
        client.post(reverse(f"admin:diagnosis_{name}_delete", args=[pk]), {"post": "yes"})
    assert (
        AccessEvent.objects.filter(pk=event.pk).exists() and Referral.objects.filter(pk=referral.pk).exists()
    )


def test_admin_refuses_a_duplicate_identifier_in_another_case(client, staff):
    PatientFactory(identifier="MRN-100234")
    client.force_login(staff)
    response = client.post(
        reverse("admin:diagnosis_patient_add"),
        {"identifier": " mrn-100234 ", "cases-TOTAL_FORMS": 0, "cases-INITIAL_FORMS": 0},
    )
    assert response.status_code == 200
    assert "A patient with this identifier already exists." in response.content.decode()
    assert Patient.objects.count() == 1
