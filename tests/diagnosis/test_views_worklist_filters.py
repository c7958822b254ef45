"""The worklist's case filters and sort, the case page's "next unreviewed" link, and times shown in the
reader's time zone with the zone named."""

from __future__ import annotations

import datetime

from django.utils import timezone

from diagnosis.models import Case, Referral
from diagnosis.services.reviews import review_create
from tests.factories import CaseFactory, PredictionFactory, ScanFactory


def case_rows(html: str) -> str:
    return html[html.index('id="cases"') :]


def test_the_worklist_hides_signed_off_cases_until_asked(client, clinician):
    CaseFactory(owner=clinician, patient__identifier="P-OPEN")
    CaseFactory(owner=clinician, status="signed_off", patient__identifier="P-SIGNED")
    client.force_login(clinician)
    assert "P-SIGNED" not in case_rows(client.get("/").content.decode())
    signed = case_rows(client.get("/", {"signed_off": "true"}).content.decode())
    assert "P-SIGNED" in signed and "P-OPEN" not in signed
    everything = case_rows(client.get("/", {"signed_off": ""}).content.decode())
    assert "P-SIGNED" in everything and "P-OPEN" in everything


def test_the_worklist_filters_by_patient_status_dates_review_and_referral(client, clinician, other_clinician):
    old = CaseFactory(owner=clinician, patient__identifier="MRN-OLD")
    Case.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=40))
    CaseFactory(owner=clinician, status="awaiting_review", patient__identifier="MRN-WAITING")
    referred = CaseFactory(owner=other_clinician, patient__identifier="MRN-REFERRED")
    Referral.objects.create(case=referred, clinician=clinician, referred_by=other_clinician)
    client.force_login(clinician)

    def shown(**params) -> set[str]:
        html = case_rows(client.get("/", params).content.decode())
        return {name for name in ("MRN-OLD", "MRN-WAITING", "MRN-REFERRED") if name in html}

    assert shown(patient_identifier="mrn-old") == {"MRN-OLD"}
    assert shown(status="awaiting_review") == {"MRN-WAITING"}
    since = (timezone.now() - datetime.timedelta(days=7)).date().isoformat()
    assert shown(created_after=since) == {"MRN-WAITING", "MRN-REFERRED"}
    assert shown(needs_my_review="true") == {"MRN-WAITING"}
    assert shown(referred_to_me="true") == {"MRN-REFERRED"}
    html = client.get("/", {"ordering": "patient_identifier"}).content.decode()
    rows = case_rows(html)
    assert rows.index("MRN-OLD") < rows.index("MRN-REFERRED") < rows.index("MRN-WAITING")
    bad = client.get("/", {"created_after": "soon"})
    assert bad.status_code == 200 and "Enter a valid date/time." in bad.content.decode()


def test_staff_find_every_case_in_the_worklist(client, staff, clinician):
    CaseFactory(owner=clinician, patient__identifier="P-CLINICIAN")
    client.force_login(staff)
    assert "P-CLINICIAN" in case_rows(client.get("/").content.decode())


def test_next_unreviewed_goes_to_the_result_then_to_the_next_case(client, clinician):
    case = CaseFactory(owner=clinician)
    older = PredictionFactory(scan=ScanFactory(case=case), status="done", label="ddd", probability=0.8)
    newer = PredictionFactory(scan=ScanFactory(case=case), status="done", label="ddd", probability=0.8)
    other = CaseFactory(owner=clinician, status="awaiting_review")
    client.force_login(clinician)
    html = client.get(f"/cases/{case.pk}/").content.decode()
    assert f'id="next-unreviewed" href="/predictions/{newer.pk}/">Next unreviewed result<' in html
    assert client.get(f"/predictions/{newer.pk}/")["Location"] == f"/cases/{case.pk}/#prediction-{newer.pk}"
    review_create(user=clinician, prediction=newer, decision="agree")
    review_create(user=clinician, prediction=older, decision="agree")
    html = client.get(f"/cases/{case.pk}/").content.decode()
    assert f'href="/cases/{other.pk}/">Next case to review (case {other.pk})<' in html


def test_times_are_shown_in_the_browsers_time_zone_with_its_name(client, clinician):
    case = CaseFactory(owner=clinician)
    noon = datetime.datetime(2026, 1, 15, 12, 0, tzinfo=datetime.UTC)
    Case.objects.filter(pk=case.pk).update(created_at=noon)
    client.force_login(clinician)
    client.cookies["tz"] = "Asia/Tokyo"
    html = client.get("/", {"signed_off": ""}).content.decode()
    assert "Times in Asia/Tokyo (JST)" in html and "2026-01-15 21:00 JST" in html
    client.cookies["tz"] = "Mars/Olympus"
    html = client.get("/", {"signed_off": ""}).content.decode()
    assert "Times in UTC (UTC)" in html and "2026-01-15 12:00 UTC" in html
