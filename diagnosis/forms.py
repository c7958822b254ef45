from __future__ import annotations

from collections.abc import Callable, Iterable

from django import forms

from diagnosis.errors import ApplicationError, PermissionDenied
from diagnosis.models import Patient, Prediction, PredictionLevel, Referral, Review
from diagnosis.services.reviews import choices_sentence
from ml.models import ModelVersion


class ServiceForm(forms.Form):
    """A form whose cleaned data goes to a service; the service's errors are shown next to the fields
    they name. A choice refused is told with the choices' labels, as the page shows them ("Choose Normal,
    Degenerative disc disease or Not assessable."), never with their stored values."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for form_field in self.fields.values():
            if not isinstance(form_field, forms.ChoiceField) or isinstance(
                form_field, forms.ModelChoiceField
            ):
                continue
            shown = [(value, label) for value, label in form_field.choices if value != ""]
            default = forms.ChoiceField.default_error_messages["invalid_choice"]
            if shown and form_field.error_messages["invalid_choice"] == default:
                form_field.error_messages["invalid_choice"] = f"Choose {choices_sentence(shown)}."

    def submit(self, service: Callable, **arguments):
        """The service's result, or None when the form or the service refused the input. A refusal of
        the user rather than of the input (PermissionDenied) is not a form error: it propagates."""
        if not self.is_valid():
            return None
        try:
            return service(**arguments, **self.cleaned_data)
        except PermissionDenied:
            raise
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


class CaseByIdentifierForm(CaseCreateForm):
    """Open a case for any registered patient, named by the exact identifier."""

    identifier = forms.CharField(
        max_length=64,
        label="Patient identifier",
        help_text="The exact identifier (upper or lower case alike). The look-up is recorded.",
    )
    field_order = ["identifier", "clinical_question", "notes"]


class ReviewForm(ServiceForm):
    """Validates the case page's review form (rendered from plain context, see views._review_form_state).
    On a prediction with levels it takes a grade per level, named `grade-<level>`, and the decision follows
    the grades (services.reviews)."""

    decision = forms.ChoiceField(
        choices=Review.Decision.choices,
        widget=forms.RadioSelect,
        error_messages={"required": f"Choose {choices_sentence(Review.Decision.choices)}."},
    )
    final_label = forms.ChoiceField(
        choices=[("", "Keep the model's label"), *Prediction.Label.choices],
        required=False,
        help_text="Required when overriding.",
    )
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000)

    def __init__(self, *args, findings: Iterable[PredictionLevel] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.findings = list(findings)
        if self.findings:
            # The page sends the grades; a decision alone (Agree: the model's grades) is taken too.
            self.fields["decision"].required = False
        grades = [(grade, str(grade)) for grade in PredictionLevel.GRADES]
        for finding in self.findings:
            message = f"Choose a Pfirrmann grade from 1 to 5 for {finding.level}."
            self.fields[grade_field(finding.level)] = forms.TypedChoiceField(
                choices=grades,
                coerce=int,
                required=False,
                empty_value=None,
                label=finding.level,
                error_messages={"invalid_choice": message},
            )

    def clean(self) -> dict:
        data = super().clean()
        if self.findings:
            data["levels"] = [
                {"level": finding.level, "grade": grade}
                for finding in self.findings
                if (grade := data.pop(grade_field(finding.level), None)) is not None
            ]
        return data


def grade_field(level: str) -> str:
    return f"grade-{level}"


class RerunForm(ServiceForm):
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.order_by("name"),
        required=False,
        empty_label="The active model",
        label="Re-run with",
        error_messages={"invalid_choice": "Choose the active model or one of the registered models."},
    )


class ReferralForm(ServiceForm):
    clinician = forms.CharField(max_length=150, label="Colleague's username")
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=Referral._meta.get_field("note").max_length,
        label="Note for the colleague",
    )


class SignOffForm(ServiceForm):
    conclusion = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=10_000,
        help_text="The conclusion printed on the signed report.",
    )


class ReopenForm(ServiceForm):
    reason = forms.CharField(
        label="Reason for reopening",
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
        help_text="Kept with the report version it reopens; the next sign-off amends it.",
    )


class NotUsedForm(ServiceForm):
    reason = forms.CharField(label="Why is it not used?", max_length=2000)
