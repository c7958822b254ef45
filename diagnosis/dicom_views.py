"""Clinician pages for DICOM: picking the slice of a series the prediction runs on, the incoming list of
series received over the network for no case, and sending a result to the PACS."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from diagnosis.errors import ApplicationError
from diagnosis.models import Case
from diagnosis.selectors import case_list, incoming_get, incoming_list, prediction_get, series_get
from diagnosis.services.dicom_reports import prediction_send_to_pacs
from diagnosis.services.receiving import incoming_attach
from diagnosis.services.series import series_choose_slice
from diagnosis.views import case_anchor, clinician_page


class SliceForm(forms.Form):
    scan = forms.IntegerField(min_value=1)


@require_POST
@clinician_page
def series_slice(request: HttpRequest, pk: int) -> HttpResponse:
    series = series_get(user=request.user, pk=pk)
    form = SliceForm(request.POST)
    anchor = f"{reverse('diagnosis:case-detail', args=[series.case_id])}#series-{series.pk}"
    if not form.is_valid():
        messages.error(request, "Choose a slice of the series.")
        return redirect(anchor)
    scan = series.slices.filter(pk=form.cleaned_data["scan"]).first()
    if scan is None:
        messages.error(request, "That slice is not in this series.")
        return redirect(anchor)
    try:
        series_choose_slice(user=request.user, series=series, scan=scan)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(anchor)
    messages.success(request, f"A prediction on slice {scan.slice_index + 1} is queued.")
    return redirect(anchor)


class AttachForm(forms.Form):
    case = forms.ModelChoiceField(queryset=Case.objects.none(), empty_label="Choose a case")

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["case"].queryset = (
            case_list(user=user).exclude(status=Case.Status.SIGNED_OFF).order_by("patient__identifier", "-pk")
        )
        self.fields["case"].label_from_instance = lambda case: f"{case.patient.identifier}: case {case.pk}"


@require_GET
@clinician_page
def incoming_page(request: HttpRequest) -> HttpResponse:
    waiting = list(incoming_list(user=request.user))
    for incoming in waiting:
        incoming.form = AttachForm(user=request.user, prefix=f"attach-{incoming.pk}")
    return render(request, "diagnosis/incoming.html", {"waiting": waiting})


@require_POST
@clinician_page
def incoming_attach_page(request: HttpRequest, pk: int) -> HttpResponse:
    incoming = incoming_get(user=request.user, pk=pk)
    form = AttachForm(request.POST, user=request.user, prefix=f"attach-{incoming.pk}")
    if not form.is_valid():
        messages.error(request, "Choose an open case of yours to attach the series to.")
        return redirect("diagnosis:incoming")
    case = form.cleaned_data["case"]
    try:
        stored = incoming_attach(user=request.user, incoming=incoming, case=case)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("diagnosis:incoming")
    messages.success(request, f"The series is attached to case {case.pk}.")
    return redirect(f"{reverse('diagnosis:case-detail', args=[case.pk])}#series-{stored.series.pk}")


@require_POST
@clinician_page
def prediction_send(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = prediction_get(user=request.user, pk=pk)
    try:
        prediction_send_to_pacs(user=request.user, prediction=prediction)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The DICOM report and the heatmap were sent to the PACS.")
    return redirect(case_anchor(prediction))
