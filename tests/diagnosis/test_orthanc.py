"""A real PACS (Orthanc, started here on free ports with its own configuration and storage) pushes a study to
`manage.py dicom_receiver`, and `manage.py send_to_pacs` sends the SR and the heatmap back to it."""

from __future__ import annotations

import io
import subprocess

import pydicom
import pytest
from django.core.management import call_command
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from diagnosis.models import Prediction, Series
from tests.diagnosis.test_dicom_report import content_items, finish, named
from tests.dicom_data import dicom_bytes, mr_series
from tests.dicom_peers import OrthancServer, ReceiverProcess, wait_for
from tests.factories import CaseFactory, PatientFactory


@pytest.fixture
def peers(transactional_db, tmp_path):
    receiver = ReceiverProcess(tmp_path / "receiver.log")
    orthanc = OrthancServer(tmp_path / "orthanc", platform_port=receiver.port)
    yield receiver, orthanc
    orthanc.stop()
    receiver.stop()


def test_orthanc_pushes_a_study_and_receives_the_sr_and_heatmap_back(peers, tmp_path):
    receiver, orthanc = peers
    case = CaseFactory(patient=PatientFactory(identifier="MRN-100234", name="Ann Walker"))
    datasets = mr_series(7, patient_id="MRN-100234", patient_name="Walker^Ann")
    for dataset in datasets:
        orthanc.request("POST", "/instances", dicom_bytes(dataset), "application/dicom")
    [study] = orthanc.get("/studies")

    orthanc.post_json("/modalities/lumbar/store", {"Resources": [study], "Synchronous": True})

    series = wait_for(lambda: Series.objects.filter(case=case).first(), what="the pushed series")
    wait_for(lambda: series.slices.count() == 7, what="all slices", timeout=30)
    series.refresh_from_db()
    assert series.source == "network" and series.patient_id_check == series.patient_name_check == "match"
    prediction = finish(Prediction.objects.get(scan=series.chosen_scan))

    call_command(
        "send_to_pacs",
        str(prediction.pk),
        "--host=127.0.0.1",
        f"--port={orthanc.dicom_port}",
        f"--ae-title={orthanc.ae_title}",
    )

    instances = orthanc.get(f"/studies/{study}/instances")
    by_class = {}
    for instance in instances:
        data = orthanc.request("GET", f"/instances/{instance['ID']}/file")
        dataset = pydicom.dcmread(io.BytesIO(data))
        by_class.setdefault(dataset.SOPClassUID, []).append((dataset, data))
    [(sr, sr_bytes)] = by_class[ComprehensiveSRStorage]
    [(heatmap, _)] = by_class[SecondaryCaptureImageStorage]
    assert sr.PatientID == heatmap.PatientID == "MRN-100234"
    referenced = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert referenced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == datasets[3].SOPInstanceUID
    items = content_items(sr)
    assert [int(i.MeasuredValueSequence[0].NumericValue) for i in named(items, "Pfirrmann grade")] == [
        1,
        3,
        4,
    ]
    path = tmp_path / "received-sr.dcm"
    path.write_bytes(sr_bytes)
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")] == []
