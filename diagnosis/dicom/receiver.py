"""The DICOM C-STORE receiver (pynetdicom): what a scanner or a PACS sends is checked, written to a spool
folder per association and handed over, once the association ends, to whoever stores it.

Django-free: `manage.py dicom_receiver` passes in the folder and the hand-over; the receiver answers each
C-STORE only once the instance is safely on disk, so nothing it acknowledged is lost if the hand-over
fails (the folder stays in the spool and is handed over again).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    EnhancedMRImageStorage,
    LegacyConvertedEnhancedMRImageStorage,
    MRImageStorage,
    Verification,
)

from diagnosis.imaging import SUPPORTED_TRANSFER_SYNTAXES, ImageRejected, inspect_upload

logger = logging.getLogger(__name__)

# The images the classifier can read; any other SOP class is refused when the association is negotiated
# (its presentation context is rejected: abstract syntax not supported).
ACCEPTED_SOP_CLASSES = (MRImageStorage, EnhancedMRImageStorage, LegacyConvertedEnhancedMRImageStorage)
# Those diagnosis.imaging decodes.
ACCEPTED_TRANSFER_SYNTAXES = sorted(SUPPORTED_TRANSFER_SYNTAXES)

# PS3.4 B.2.3 (Storage) and PS3.7 C (general) statuses.
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (the disk refused the write)
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122

COMPLETE_MARKER = ".complete"
INSTANCE_SUFFIX = ".dcm"


@dataclass(frozen=True)
class ReceivedFolder:
    path: Path
    calling_ae_title: str


def _status(code: int, comment: str = "") -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]  # LO
    return status


class Receiver:
    """A C-STORE SCP that spools each association's instances into its own folder and calls `hand_over`
    with the folder once the association has ended (released, aborted or dropped)."""

    def __init__(
        self,
        *,
        spool_dir: Path,
        ae_title: str,
        hand_over: Callable[[ReceivedFolder], None],
        max_pixels: int,
        max_bytes: int,
        allowed_calling_ae_titles: list[str] | None = None,
    ) -> None:
        self.spool_dir = spool_dir
        self.hand_over = hand_over
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.ae = AE(ae_title=ae_title)
        # An association addressed to another AE title, or from a calling AE not allowed, is rejected.
        self.ae.require_called_aet = True
        self.ae.require_calling_aet = list(allowed_calling_ae_titles or [])
        self.ae.add_supported_context(Verification)
        for sop_class in ACCEPTED_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, ACCEPTED_TRANSFER_SYNTAXES)
        self._folders: dict[int, ReceivedFolder] = {}
        self._lock = threading.Lock()
        self._server = None

    def start(self, host: str, port: int) -> int:
        """Listen in the background; returns the port (useful with port 0)."""
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_CLOSE, self._on_close)]
        self._server = self.ae.start_server((host, port), block=False, evt_handlers=handlers)
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    # C-STORE ------------------------------------------------------------------------------------------

    def _on_store(self, event) -> Dataset:
        request_class = str(event.request.AffectedSOPClassUID)
        if request_class not in ACCEPTED_SOP_CLASSES:
            return _status(SOP_CLASS_NOT_SUPPORTED, "SOP class not stored here")
        try:
            data = event.encoded_dataset()
        except Exception as exc:  # a data set pynetdicom cannot even frame
            logger.warning("C-STORE from %s not understood: %s", event.assoc.requestor.ae_title, exc)
            return _status(CANNOT_UNDERSTAND, "data set cannot be read")
        try:
            inspected = inspect_upload(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        except ImageRejected as exc:
            logger.warning("C-STORE from %s refused: %s", event.assoc.requestor.ae_title, exc.message)
            return _status(CANNOT_UNDERSTAND, exc.message)
        info = inspected.dicom
        if info is None or info.sop_class_uid != request_class:
            return _status(DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "SOPClassUID differs from the request")
        if info.instance_uid != str(event.request.AffectedSOPInstanceUID) or not info.series_uid:
            return _status(DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "SOP instance or series UID missing or wrong")
        try:
            self._write(event.assoc, info.instance_uid, data)
        except OSError as exc:
            logger.error("C-STORE of %s refused, the spool cannot be written: %s", info.instance_uid, exc)
            return _status(OUT_OF_RESOURCES, "cannot write to disk")
        return _status(SUCCESS)

    def _folder(self, assoc) -> ReceivedFolder:
        with self._lock:
            folder = self._folders.get(id(assoc))
            if folder is None:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
                path = self.spool_dir / f"{stamp}-{uuid.uuid4().hex[:12]}"
                folder = ReceivedFolder(path=path, calling_ae_title=str(assoc.requestor.ae_title).strip())
                self._folders[id(assoc)] = folder
            return folder

    def _write(self, assoc, instance_uid: str, data: bytes) -> None:
        """On disk before the success status goes out: written aside, flushed, then renamed into place."""
        folder = self._folder(assoc).path
        folder.mkdir(parents=True, exist_ok=True)
        _write_durably(folder / f"{safe_uid_name(instance_uid)}{INSTANCE_SUFFIX}", data)

    def _on_close(self, event) -> None:
        with self._lock:
            folder = self._folders.pop(id(event.assoc), None)
        if folder is None:
            return
        try:
            mark_complete(folder)
            self.hand_over(folder)
        except Exception:
            # The instances stay in the spool; the sweep hands the folder over again.
            logger.exception("Received folder %s not stored yet; it stays in the spool", folder.path.name)


def safe_uid_name(uid: str) -> str:
    """A UID as a file or folder name: digits and dots only, whatever the sender put in it."""
    return "".join(character for character in uid if character.isdigit() or character == ".")[:64] or "x"


def _write_durably(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.part")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def mark_complete(folder: ReceivedFolder) -> None:
    _write_durably(folder.path / COMPLETE_MARKER, folder.calling_ae_title.encode())


def complete_folders(spool_dir: Path, *, include_unfinished: bool = False) -> list[ReceivedFolder]:
    """Folders whose association has ended, oldest first. At start-up every folder counts: the
    associations of an earlier run are over, and each instance in them was written whole."""
    if not spool_dir.is_dir():
        return []
    folders = []
    for path in sorted(p for p in spool_dir.iterdir() if p.is_dir()):
        marker = path / COMPLETE_MARKER
        if marker.exists():
            folders.append(ReceivedFolder(path=path, calling_ae_title=marker.read_text(errors="replace")))
        elif include_unfinished:
            folders.append(ReceivedFolder(path=path, calling_ae_title=""))
    return folders


def instance_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{INSTANCE_SUFFIX}"))
