"""Many rows quickly, for tests of lists at size: bulk inserts, with no files behind the scans."""

from __future__ import annotations

import hashlib

from django.utils import timezone

from diagnosis.models import (
    AccessEvent,
    Case,
    CaseReport,
    IncomingSeries,
    Patient,
    Prediction,
    PredictionLevel,
    Referral,
    Review,
    Scan,
    Series,
)
from ml.models import ModelVersion


def bulk_scans(case: Case, count: int, *, start: int = 0, model_version=None) -> list[Prediction]:
    """`count` scans on the case, each with a done prediction and its three levels, every other one
    reviewed by the case owner; `start` numbers them after the ones already added. Returns the predictions."""
    scans = Scan.objects.bulk_create(
        Scan(
            case=case,
            file=f"scans/bulk/{case.pk}-{index}.png",
            original_name=f"scan-{index}.png",
            sha256=hashlib.sha256(f"{case.pk}-{index}".encode()).hexdigest(),
            format=Scan.Format.PNG,
            width=32,
            height=32,
            uploaded_by=case.owner,
        )
        for index in range(start, start + count)
    )
    predictions = Prediction.objects.bulk_create(
        Prediction(
            scan=scan,
            model_version=model_version,
            status=Prediction.Status.DONE,
            label=Prediction.Label.DDD,
            probability=0.8,
        )
        for scan in scans
    )
    PredictionLevel.objects.bulk_create(
        PredictionLevel(
            prediction=prediction,
            level=level,
            box=[8, 4, 24, 10],
            grade=3,
            grade_probabilities=[0.05, 0.05, 0.8, 0.05, 0.05],
            degenerated_probability=0.9,
        )
        for prediction in predictions
        for level in PredictionLevel.Level.values
    )
    Review.objects.bulk_create(
        Review(
            prediction=prediction,
            reviewer=case.owner,
            decision=Review.Decision.OVERRIDE,
            final_label=Prediction.Label.NORMAL,
        )
        for prediction in predictions[::2]
    )
    return predictions


class Hospital:
    """A clinician's records grown to `size` of everything: patients with a case and a scan each; one
    patient with `size` more cases, one case with `size` more scans and series; as many cases of a
    colleague referred to the clinician, access events, incoming series and model versions."""

    def __init__(self, clinician, colleague) -> None:
        self.clinician = clinician
        self.colleague = colleague
        self.size = 0
        self.patient: Patient | None = None
        self.case: Case | None = None
        self.model_version = ModelVersion.objects.create(
            name="bulk-model", architecture="invgg", version="1", artifact_path="var/bulk", input_size=64
        )

    def _sign_off(self, cases: list[Case], *, reopened: list[Case]) -> None:
        """A signed report on each of `cases`; the `reopened` ones reopened since and signed again."""
        now = timezone.now()

        def report(case: Case, version: int, signer, **reopening) -> CaseReport:
            file = f"reports/bulk/{case.pk}-{version}.pdf"
            return CaseReport(
                case=case, version=version, file=file, conclusion=f"Bulk, version {version}.",
                signed_by=signer, signed_at=now, **reopening,
            )  # fmt: skip

        reopening = {"reopened_by": self.colleague, "reopened_at": now, "reopen_reason": "Bulk."}
        reports = [
            report(case, 1, self.clinician, **(reopening if case in reopened else {})) for case in cases
        ]
        reports += [report(case, 2, self.colleague) for case in reopened]
        CaseReport.objects.bulk_create(reports)
        Case.objects.filter(pk__in=[case.pk for case in cases]).update(status=Case.Status.SIGNED_OFF)

    def grow(self, size: int) -> Hospital:
        added = range(self.size, size)
        patients = Patient.objects.bulk_create(
            Patient(identifier=f"BULK-{index:04d}", name=f"Bulk Patient {index}", created_by=self.clinician)
            for index in added
        )
        cases = Case.objects.bulk_create(Case(patient=patient, owner=self.clinician) for patient in patients)
        if self.patient is None:
            self.patient, self.case = patients[0], cases[0]
        for case in cases:
            bulk_scans(case, 1, model_version=self.model_version)
        self._sign_off(cases[::2], reopened=cases[::4])
        Case.objects.bulk_create(Case(patient=self.patient, owner=self.clinician) for _ in added)
        bulk_scans(self.case, len(added), start=1 + self.size, model_version=self.model_version)
        referred = Case.objects.bulk_create(Case(patient=patients[0], owner=self.colleague) for _ in added)
        Referral.objects.bulk_create(
            Referral(case=case, clinician=self.clinician, referred_by=self.colleague) for case in referred
        )
        viewed = AccessEvent.Action.VIEW_CASE
        AccessEvent.objects.bulk_create(
            AccessEvent(user=self.clinician, action=viewed, case=case, object_type="case") for case in cases
        )
        Series.objects.bulk_create(
            Series(
                case=self.case,
                study_uid="1.2.3",
                series_uid=f"1.2.3.{index}",
                patient_id_check=Series.PatientCheck.MATCH,
                patient_name_check=Series.PatientCheck.MATCH,
            )
            for index in added
        )
        IncomingSeries.objects.bulk_create(
            IncomingSeries(study_uid="1.2.4", series_uid=f"1.2.4.{index}", folder=f"incoming/{index}")
            for index in added
        )
        ModelVersion.objects.bulk_create(
            ModelVersion(
                name=f"bulk-model-{index}",
                architecture="vgg",
                version="1",
                artifact_path=f"var/bulk-{index}",
                input_size=64,
            )
            for index in added
        )
        self.size = size
        return self
