"""The pages of second opinions, the case history and the registry: what each clinician sees and may do."""

from __future__ import annotations

import pytest
from django.test import Client

from diagnosis.models import AccessEvent, Case, Prediction, Referral, Review
from diagnosis.services.patients import IDENTIFIER_TAKEN
from diagnosis.services.referrals import referral_create
from diagnosis.services.reviews import review_create
from tests.factories import CaseFactory, ClinicianFactory, PatientFactory, PredictionFactory, ScanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def prediction(case):
    return PredictionFactory(
        scan=ScanFactory(case=case), status=Prediction.Status.DONE, label="ddd", probability=0.8
    )


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_owner_refers_the_case_on_its_page(case, clinician, other_clinician):
    owner = logged_in(clinician)
    page = owner.get(f"/cases/{case.pk}/").content.decode()
    assert "Refer for a second opinion" in page and "Not referred to anyone." in page
    response = owner.post(
        f"/cases/{case.pk}/referrals/", {"clinician": other_clinician.username, "note": "L5-S1?"}
    )
    assert response.status_code == 302 and response["Location"].endswith(f"/cases/{case.pk}/#referrals")
    referral = Referral.objects.get()
    assert (referral.clinician, referral.note) == (other_clinician, "L5-S1?")
    page = owner.get(f"/cases/{case.pk}/").content.decode()
    assert f"Withdraw referral to {other_clinician.username}" in page


def test_a_bad_referral_shows_its_error_by_the_field(case, clinician):
    response = logged_in(clinician).post(f"/cases/{case.pk}/referrals/", {"clinician": "no-such-user"})
    assert response.status_code == 400
    assert response.context["referral_form"].errors == {
        "clinician": ["No active clinician has this username."]
    }
    assert not Referral.objects.exists()


def test_the_referred_clinician_sees_the_case_in_their_worklist_and_gives_an_opinion(
    case, clinician, other_clinician, prediction
):
    referral_create(user=clinician, case=case, clinician=other_clinician.username, note="Second look please")
    colleague = logged_in(other_clinician)
    worklist = colleague.get("/").content.decode()
    assert f'href="/cases/{case.pk}/"' in worklist and "Second look please" in worklist
    page = colleague.get(f"/cases/{case.pk}/").content.decode()
    assert "Referred to you by" in page and "Second look please" in page
    for owner_only in ('id="upload-form"', "Edit case", "Re-run", "Refer for a second opinion", "Withdraw"):
        assert owner_only not in page, owner_only
    assert "Save opinion" in page
    response = colleague.post(
        f"/predictions/{prediction.pk}/review/",
        {f"review-{prediction.pk}-decision": "override", f"review-{prediction.pk}-final_label": "normal"},
    )
    assert response.status_code == 302
    assert Review.objects.get().kind == Review.Kind.SECOND_OPINION
    assert colleague.get(f"/cases/{case.pk}/edit/").status_code == 403
    assert colleague.post(f"/predictions/{prediction.pk}/rerun/").status_code == 403
    assert Prediction.objects.count() == 1


def test_the_owner_sees_both_opinions_side_by_side_with_their_times(
    case, clinician, other_clinician, prediction
):
    referral_create(user=clinician, case=case, clinician=other_clinician.username)
    review_create(user=clinician, prediction=prediction, decision="agree", comment="Dark disc")
    review_create(user=other_clinician, prediction=prediction, decision="override", final_label="normal")
    page = logged_in(clinician).get(f"/cases/{case.pk}/").content.decode()
    opinions = page[page.index('data-field="opinions"') :]
    assert opinions.index("Reviewed by") < opinions.index(f"By <strong>{other_clinician.username}</strong>")
    assert "Dark disc" in opinions and "Second opinion" in opinions
    assert "Version 1 · <time datetime=" in opinions
    assert "Amend review" in page and "Save amended review" in page


def test_an_amended_review_shows_its_earlier_versions(case, clinician, prediction):
    owner = logged_in(clinician)
    for decision, label in [("agree", ""), ("override", "normal")]:
        owner.post(
            f"/predictions/{prediction.pk}/review/",
            {f"review-{prediction.pk}-decision": decision, f"review-{prediction.pk}-final_label": label},
        )
    page = owner.get(f"/cases/{case.pk}/").content.decode()
    assert "Version 2" in page and "Earlier versions (1)" in page
    assert list(Review.objects.order_by("version").values_list("decision", flat=True)) == [
        "agree",
        "override",
    ]


def test_nobody_amends_someone_elses_review_on_the_page(case, clinician, staff, prediction):
    review_create(user=staff, prediction=prediction, decision="agree")
    page = logged_in(clinician).get(f"/cases/{case.pk}/").content.decode()
    assert "Save review" not in page and "Save amended review" not in page


def test_withdrawing_on_the_page_ends_the_colleagues_access(case, clinician, other_clinician, prediction):
    referral = referral_create(user=clinician, case=case, clinician=other_clinician.username)
    response = logged_in(clinician).post(f"/cases/{case.pk}/referrals/{referral.pk}/withdraw/")
    assert response.status_code == 302
    colleague = logged_in(other_clinician)
    for url in (f"/cases/{case.pk}/", f"/scans/{prediction.scan_id}/file", f"/cases/{case.pk}/history/"):
        assert colleague.get(url).status_code == 404, url
    assert "No case is referred to you." in colleague.get("/").content.decode()
    assert (
        logged_in(other_clinician).post(f"/cases/{case.pk}/referrals/{referral.pk}/withdraw/").status_code
        == 404
    )


def test_the_colleague_cannot_withdraw(case, clinician, other_clinician):
    referral = referral_create(user=clinician, case=case, clinician=other_clinician.username)
    response = logged_in(other_clinician).post(
        f"/cases/{case.pk}/referrals/{referral.pk}/withdraw/", follow=True
    )
    assert "Only the case owner" in response.content.decode()
    assert Referral.objects.get().is_active


def test_sharing_pages_are_404_for_anyone_else(case, clinician):
    referral = referral_create(user=clinician, case=case, clinician=ClinicianFactory().username)
    stranger = logged_in(ClinicianFactory())
    assert stranger.get(f"/cases/{case.pk}/history/").status_code == 404
    assert stranger.post(f"/cases/{case.pk}/referrals/", {"clinician": "x"}).status_code == 404
    assert stranger.post(f"/cases/{case.pk}/referrals/{referral.pk}/withdraw/").status_code == 404
    assert Referral.objects.get().is_active


def test_the_case_page_shows_the_timeline_and_the_history_page_all_of_it(case, clinician):
    owner = logged_in(clinician)
    owner.post(
        f"/cases/{case.pk}/edit/", {"status": "open", "clinical_question": "Pain?", "notes": "New note"}
    )
    page = owner.get(f"/cases/{case.pk}/").content.decode()
    timeline = page[page.index('id="timeline"') :]
    assert f"Case {case.pk} changed" in timeline and "New note" in timeline
    assert "Viewed the case" not in timeline, "the page shows changes; the history page the accesses too"
    history = owner.get(f"/cases/{case.pk}/history/")
    assert history.status_code == 200
    assert f"Patient {case.patient_id} created" in history.content.decode()
    assert f"{clinician.username}</strong>: Viewed the case" in history.content.decode()


def test_case_page_views_and_file_downloads_are_logged(case, clinician, prediction):
    owner = logged_in(clinician)
    owner.get(f"/cases/{case.pk}/")
    owner.get(f"/cases/{case.pk}/?partial=scans")
    owner.get(f"/scans/{prediction.scan_id}/file")
    owner.get(f"/scans/{prediction.scan_id}/preview")
    owner.get(f"/patients/{case.patient_id}/")
    owner.get("/patients/", {"q": "P0"})
    actions = list(AccessEvent.objects.order_by("at", "id").values_list("action", flat=True))
    assert actions == ["view_case", "download_scan", "view_scan", "view_patient", "search_patients"]


def test_registering_a_taken_identifier_points_to_opening_a_case(clinician, other_clinician):
    PatientFactory(identifier="MRN-100234", created_by=other_clinician)
    client = logged_in(clinician)
    response = client.post("/patients/new/", {"identifier": " mrn-100234 "})
    assert response.status_code == 400
    assert response.context["form"].errors == {"identifier": [IDENTIFIER_TAKEN]}
    assert 'href="/cases/new/?identifier=mrn-100234"' in response.content.decode()
    form_page = client.get("/cases/new/?identifier=mrn-100234").content.decode()
    assert 'value="mrn-100234"' in form_page
    opened = client.post("/cases/new/", {"identifier": "mrn-100234", "clinical_question": "Pain"})
    case = Case.objects.get(owner=clinician)
    assert opened["Location"] == f"/cases/{case.pk}/"
    assert client.get("/patients/").content.decode().count(">MRN-100234</a>") == 1


def test_opening_a_case_by_an_unknown_identifier_shows_the_error(clinician):
    response = logged_in(clinician).post("/cases/new/", {"identifier": "MRN-404"})
    assert response.status_code == 400
    assert "identifier" in response.context["form"].errors
    assert not Case.objects.exists()


def test_patient_list_offers_opening_a_case_by_identifier(clinician):
    CaseFactory(owner=ClinicianFactory(), patient=PatientFactory(identifier="HIDDEN-1"))
    page = logged_in(clinician).get("/patients/", {"q": "HIDDEN"}).content.decode()
    assert "Open a case by identifier" in page and "HIDDEN-1" not in page.split("</form>", 1)[1]


def test_a_referred_clinician_sees_the_patient_but_does_not_edit_it(case, clinician, other_clinician):
    referral_create(user=clinician, case=case, clinician=other_clinician.username)
    colleague = logged_in(other_clinician)
    page = colleague.get(f"/patients/{case.patient_id}/")
    assert page.status_code == 200 and "Edit patient" not in page.content.decode()
    assert colleague.get(f"/patients/{case.patient_id}/edit/").status_code == 403
    assert colleague.post(f"/patients/{case.patient_id}/edit/", {"identifier": "CHANGED"}).status_code == 403
    case.patient.refresh_from_db()
    assert case.patient.identifier != "CHANGED"
    assert "Edit patient" in logged_in(clinician).get(f"/patients/{case.patient_id}/").content.decode()
