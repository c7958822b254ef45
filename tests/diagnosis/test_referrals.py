"""Second opinions: the owner refers a case to a colleague, who sees it and records their own opinion
until the owner withdraws the referral."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import RestrictedError

from diagnosis.errors import ApplicationError, NotFound, PermissionDenied
from diagnosis.models import Prediction, Referral, Review
from diagnosis.selectors import case_list, patient_list, prediction_list, referral_list, scan_list
from diagnosis.services.cases import case_update
from diagnosis.services.predictions import prediction_request
from diagnosis.services.referrals import referral_create, referral_withdraw
from diagnosis.services.reviews import review_create
from diagnosis.services.scans import scan_upload
from tests.factories import ClinicianFactory, PredictionFactory, ScanFactory, UserFactory, png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def prediction(case):
    return PredictionFactory(
        scan=ScanFactory(case=case), status=Prediction.Status.DONE, label="ddd", probability=0.8
    )


@pytest.fixture
def referral(case, clinician, other_clinician):
    return referral_create(user=clinician, case=case, clinician=other_clinician.username, note="Your view?")


def test_a_referred_clinician_sees_the_case_and_what_hangs_off_it(
    case, referral, other_clinician, prediction
):
    assert list(case_list(user=other_clinician)) == [case]
    assert list(patient_list(user=other_clinician)) == [case.patient]
    assert list(scan_list(user=other_clinician)) == [prediction.scan]
    assert list(prediction_list(user=other_clinician)) == [prediction]
    assert (referral.referred_by, referral.note, referral.is_active) == (case.owner, "Your view?", True)


def test_a_referred_clinicians_review_is_a_second_opinion_beside_the_owners(
    case, referral, clinician, other_clinician, prediction
):
    own = review_create(user=clinician, prediction=prediction, decision="agree")
    opinion = review_create(
        user=other_clinician, prediction=prediction, decision="override", final_label="normal", comment="No"
    )
    assert (own.kind, own.referral) == (Review.Kind.REVIEW, None)
    assert (opinion.kind, opinion.referral, opinion.version) == (Review.Kind.SECOND_OPINION, referral, 1)
    amended = review_create(user=other_clinician, prediction=prediction, decision="agree")
    assert (amended.kind, amended.version) == (Review.Kind.SECOND_OPINION, 2)
    own.refresh_from_db()
    assert own.decision == "agree", "the owner's review is untouched"


def test_a_second_opinion_alone_leaves_the_prediction_awaiting_the_owners_review(
    case, referral, other_clinician, prediction
):
    review_create(user=other_clinician, prediction=prediction, decision="agree")
    case.refresh_from_db()
    assert case.status == case.Status.AWAITING_REVIEW


def test_a_referred_clinician_cannot_change_the_case(case, referral, other_clinician, prediction):
    with pytest.raises(PermissionDenied):
        case_update(user=other_clinician, case=case, notes="mine now")
    with pytest.raises(PermissionDenied):
        prediction_request(user=other_clinician, scan=prediction.scan)
    with pytest.raises(PermissionDenied):
        scan_upload(
            user=other_clinician, case=case, uploaded_file=SimpleUploadedFile("x.png", png_bytes(value=9))
        )
    with pytest.raises(PermissionDenied):
        referral_create(user=other_clinician, case=case, clinician=ClinicianFactory().username)
    with pytest.raises(PermissionDenied):
        referral_withdraw(user=other_clinician, referral=referral)


def test_withdrawal_ends_the_access_and_keeps_the_opinions(
    case, referral, clinician, other_clinician, prediction
):
    opinion = review_create(user=other_clinician, prediction=prediction, decision="agree")
    withdrawn = referral_withdraw(user=clinician, referral=referral)
    assert (withdrawn.is_active, withdrawn.withdrawn_by) == (False, clinician)
    assert not case_list(user=other_clinician).exists()
    assert not prediction_list(user=other_clinician).exists()
    with pytest.raises(NotFound):
        review_create(user=other_clinician, prediction=prediction, decision="agree")
    assert Review.objects.get() == opinion
    with pytest.raises(ApplicationError, match="already withdrawn"):
        referral_withdraw(user=clinician, referral=referral)


def test_referring_again_after_a_withdrawal_gives_a_new_referral(case, referral, clinician, other_clinician):
    referral_withdraw(user=clinician, referral=referral)
    again = referral_create(user=clinician, case=case, clinician=other_clinician.username)
    assert again.pk != referral.pk
    assert [r.pk for r in referral_list(user=clinician, case=case)] == [again.pk, referral.pk]


@pytest.mark.parametrize(
    "who, message",
    [
        ("nobody", "No active clinician"),
        ("not-a-clinician", "No active clinician"),
        ("inactive", "No active clinician"),
        ("owner", "owns the case"),
        ("twice", "already referred"),
    ],
)
def test_a_referral_names_an_active_colleague_once(case, clinician, other_clinician, who, message):
    usernames = {
        "nobody": "no-such-user",
        "not-a-clinician": UserFactory().username,
        "inactive": ClinicianFactory(is_active=False).username,
        "owner": clinician.username,
        "twice": other_clinician.username,
    }
    if who == "twice":
        referral_create(user=clinician, case=case, clinician=other_clinician.username)
    with pytest.raises(ApplicationError) as error:
        referral_create(user=clinician, case=case, clinician=usernames[who])
    assert message in error.value.errors["clinician"][0]
    assert Referral.objects.count() == (1 if who == "twice" else 0)


def test_a_referral_note_has_a_limit(case, clinician, other_clinician):
    with pytest.raises(ApplicationError) as error:
        referral_create(user=clinician, case=case, clinician=other_clinician.username, note="x" * 2001)
    assert "note" in error.value.errors


def test_nobody_else_can_refer_or_see_a_referred_case(case, referral, clinician):
    stranger = ClinicianFactory()
    with pytest.raises(NotFound):
        referral_create(user=stranger, case=case, clinician=ClinicianFactory().username)
    with pytest.raises(NotFound):
        referral_withdraw(user=stranger, referral=referral)
    assert not case_list(user=stranger).exists()


def test_staff_can_withdraw_a_referral(case, referral, staff):
    assert referral_withdraw(user=staff, referral=referral).withdrawn_by == staff


def test_a_referral_with_opinions_goes_only_with_its_case(case, referral, other_clinician, prediction):
    review_create(user=other_clinician, prediction=prediction, decision="agree")
    with pytest.raises(RestrictedError):
        referral.delete()
    case.delete()
    assert not Referral.objects.exists() and not Review.objects.exists()


def test_the_referred_clinicians_case_page_offers_no_sign_off_or_reopen(
    client, case, referral, clinician, other_clinician, prediction
):
    client.force_login(other_clinician)
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert 'class="sign-off-form"' not in page and "The case's owner signs it off" in page

    client.force_login(clinician)
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert 'class="sign-off-form"' in page and "The case's owner signs it off" not in page
