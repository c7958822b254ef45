from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from diagnosis.models import Case
from diagnosis.selectors import case_list


@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    cases = case_list(user=request.user).exclude(status=Case.Status.CLOSED)
    return render(request, "diagnosis/worklist.html", {"cases": cases})
