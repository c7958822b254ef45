"""manage.py dicom_receiver [--port P] [--ae-title T]: the DICOM C-STORE receiver."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from diagnosis.dicom.receiver import ReceivedFolder, Receiver, complete_folders
from diagnosis.errors import ApplicationError
from diagnosis.services.receiving import received_folder_store, receiving_user

SPOOL_FOLDER = "dicom-spool"


class Command(BaseCommand):
    help = (
        "Receive DICOM series over the network (C-STORE) and store each like an upload: in the open case "
        "of the patient its PatientID names, in a new case of LUMBAR_DICOM_RECEIVING_USER, or in the "
        "incoming list."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=settings.LUMBAR_DICOM_PORT)
        parser.add_argument("--ae-title", default=settings.LUMBAR_DICOM_AE_TITLE)
        parser.add_argument("--host", default="0.0.0.0", help="The address to listen on.")
        parser.add_argument(
            "--sweep-seconds",
            type=float,
            default=30.0,
            help="How often folders a failed hand-over left in the spool are stored again.",
        )

    def handle(self, *args, port: int, ae_title: str, host: str, sweep_seconds: float, **options) -> None:
        if not 0 <= port < 65536:
            raise CommandError(f"--port must be a TCP port, got {port}")
        if not 0 < len(ae_title.strip()) <= 16:
            raise CommandError(f"--ae-title must be 1 to 16 characters, got {ae_title!r}")
        try:
            receiving_user()
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        spool_dir = Path(settings.MEDIA_ROOT) / SPOOL_FOLDER
        spool_dir.mkdir(parents=True, exist_ok=True)
        receiver = Receiver(
            spool_dir=spool_dir,
            ae_title=ae_title.strip(),
            hand_over=self._store,
            max_pixels=settings.LUMBAR_MAX_IMAGE_PIXELS,
            max_bytes=settings.LUMBAR_MAX_UPLOAD_BYTES,
            allowed_calling_ae_titles=settings.LUMBAR_DICOM_ALLOWED_CALLERS,
        )
        # What an earlier run received and did not store yet comes first.
        self._sweep(spool_dir, include_unfinished=True)
        bound = receiver.start(host, port)
        self.stdout.write(f"DICOM receiver {ae_title.strip()} listening on {host}:{bound}", ending="\n")
        self.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            while not stop.wait(sweep_seconds):
                self._sweep(spool_dir)
        finally:
            receiver.stop()

    # One folder at a time: the sweep must not take a folder whose association's own hand-over is storing it.
    _storing = threading.Lock()

    def _store(self, folder: ReceivedFolder) -> None:
        with self._storing:
            if not folder.path.is_dir():
                return  # stored meanwhile
            # Each association ends in its own thread: a connection the database dropped is replaced.
            close_old_connections()
            try:
                received_folder_store(folder=folder)
            finally:
                close_old_connections()

    def _sweep(self, spool_dir: Path, *, include_unfinished: bool = False) -> None:
        for folder in complete_folders(spool_dir, include_unfinished=include_unfinished):
            try:
                self._store(folder)
            except Exception as exc:
                self.stderr.write(f"{folder.path.name} stays in the spool: {exc}")
