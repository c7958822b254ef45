"""C-STORE to a PACS (pynetdicom SCU). Django-free: the caller passes the destination."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE


class SendError(Exception):
    """The destination could not be reached or refused an instance; the message says which."""


@dataclass(frozen=True)
class Destination:
    host: str
    port: int
    ae_title: str  # the PACS's (called)
    calling_ae_title: str  # ours


def send_instances(destination: Destination, datasets: list[Dataset], *, timeout: float = 30.0) -> None:
    """Send all datasets in one association; every one must be stored (status 0x0000 or a warning)."""
    ae = AE(ae_title=destination.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in sorted({str(dataset.SOPClassUID) for dataset in datasets}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise SendError(
            f"No association with {destination.ae_title} at {destination.host}:{destination.port} "
            "(refused, or nothing listening)."
        )
    try:
        for dataset in datasets:
            status = assoc.send_c_store(dataset)
            code = status.get("Status") if status else None
            # 0x0000 success; 0xB000, 0xB007, 0xB006: stored with a warning.
            if code is None or not (code == 0x0000 or 0xB000 <= code <= 0xBFFF):
                detail = "no answer" if code is None else f"status 0x{code:04X}"
                raise SendError(f"{destination.ae_title} did not store {dataset.SOPClassUID.name}: {detail}.")
    finally:
        assoc.release()
