from __future__ import annotations

import hashlib
from collections.abc import Callable

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from diagnosis.errors import ApplicationError
from diagnosis.models import Case, Patient, Prediction, Review
from ml.models import ModelVersion


def _login_key(request: HttpRequest | None, username: str) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    digest = hashlib.sha256(f"{username.strip().lower()}|{address}".encode()).hexdigest()
    return f"login-failures:{digest}"


def login_blocked(request: HttpRequest | None, username: str) -> bool:
    return cache.get(_login_key(request, username), 0) >= settings.LUMBAR_LOGIN_MAX_FAILURES


def login_failure_record(request: HttpRequest | None, username: str) -> None:
    """The window starts at the first failure, so a blocked user waits it out, however often they retry."""
    key = _login_key(request, username)
    cache.add(key, 0, timeout=settings.LUMBAR_LOGIN_WINDOW_SECONDS)
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=settings.LUMBAR_LOGIN_WINDOW_SECONDS)


def login_failures_clear(request: HttpRequest | None, username: str) -> None:
    cache.delete(_login_key(request, username))


class LoginForm(AuthenticationForm):
    """Django's login form, refusing a username and address pair after repeated failures."""

    RATE_LIMITED = "rate_limited"

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        if username and login_blocked(self.request, username):
            minutes = max(1, settings.LUMBAR_LOGIN_WINDOW_SECONDS // 60)
            raise ValidationError(
                f"Too many failed log-in attempts. Wait {minutes} minutes and try again.",
                code=self.RATE_LIMITED,
            )
        try:
            cleaned_data = super().clean()
        except ValidationError:
            if username:
                login_failure_record(self.request, username)
            raise
        login_failures_clear(self.request, username)
        return cleaned_data

    @property
    def rate_limited(self) -> bool:
        return any(error.code == self.RATE_LIMITED for error in self.non_field_errors().as_data())


class AdminLoginForm(LoginForm, AdminAuthenticationForm):
    """The admin's log-in, under the same rate limit."""


class ServiceForm(forms.Form):
    """A form whose cleaned data goes to a service; the service's errors are shown next to the fields
    they name."""

    def submit(self, service: Callable, **arguments):
        """The service's result, or None when the form or the service refused the input."""
        if not self.is_valid():
            return None
        try:
            return service(**arguments, **self.cleaned_data)
        except ApplicationError as exc:
            self.add_application_error(exc)
            return None

    def add_application_error(self, error: ApplicationError) -> None:
        for field, messages in error.errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)
        if not error.errors:
            self.add_error(None, error.message)


class PatientForm(ServiceForm):
    identifier = forms.CharField(max_length=64, help_text="Hospital or study identifier.")
    name = forms.CharField(max_length=200, required=False)
    birth_date = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Optional."
    )
    sex = forms.ChoiceField(choices=[("", "Not recorded"), *Patient.Sex.choices], required=False)

    @classmethod
    def for_patient(cls, patient: Patient, **kwargs) -> PatientForm:
        initial = {field: getattr(patient, field) for field in ("identifier", "name", "birth_date", "sex")}
        return cls(initial=initial, **kwargs)


class CaseCreateForm(ServiceForm):
    clinical_question = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class CaseEditForm(CaseCreateForm):
    status = forms.ChoiceField(choices=Case.Status.choices)
    field_order = ["status", "clinical_question", "notes"]


class ReviewForm(ServiceForm):
    decision = forms.ChoiceField(choices=Review.Decision.choices, widget=forms.RadioSelect)
    final_label = forms.ChoiceField(
        choices=[("", "Keep the model's label"), *Prediction.Label.choices],
        required=False,
        help_text="Required when overriding.",
    )
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000)


class RerunForm(ServiceForm):
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.order_by("name"),
        required=False,
        empty_label="The active model",
        label="Re-run with",
    )
