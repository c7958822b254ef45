"""manage.py dicom_receiver against dcmtk's storescu and pynetdicom: a received series is stored like an
upload in the case its PatientID points to, or waits in the incoming list; bad associations and bad data
sets get their DIMSE answer and lose nothing already received."""

from __future__ import annotations

import errno
import time

import pydicom
import pytest
from pydicom.uid import CTImageStorage
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage

from diagnosis.dicom import receiver as receiver_module
from diagnosis.dicom.receiver import ReceivedFolder, Receiver, complete_folders
from diagnosis.models import Case, IncomingSeries, Prediction, Series
from diagnosis.services.receiving import incoming_attach, received_folder_store
from tests.dicom_data import mr_series, write_series
from tests.dicom_peers import ReceiverProcess, free_port, storescu, wait_for
from tests.factories import CaseFactory, ClinicianFactory, PatientFactory, StaffFactory


@pytest.fixture
def start_receiver(transactional_db, tmp_path):
    processes = []

    def start(**env: str) -> ReceiverProcess:
        process = ReceiverProcess(tmp_path / f"receiver-{len(processes)}.log", **env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


def test_series_sent_by_storescu_becomes_one_series_in_the_patients_open_case(
    start_receiver, tmp_path, media_root
):
    case = CaseFactory(patient=PatientFactory(identifier="WALK-0001"))
    receiver = start_receiver()
    paths = write_series(tmp_path / "series", mr_series(15, patient_id="WALK-0001"))

    sent = storescu(receiver.port, paths)
    sent_at = time.monotonic()

    assert sent.returncode == 0, sent.stderr
    series = wait_for(lambda: Series.objects.filter(case=case).first(), what="the series")
    wait_for(lambda: series.slices.count() == 15 and Prediction.objects.exists(), what="all slices")
    print(f"series stored {time.monotonic() - sent_at:.2f} s after storescu returned")
    series.refresh_from_db()
    assert series.source == Series.Source.NETWORK and series.patient_id_check == "match"
    assert series.chosen_scan.slice_index == 7 and series.chosen_scan.instance_number == 8
    assert list(Prediction.objects.values_list("scan", "status")) == [(series.chosen_scan_id, "queued")]
    stored = pydicom.dcmread(series.chosen_scan.file.path)
    assert stored.PatientID == "" and stored.PatientIdentityRemoved == "YES"
    spool = media_root / "dicom-spool"
    wait_for(lambda: complete_folders(spool, include_unfinished=True) == [], what="the spool to empty")


def test_series_received_while_the_broker_is_down_is_stored_with_its_prediction_owed(
    start_receiver, tmp_path
):
    case = CaseFactory(patient=PatientFactory(identifier="MRN-8"))
    receiver = start_receiver(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")

    assert (
        storescu(receiver.port, write_series(tmp_path / "s", mr_series(3, patient_id="MRN-8"))).returncode
        == 0
    )

    prediction = wait_for(lambda: Prediction.objects.filter(scan__case=case).first(), what="the prediction")
    wait_for(lambda: f"Prediction {prediction.pk} not sent" in receiver.output(), what="the failed send")
    # Queued and owed: the dispatcher sends it once the broker is back, as for an upload.
    prediction.refresh_from_db()
    assert (prediction.status, prediction.dispatched_at) == ("queued", None)
    assert Series.objects.get(case=case).slices.count() == 3


def test_registered_patient_without_open_case_gets_a_case_of_the_receiving_account(start_receiver, tmp_path):
    patient = PatientFactory(identifier="MRN-7")
    CaseFactory(patient=patient, owner=patient.created_by, status="signed_off")
    account = StaffFactory(username="dicom-receiver")
    receiver = start_receiver(LUMBAR_DICOM_RECEIVING_USER="dicom-receiver")

    assert (
        storescu(receiver.port, write_series(tmp_path / "s", mr_series(3, patient_id="MRN-7"))).returncode
        == 0
    )

    series = wait_for(lambda: Series.objects.first(), what="the series")
    assert series.case.patient == patient and series.case.owner == account
    assert series.case.status != "signed_off"
    assert Case.objects.filter(patient=patient).count() == 2


def test_unmatched_study_waits_in_the_incoming_list_until_attached(start_receiver, tmp_path):
    receiver = start_receiver()
    datasets = mr_series(4, patient_id="UNKNOWN-9", patient_name="Doe^Jane")

    assert storescu(receiver.port, write_series(tmp_path / "s", datasets)).returncode == 0

    incoming = wait_for(lambda: IncomingSeries.objects.first(), what="the incoming series")
    assert (incoming.patient_id, incoming.patient_name, incoming.instance_count) == (
        "UNKNOWN-9",
        "Doe Jane",
        4,
    )
    assert not Series.objects.exists()
    clinician = ClinicianFactory()
    case = CaseFactory(owner=clinician)

    stored = incoming_attach(user=clinician, incoming=incoming, case=case)

    assert stored.series.case == case and stored.series.slices.count() == 4
    assert stored.series.patient_id_check == "mismatch"  # the case's patient is not UNKNOWN-9
    assert not IncomingSeries.objects.exists()


def test_association_to_another_ae_title_is_rejected_and_stores_nothing(start_receiver, tmp_path):
    receiver = start_receiver()

    sent = storescu(receiver.port, write_series(tmp_path / "s", mr_series(1)), called="SOMEONE")

    assert sent.returncode != 0 and "Association Rejected" in sent.stderr + sent.stdout
    time.sleep(0.5)
    assert not Series.objects.exists() and not IncomingSeries.objects.exists()


def test_unknown_sop_class_is_refused_when_the_association_is_negotiated(start_receiver, tmp_path):
    receiver = start_receiver()
    ct = mr_series(1)[0]
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ct.Modality = "CT"

    sent = storescu(receiver.port, write_series(tmp_path / "s", [ct]))

    assert sent.returncode != 0 and "No presentation context" in sent.stderr + sent.stdout
    assert not Series.objects.exists() and not IncomingSeries.objects.exists()


# In-process receiver: statuses for data sets storescu would refuse to send, and a disk refusing writes.


@pytest.fixture
def in_process_receiver(tmp_path, settings):
    handed_over: list[ReceivedFolder] = []
    receiver = Receiver(
        spool_dir=tmp_path / "spool",
        ae_title="LUMBAR",
        hand_over=handed_over.append,
        max_pixels=settings.LUMBAR_MAX_IMAGE_PIXELS,
        max_bytes=settings.LUMBAR_MAX_UPLOAD_BYTES,
    )
    port = receiver.start("127.0.0.1", free_port())
    yield port, handed_over
    receiver.stop()


def _send(port: int, datasets) -> list[int]:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="LUMBAR")
    assert assoc.is_established
    statuses = [assoc.send_c_store(dataset).Status for dataset in datasets]
    assoc.release()
    return statuses


def test_truncated_data_set_is_answered_cannot_understand_and_the_rest_is_kept(in_process_receiver, case):
    port, handed_over = in_process_receiver
    datasets = mr_series(3, patient_id=case.patient.identifier)
    datasets[1].PixelData = datasets[1].PixelData[:1000]

    statuses = _send(port, datasets)

    assert statuses == [0x0000, 0xC000, 0x0000]
    wait_for(lambda: handed_over, what="the hand-over")
    [stored] = received_folder_store(folder=handed_over[0])
    assert stored.series.series.slices.count() == 2


def test_disk_refusing_a_write_is_answered_out_of_resources_and_loses_nothing_received(
    in_process_receiver, case, monkeypatch
):
    port, handed_over = in_process_receiver
    datasets = mr_series(3, patient_id=case.patient.identifier)
    write = receiver_module._write_durably
    refused = datasets[2].SOPInstanceUID

    def full_disk(path, data):
        if refused in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data)

    monkeypatch.setattr(receiver_module, "_write_durably", full_disk)

    assert _send(port, datasets) == [0x0000, 0x0000, 0xA700]

    wait_for(lambda: handed_over, what="the hand-over")
    [stored] = received_folder_store(folder=handed_over[0])
    assert stored.series.series.slices.count() == 2
    monkeypatch.setattr(receiver_module, "_write_durably", write)
    assert _send(port, datasets[2:]) == [0x0000]  # sent again once the disk has room: it joins the series
    wait_for(lambda: len(handed_over) == 2, what="the second hand-over")
    received_folder_store(folder=handed_over[1])
    assert Series.objects.get().slices.count() == 3


def test_folder_whose_hand_over_failed_stays_in_the_spool_and_is_stored_later(in_process_receiver, case):
    port, handed_over = in_process_receiver
    _send(port, mr_series(2, patient_id=case.patient.identifier))
    wait_for(lambda: handed_over, what="the hand-over")

    # The hand-over (the database) failed: the folder is still complete in the spool for the sweep.
    [waiting] = complete_folders(handed_over[0].path.parent)
    assert waiting.path == handed_over[0].path and waiting.calling_ae_title == "SCANNER"
    received_folder_store(folder=waiting)

    assert Series.objects.get().slices.count() == 2 and not waiting.path.exists()
