"""Pages for what a case shares beyond its owner: second opinions (referrals), the case history, and
opening a case for any registered patient by the exact identifier."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from diagnosis.errors import ApplicationError
from diagnosis.forms import CaseByIdentifierForm, ReferralForm
from diagnosis.models import AccessEvent
from diagnosis.selectors import case_get, case_history, referral_get
from diagnosis.services.cases import case_create_for_identifier
from diagnosis.services.history import access_record
from diagnosis.services.referrals import referral_create, referral_withdraw
from diagnosis.views import _render_case, _render_form, clinician_page

HISTORY_PAGE_SIZE = 50


@require_POST
@clinician_page
def case_refer(request: HttpRequest, pk: int) -> HttpResponse:
    case = case_get(user=request.user, pk=pk)
    form = ReferralForm(request.POST)
    if referral := form.submit(referral_create, user=request.user, case=case):
        messages.success(
            request, f"Case referred to {referral.clinician.get_username()} for a second opinion."
        )
        return redirect(f"{reverse('diagnosis:case-detail', args=[case.pk])}#referrals")
    return _render_case(request, case, referral_form=form, status=400)


@require_POST
@clinician_page
def referral_withdraw_page(request: HttpRequest, pk: int, referral_id: int) -> HttpResponse:
    case = case_get(user=request.user, pk=pk)
    referral = referral_get(user=request.user, case=case, pk=referral_id)
    try:
        referral = referral_withdraw(user=request.user, referral=referral)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Referral to {referral.clinician.get_username()} withdrawn.")
    return redirect(f"{reverse('diagnosis:case-detail', args=[case.pk])}#referrals")


@require_GET
@clinician_page
def case_history_page(request: HttpRequest, pk: int) -> HttpResponse:
    case = case_get(user=request.user, pk=pk)
    access_record(user=request.user, obj=case, action=AccessEvent.Action.VIEW_HISTORY)
    page = Paginator(case_history(case=case), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "diagnosis/case_history.html", {"case": case, "page": page})


@clinician_page
def case_open_by_identifier_page(request: HttpRequest) -> HttpResponse:
    initial = {"identifier": request.GET.get("identifier", "")[:64]}
    form = CaseByIdentifierForm(request.POST or None, initial=initial)
    if request.method == "POST" and (case := form.submit(case_create_for_identifier, user=request.user)):
        messages.success(request, f"Case {case.pk} opened for {case.patient.identifier}.")
        return redirect("diagnosis:case-detail", pk=case.pk)
    back = reverse("diagnosis:patient-list")
    return _render_form(request, form, title="Open a case by identifier", submit="Open case", back=back)
