"""Clinician pages for DICOM series: picking the slice the prediction runs on."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from diagnosis.errors import ApplicationError
from diagnosis.selectors import series_get
from diagnosis.services.series import series_choose_slice
from diagnosis.views import clinician_page


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
