"""Upload-to-result benchmark of the whole pipeline: N scans go through ``scan_upload`` while a real Celery
worker, started and stopped here, analyses them with the active model.

Runs on PostgreSQL and Redis (DATABASE_URL and CELERY_BROKER_URL, defaulting to the local servers below),
migrates the database first (which registers the shipped models under ml/artifacts/) and uses the active
model, or the artifact folder given with --artifact, activated for the run only. Scans are the real images
in ../shared/data/sudirman_midsag_t2 (relative to the repository root) or, without it, generated ones.

Before timing, the worker pool analyses one scan per process, so each has loaded Keras and the model.
Latency: from the call to ``scan_upload`` to the prediction's ``finished_at``. Throughput: N over the time
from the first upload to the last finished prediction. Worker RSS: the largest sum of the pool processes'
VmRSS (/proc) seen during the run.

Single scan, in this process, for each shipped model (and --artifact), on the real images only: what a
worker does per scan, end to end: decode the stored PNG (``load_model_view``), gate, localise, grade the
three levels, Grad-CAM heatmap and its overlay PNG. ``load_ms``: loading the artifact and tracing its graphs
(``warm_up``, as a worker does when it starts); ``first_call_ms``: the first scan after that (the first
upload after a start); ``single_image_ms``: the median of --repeats warm scans (other images in turn);
``single_image_rss_mb``: this process's VmRSS after them (Django, TensorFlow and the models loaded so far).
``--single-image-only`` measures just these, without database, broker or worker.

Series (--series K, 0 to skip): K sagittal DICOM series of 15 slices (384x384, built from the sample images
with scanner geometry) sent one association each, by pynetdicom, to ``manage.py dicom_receiver`` started
here. Series received per second: K over the time from the first association to the last series stored.
Time to result: from the end of a series' association to its mid-sagittal prediction's ``finished_at``.

Everything it creates (user, patient, case, scans, predictions, stored files, a model row for --artifact)
is removed at the end, and the active model is restored.

    DJANGO_SETTINGS_MODULE=lumbar_platform.settings.base .venv/bin/python bench/pipeline.py [-n 200] [--json]
    .venv/bin/python bench/pipeline.py --single-image-only [--artifact DIR] [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "sudirman_midsag_t2"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lumbar"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lumbar_platform.settings.base")
os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
os.environ.setdefault("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(REPO_ROOT))

import django  # noqa: E402

django.setup()
logging.getLogger("diagnosis").setLevel(logging.WARNING)

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from diagnosis.models import CLINICIANS_GROUP, Case, Patient, Prediction, Scan, Series  # noqa: E402
from diagnosis.services.scans import scan_upload  # noqa: E402
from ml.models import ModelVersion  # noqa: E402
from ml.registry import (  # noqa: E402
    SHIPPED_ARTIFACTS_DIR,
    artifact_dir_for,
    model_version_activate,
    model_version_register,
    read_model_card,
)

FINISHED = (Prediction.Status.DONE, Prediction.Status.FAILED)
SINGLE_KEYS = ("single_image_ms", "first_call_ms", "load_ms", "single_image_rss_mb")


def _real_images(count: int) -> list[tuple[str, bytes]]:
    files = sorted(DATA_DIR.glob("*/*.png"))[:count] if DATA_DIR.is_dir() else []
    return [(path.name, path.read_bytes()) for path in files]


def _scan_images(count: int) -> tuple[list[tuple[str, bytes]], str]:
    """``count`` distinct images: the real ones first, generated ones for the rest."""
    images = _real_images(count)
    real = len(images)
    source = f"{real} real images from {DATA_DIR.name}" if images else "no real images found"
    if len(images) < count:
        import io

        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(20240601)
        for index in range(count - len(images)):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (384, 384), dtype=np.uint8)).save(buffer, format="PNG")
            images.append((f"generated-{index}.png", buffer.getvalue()))
        source += f", {count - real} generated"
    return images, source


class Worker:
    def __init__(self, concurrency: int, log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "celery", "-A", "lumbar_platform", "worker", "--loglevel=INFO"]
        command += [f"--concurrency={concurrency}", "--pool=prefork", "--without-gossip", "--without-mingle"]
        self.process = subprocess.Popen(
            [*command, "--without-heartbeat"],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the worker exited:\n{self.log_path.read_text(errors='replace')}")
            if " ready." in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise SystemExit("the worker did not become ready")

    def pool_rss_mb(self) -> float:
        threads = Path(f"/proc/{self.process.pid}/task").glob("*/children")
        total_kb = 0
        for pid in (pid for children in threads for pid in children.read_text().split()):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            total_kb += next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
        return total_kb / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def _bench_case(stack: ExitStack) -> Case:
    tag = uuid.uuid4().hex[:8]
    user = get_user_model().objects.create_user(username=f"bench-{tag}", password=uuid.uuid4().hex)
    user.groups.add(Group.objects.get_or_create(name=CLINICIANS_GROUP)[0])
    patient = Patient.objects.create(identifier=f"BENCH-{tag}", created_by=user)
    case = Case.objects.create(patient=patient, owner=user, clinical_question="pipeline benchmark")
    stack.callback(_remove_case, case, patient, user)
    return case


def _remove_case(case: Case, patient: Patient, user) -> None:
    predictions = Prediction.objects.filter(scan__case=case)
    for prediction in predictions.exclude(heatmap=""):
        prediction.heatmap.delete(save=False)
    scans = list(case.scans.all())
    for scan in scans:
        scan.file.delete(save=False)
    if scans:
        folder = Path(scans[0].file.storage.path(f"scans/{case.pk}"))
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    predictions.delete()
    case.delete()
    patient.delete()
    user.delete()


def _use_artifact(stack: ExitStack, artifact: Path) -> ModelVersion:
    previous = ModelVersion.objects.filter(is_active=True).first()
    existed = ModelVersion.objects.filter(name=read_model_card(artifact).name).exists()
    model_version = model_version_register(artifact_dir=artifact, activate=True)

    def restore() -> None:
        if previous is not None:
            model_version_activate(model_version=previous)
        else:
            ModelVersion.objects.filter(pk=model_version.pk).update(is_active=False)
        if not existed:
            ModelVersion.objects.filter(pk=model_version.pk).delete()

    stack.callback(restore)
    return model_version


def _upload_and_wait(
    case: Case, images: list[tuple[str, bytes]], worker: Worker, timeout: float
) -> tuple[list[Prediction], list[float], float, float]:
    """Upload, wait for every prediction; return them, their latencies (ms), scans/s and peak RSS (MB)."""
    started = {}
    for name, data in images:
        upload_started = timezone.now()
        result = scan_upload(user=case.owner, case=case, uploaded_file=SimpleUploadedFile(name, data))
        started[result.prediction.pk] = upload_started
    peak_rss = 0.0
    deadline = time.monotonic() + timeout
    while Prediction.objects.filter(pk__in=started).exclude(status__in=FINISHED).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"predictions still unfinished after {timeout:.0f} s; see {worker.log_path}")
        peak_rss = max(peak_rss, worker.pool_rss_mb())
        time.sleep(0.2)
    peak_rss = max(peak_rss, worker.pool_rss_mb())
    predictions = list(Prediction.objects.filter(pk__in=started))
    latencies = [(p.finished_at - started[p.pk]).total_seconds() * 1000 for p in predictions]
    span = (max(p.finished_at for p in predictions) - min(started.values())).total_seconds()
    return predictions, latencies, len(predictions) / span, peak_rss


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


class DicomReceiver:
    """``manage.py dicom_receiver`` on a free port, for the series figure."""

    def __init__(self, log_path: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "manage.py", "dicom_receiver", "--host=127.0.0.1", f"--port={self.port}"]
        self.process = subprocess.Popen(
            [*command, "--ae-title=LUMBAR"], cwd=REPO_ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while "listening on" not in log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the DICOM receiver did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self.log.close()


def _send_series(port: int, datasets) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import MRImageStorage

    ae = AE(ae_title="BENCH")
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="LUMBAR")
    if not assoc.is_established:
        raise SystemExit("the DICOM receiver refused the association")
    for dataset in datasets:
        status = assoc.send_c_store(dataset)
        if status.get("Status") != 0x0000:
            raise SystemExit(f"C-STORE refused: {status}")
    assoc.release()


def _series_figure(case: Case, count: int, receiver: DicomReceiver, timeout: float) -> dict:
    """Send ``count`` 15-slice series; return series/s and the time to result of each (ms)."""
    from tests.dicom_data import mr_series  # the series builder the receiver tests use

    built = [mr_series(15, patient_id=case.patient.identifier, size=384) for _ in range(count)]
    sent_at, first = {}, timezone.now()
    for datasets in built:
        _send_series(receiver.port, datasets)
        sent_at[datasets[0].SeriesInstanceUID] = timezone.now()
    deadline = time.monotonic() + timeout
    while True:
        series = list(Series.objects.filter(case=case, series_uid__in=sent_at).select_related("chosen_scan"))
        predictions = Prediction.objects.filter(scan__series__in=series, status__in=FINISHED)
        if len(series) == count and predictions.count() >= count:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"series still unfinished after {timeout:.0f} s; see {receiver.log_path}")
        time.sleep(0.2)
    stored_at = max(Scan.objects.filter(series__in=series).values_list("uploaded_at", flat=True))
    to_result = [
        (p.finished_at - sent_at[p.scan.series.series_uid]).total_seconds() * 1000
        for p in predictions.select_related("scan__series")
    ]
    return {
        "series_per_s": round(count / (stored_at - first).total_seconds(), 2),
        "series_to_result_p50_ms": round(statistics.median(to_result), 1),
        "series_to_result_max_ms": round(max(to_result), 1),
        "series": count,
    }


def _scan_end_to_end(analyser, data: bytes):
    """One stored scan as the worker handles it: decode, analyse, overlay the heatmap."""
    from diagnosis.imaging import load_model_view
    from ml.explain import overlay_png

    view = load_model_view(data)
    analysis = analyser.analyse(view)
    if analysis.heatmap is not None:
        overlay_png(view, analysis.heatmap)
    return analysis


def _single_image(artifact_dirs: list[Path], images: list[bytes], repeats: int) -> dict[str, dict]:
    """Per model: SINGLE_KEYS and how many of the scans were not assessable."""
    from ml.levels.pipeline import NOT_ASSESSABLE, LevelAnalyser

    figures = {}
    for artifact_dir in artifact_dirs:
        started = time.perf_counter()
        analyser = LevelAnalyser.from_artifact(artifact_dir)
        analyser.warm_up()
        load_ms = (time.perf_counter() - started) * 1000
        runs, refused = [], 0
        for index in range(repeats + 1):
            started = time.perf_counter()
            analysis = _scan_end_to_end(analyser, images[index % len(images)])
            runs.append((time.perf_counter() - started) * 1000)
            refused += analysis.outcome == NOT_ASSESSABLE
        figures[analyser.card.name] = {
            "load_ms": round(load_ms, 1),
            "first_call_ms": round(runs[0], 1),
            "single_image_ms": round(statistics.median(runs[1:]), 1),
            "single_image_rss_mb": round(_rss_mb(), 1),
            "not_assessable": refused,
        }
    return figures


def _print_single(single: dict[str, dict], runs: int) -> None:
    for name, figures in single.items():
        print(
            f"single scan end to end, {name}: warm median {figures['single_image_ms']:.1f} ms, first after "
            f"load {figures['first_call_ms']:.1f} ms (load and trace {figures['load_ms']:.0f} ms), "
            f"RSS {figures['single_image_rss_mb']:.0f} MB; "
            f"{figures['not_assessable']} of {runs} scans not assessable"
        )


def _single_keys(single: dict[str, dict]) -> dict:
    """The single-scan figures keyed as in the JSON output: {figure: {model: value}}."""
    return {key: {name: figures[key] for name, figures in single.items()} for key in SINGLE_KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=200, help="scans to upload (default 200)")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="worker pool processes (default 1)")
    parser.add_argument("--artifact", type=Path, help="model artifact folder to activate for the run")
    parser.add_argument("--repeats", type=int, default=20, help="warm single-scan runs per model")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the predictions")
    parser.add_argument(
        "--single-image-only",
        action="store_true",
        help="only the single-scan figures (no database or worker)",
    )
    parser.add_argument("--series", type=int, default=5, help="15-slice DICOM series to send (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    say = (lambda *_: None) if args.json else print

    shipped = sorted(card.parent for card in SHIPPED_ARTIFACTS_DIR.glob("*/model_card.json"))
    real = [data for _, data in _real_images(args.repeats + 1)]
    if not real:
        raise SystemExit(f"no real images under {DATA_DIR} for the single-scan figures")
    if args.single_image_only:
        single = _single_image([*shipped, *([args.artifact] if args.artifact else [])], real, args.repeats)
        if args.json:
            print(json.dumps({**_single_keys(single), "repeats": args.repeats}))
        else:
            _print_single(single, args.repeats + 1)
        return

    call_command("migrate", verbosity=0)
    images, source = _scan_images(args.n + args.concurrency)
    warm_up, images = images[: args.concurrency], images[args.concurrency :]
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        model_version = _use_artifact(stack, args.artifact) if args.artifact else None
        model_version = model_version or ModelVersion.objects.filter(is_active=True).first()
        if model_version is None:
            names = ", ".join(path.name for path in shipped) or "none"
            raise SystemExit(f"no active model (shipped under ml/artifacts/: {names}); pass --artifact DIR")
        say(f"model {model_version.name} ({model_version.architecture}); {source}")
        say(f"database {os.environ['DATABASE_URL']}, broker {os.environ['CELERY_BROKER_URL']}")
        case = _bench_case(stack)
        worker = Worker(args.concurrency, Path(scratch) / "worker.log")
        stack.callback(worker.stop)
        worker.wait_ready()
        _upload_and_wait(case, warm_up, worker, args.timeout)
        say(f"worker warmed up; uploading {len(images)} scans")
        predictions, latencies, scans_per_s, rss_mb = _upload_and_wait(case, images, worker, args.timeout)
        series_figure = {}
        if args.series:
            say(f"sending {args.series} DICOM series of 15 slices to the receiver")
            receiver = DicomReceiver(Path(scratch) / "receiver.log")
            stack.callback(receiver.stop)
            series_figure = _series_figure(case, args.series, receiver, args.timeout)
        worker.stop()
        failed = [p for p in predictions if p.status == Prediction.Status.FAILED]
        refused = sum(p.label == "not_assessable" for p in predictions)
        models = [*shipped, *([artifact_dir_for(model_version)] if args.artifact else [])]
        single = _single_image(models, real, args.repeats)

    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    result = {
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(quantiles[94], 1),
        "scans_per_s": round(scans_per_s, 2),
        "worker_rss_mb": round(rss_mb, 1),
        **_single_keys(single),
        "n": len(predictions),
        "failed": len(failed),
        "not_assessable": refused,
        "concurrency": args.concurrency,
        "model": model_version.name,
        **series_figure,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{len(predictions)} scans, {len(failed)} failed, {refused} not assessable, "
        f"{args.concurrency} worker process(es)"
    )
    print(f"upload -> done latency: p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms")
    print(f"throughput: {result['scans_per_s']:.2f} scans/s")
    print(f"worker pool RSS (peak): {result['worker_rss_mb']:.0f} MB")
    _print_single(single, args.repeats + 1)
    if series_figure:
        print(
            f"DICOM series ({series_figure['series']} x 15 slices over C-STORE): "
            f"{series_figure['series_per_s']:.2f} series/s received; time to result p50 "
            f"{series_figure['series_to_result_p50_ms']:.0f} ms, "
            f"max {series_figure['series_to_result_max_ms']:.0f} ms"
        )
    if failed:
        print(f"first failure: {failed[0].error}")


if __name__ == "__main__":
    main()
