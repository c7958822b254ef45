"""GET /api/v1/cases/ with the worklist's filters and orderings: needs_my_review, referred_to_me,
signed_off, patient_identifier and ordering by patient; staff list every case; a bad value is a 400."""

from __future__ import annotations

from django import forms
from rest_framework.test import APIClient

from diagnosis.api.views import ListApi
from diagnosis.models import Referral, Review
from tests.api.conftest import assert_error
from tests.factories import CaseFactory, PredictionFactory, ScanFactory


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_needs_my_review_and_referred_to_me(api, clinician, other_clinician):
    awaiting = CaseFactory(owner=clinician, status="awaiting_review")
    quiet = CaseFactory(owner=clinician)
    referred = CaseFactory(owner=other_clinician)
    Referral.objects.create(case=referred, clinician=clinician, referred_by=other_clinician)
    done = PredictionFactory(scan=ScanFactory(case=referred), status="done", label="ddd", probability=0.8)
    assert set(ids(api.get("/api/v1/cases/", {"needs_my_review": "true"}))) == {awaiting.pk, referred.pk}
    assert set(ids(api.get("/api/v1/cases/", {"needs_my_review": "false"}))) == {quiet.pk}
    assert ids(api.get("/api/v1/cases/", {"referred_to_me": "true"})) == [referred.pk]
    assert set(ids(api.get("/api/v1/cases/", {"referred_to_me": "false"}))) == {awaiting.pk, quiet.pk}
    # Once the referred clinician gave their opinion, the referred case no longer waits for them.
    Review.objects.create(
        prediction=done,
        reviewer=clinician,
        kind=Review.Kind.SECOND_OPINION,
        referral=Referral.objects.get(),
        decision="agree",
        final_label="ddd",
    )
    assert ids(api.get("/api/v1/cases/", {"needs_my_review": "true"})) == [awaiting.pk]


def test_signed_off_patient_identifier_and_ordering_by_patient(api, clinician):
    signed = CaseFactory(owner=clinician, status="signed_off", patient__identifier="MRN-200")
    first = CaseFactory(owner=clinician, patient__identifier="MRN-100")
    third = CaseFactory(owner=clinician, patient__identifier="MRN-300")
    assert ids(api.get("/api/v1/cases/", {"signed_off": "true"})) == [signed.pk]
    assert set(ids(api.get("/api/v1/cases/", {"signed_off": "false"}))) == {first.pk, third.pk}
    assert ids(api.get("/api/v1/cases/", {"patient_identifier": "mrn-1"})) == [first.pk]
    ordered = ids(api.get("/api/v1/cases/", {"ordering": "patient_identifier"}))
    assert ordered == [first.pk, signed.pk, third.pk]
    assert ids(api.get("/api/v1/cases/", {"ordering": "-patient_identifier"}))[0] == third.pk
    assert_error(api.get("/api/v1/cases/", {"needs_my_review": "maybe"}), 400, "needs_my_review")
    assert_error(api.get("/api/v1/cases/", {"signed_off": "sometimes"}), 400, "signed_off")
    assert_error(api.get("/api/v1/cases/", {"ordering": "owner__password"}), 400, "ordering")


def test_staff_list_every_case_and_others_get_404_for_a_case_not_theirs(api, staff, clinician):
    mine, theirs = CaseFactory(owner=clinician), CaseFactory()
    admin = APIClient()
    admin.force_authenticate(staff)
    assert set(ids(admin.get("/api/v1/cases/"))) == {mine.pk, theirs.pk}
    assert set(ids(admin.get("/api/v1/cases/", {"needs_my_review": "false"}))) == {mine.pk, theirs.pk}
    assert ids(api.get("/api/v1/cases/")) == [mine.pk]
    assert_error(api.get(f"/api/v1/cases/{theirs.pk}/"), 404)


def test_every_list_filter_reads_the_query_parameter_of_its_name():
    """ListApi skips the filters when no query parameter names one of them; that holds only while each
    filter reads a single parameter of its own name (a range widget would read name_min and name_max)."""

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    filtersets = {view.filterset_class for view in subclasses(ListApi)}
    assert len(filtersets) >= 6
    for filterset in filtersets:
        for name, list_filter in filterset.base_filters.items():
            assert not isinstance(list_filter.field.widget, forms.MultiWidget), (filterset, name)
