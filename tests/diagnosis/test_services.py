from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from diagnosis.errors import ApplicationError, NotFound, PermissionDenied
from diagnosis.models import Case, Prediction
from diagnosis.selectors import case_list, patient_list, prediction_list
from diagnosis.services.cases import case_create, case_update
from diagnosis.services.patients import patient_create, patient_update
from diagnosis.services.predictions import prediction_request
from diagnosis.services.reviews import review_create
from tests.factories import CaseFactory, PatientFactory, PredictionFactory, ScanFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_patient_create_records_creator(clinician):
    patient = patient_create(user=clinician, identifier="  MRN-7 ", name="Ada")
    assert patient.identifier == "MRN-7"
    assert patient.created_by == clinician


def test_patient_create_refuses_duplicate_identifier(clinician, other_clinician):
    patient_create(user=clinician, identifier="MRN-7")
    with pytest.raises(ApplicationError) as error:
        patient_create(user=other_clinician, identifier="MRN-7")
    assert "identifier" in error.value.errors


def test_patient_create_refuses_bad_fields(clinician):
    with pytest.raises(ApplicationError) as error:
        patient_create(
            user=clinician,
            identifier="",
            sex="Q",
            birth_date=timezone.localdate() + datetime.timedelta(days=1),
        )
    assert set(error.value.errors) == {"identifier", "sex", "birth_date"}


def test_user_without_role_cannot_create_patients(db):
    with pytest.raises(PermissionDenied):
        patient_create(user=UserFactory(), identifier="MRN-1")


def test_patient_update_of_someone_elses_patient_is_not_found(clinician, other_clinician):
    patient = PatientFactory(created_by=other_clinician)
    with pytest.raises(NotFound):
        patient_update(user=clinician, patient=patient, name="changed")


def test_patient_update_changes_fields(clinician):
    patient = PatientFactory(created_by=clinician)
    patient_update(user=clinician, patient=patient, name="Grace", sex="F")
    patient.refresh_from_db()
    assert (patient.name, patient.sex) == ("Grace", "F")


def test_case_create_for_own_patient(clinician):
    patient = PatientFactory(created_by=clinician)
    case = case_create(user=clinician, patient=patient, clinical_question="Back pain L5?")
    assert case.owner == clinician
    assert case.status == Case.Status.OPEN


def test_case_create_for_invisible_patient_is_not_found(clinician, other_clinician):
    with pytest.raises(NotFound):
        case_create(user=clinician, patient=PatientFactory(created_by=other_clinician))


def test_case_update_by_other_clinician_is_not_found(case, other_clinician):
    with pytest.raises(NotFound):
        case_update(user=other_clinician, case=case, notes="mine now")


def test_case_update_by_staff_is_allowed(case, staff):
    case_update(user=staff, case=case, notes="Checked by staff.")
    case.refresh_from_db()
    assert case.notes == "Checked by staff."


def test_case_update_refuses_unknown_status(case, clinician):
    with pytest.raises(ApplicationError) as error:
        case_update(user=clinician, case=case, status="lost")
    assert "status" in error.value.errors


def test_selectors_scope_to_owner(clinician, other_clinician, staff):
    mine = CaseFactory(owner=clinician)
    theirs = CaseFactory(owner=other_clinician)
    PredictionFactory(scan=ScanFactory(case=theirs))
    assert list(case_list(user=clinician)) == [mine]
    assert set(case_list(user=staff)) == {mine, theirs}
    assert list(patient_list(user=clinician)) == [mine.patient]
    assert prediction_list(user=clinician).count() == 0
    assert prediction_list(user=UserFactory()).count() == 0


def test_prediction_request_queues_on_commit(
    case, clinician, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr("diagnosis.tasks.run_prediction.apply_async", lambda args: sent.append(args[0]))
    scan = ScanFactory(case=case)
    with django_capture_on_commit_callbacks(execute=True):
        prediction = prediction_request(user=clinician, scan=scan)
    assert prediction.status == Prediction.Status.QUEUED
    assert sent == [prediction.pk]


def test_prediction_request_on_other_clinicians_scan_is_not_found(case, other_clinician):
    with pytest.raises(NotFound):
        prediction_request(user=other_clinician, scan=ScanFactory(case=case))


def _done_prediction(case, label="ddd"):
    return PredictionFactory(
        scan=ScanFactory(case=case), status=Prediction.Status.DONE, label=label, probability=0.8
    )


def test_review_agree_keeps_model_label(case, clinician):
    review = review_create(
        user=clinician, prediction=_done_prediction(case), decision="agree", comment="fine"
    )
    assert review.final_label == "ddd"
    assert review.reviewer == clinician


def test_review_override_needs_a_different_label(case, clinician):
    prediction = _done_prediction(case)
    with pytest.raises(ApplicationError):
        review_create(user=clinician, prediction=prediction, decision="override", final_label="ddd")
    with pytest.raises(ApplicationError):
        review_create(user=clinician, prediction=prediction, decision="override")
    review = review_create(user=clinician, prediction=prediction, decision="override", final_label="normal")
    assert review.final_label == "normal"


def test_review_again_is_an_amendment_that_keeps_the_first(case, clinician):
    prediction = _done_prediction(case)
    first = review_create(user=clinician, prediction=prediction, decision="agree", comment="first look")
    second = review_create(user=clinician, prediction=prediction, decision="override", final_label="normal")
    assert (first.version, second.version) == (1, 2)
    first.refresh_from_db()
    assert (first.decision, first.comment) == ("agree", "first look")
    assert list(prediction.reviews.current()) == [second]


def test_review_is_amended_by_its_author_only(case, clinician, staff):
    prediction = _done_prediction(case)
    review_create(user=clinician, prediction=prediction, decision="agree")
    with pytest.raises(ApplicationError, match="only they can amend"):
        review_create(user=staff, prediction=prediction, decision="override", final_label="normal")
    assert prediction.reviews.count() == 1


def test_review_of_unfinished_prediction_is_refused(case, clinician):
    prediction = PredictionFactory(scan=ScanFactory(case=case))
    with pytest.raises(ApplicationError, match="finished"):
        review_create(user=clinician, prediction=prediction, decision="agree")


def test_review_by_other_clinician_is_not_found(case, other_clinician):
    with pytest.raises(NotFound):
        review_create(user=other_clinician, prediction=_done_prediction(case), decision="agree")


def test_review_returns_case_from_awaiting_review_to_open(case, clinician):
    prediction = _done_prediction(case)
    Case.objects.filter(pk=case.pk).update(status=Case.Status.AWAITING_REVIEW)
    review_create(user=clinician, prediction=prediction, decision="agree")
    case.refresh_from_db()
    assert case.status == Case.Status.OPEN
