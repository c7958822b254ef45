"""manage.py send_to_pacs PREDICTION_ID [--host H --port P --ae-title T]: C-STORE a finished prediction's
DICOM SR and heatmap image to the PACS."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from diagnosis.dicom.sender import Destination
from diagnosis.errors import ApplicationError
from diagnosis.models import Prediction
from diagnosis.services.dicom_reports import prediction_send_to_pacs


class Command(BaseCommand):
    help = "Send a finished prediction to the PACS as a DICOM SR with its heatmap as a Secondary Capture."

    def add_arguments(self, parser) -> None:
        parser.add_argument("prediction", type=int, help="The prediction's id.")
        parser.add_argument("--host", default=settings.LUMBAR_PACS_HOST)
        parser.add_argument("--port", type=int, default=settings.LUMBAR_PACS_PORT)
        parser.add_argument("--ae-title", default=settings.LUMBAR_PACS_AE_TITLE, help="The PACS's AE title.")

    def handle(self, *args, prediction: int, host: str, port: int, ae_title: str, **options) -> None:
        if not host:
            raise CommandError("No PACS: set LUMBAR_PACS_HOST or pass --host.")
        found = Prediction.objects.filter(pk=prediction).select_related("scan__case__patient").first()
        if found is None:
            raise CommandError(f"No prediction {prediction}.")
        destination = Destination(
            host=host, port=port, ae_title=ae_title, calling_ae_title=settings.LUMBAR_DICOM_AE_TITLE
        )
        try:
            results = prediction_send_to_pacs(user=None, prediction=found, destination=destination)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        sent = "the SR and the heatmap" if results.heatmap is not None else "the SR"
        self.stdout.write(f"Prediction {prediction}: {sent} sent to {ae_title} at {host}:{port}.")
