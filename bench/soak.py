"""Soak benchmark: N distinct uploads through the API while the worker, its broker and the database
connections fail in turn; afterwards, check that nothing was lost and nothing is stuck.

It starts everything it uses, on loopback addresses only, and removes it all at the end (also on Ctrl-C):
a PostgreSQL database of its own (``lumbar_soak_<pid>``, migrated, which activates the shipped INVGG), a
Redis broker on a free port with append-only persistence in a temporary folder (as docker-compose.yml runs
it), gunicorn, a Celery worker and a separate beat process, all on the production settings, with
MEDIA_ROOT and LUMBAR_VAR_DIR in the same temporary folder. Images are the real ones in
../shared/data/sudirman_midsag_t2 (relative to the repository root; tests/data/sudirman_sample without
it), each upload a slightly cropped and brightened variant re-encoded as PNG, so every upload's SHA-256
differs. --clients threads log in with a token and upload them to a few cases, keeping at most --backlog
uploads waiting for their prediction, so uploads go on for the whole run and every fault strikes while
the web server takes uploads and the worker has predictions to run.

Faults, one at a time, in this order, at a share of the uploads answered, each while a prediction runs
and only once the predictions the fault before struck have finished (so no fault hides another's cost):
  broker      20%  SIGKILL of Redis; restarted after --outage s on the same folder, so on its append-only file
  pool_child  40%  SIGKILL of a worker pool process busy on the CPU (running a prediction)
  worker      60%  SIGKILL of the whole worker (main process and pool), restarted at once
  database    80%  pg_terminate_backend of every connection to the soak database but this script's
A fault ends when its service is back (Redis answers, the new worker is started; at the kill for the
others). Its recovery is the time from there to the next prediction that finishes with a result; its
rerun time, the time until every prediction that was running when it struck has finished.

Before the soak, one scan per pool process is classified in a case of its own, so the faults strike a
worker that has loaded the model, as one in service has; the figures leave that case out.
It waits until every prediction has finished, or until nothing finished for --stall s (so one that
only the stale-prediction sweep would queue again counts as stuck), or --timeout s after the last
upload. Goal: no server errors (5xx or no answer), nothing lost (an accepted upload without a finished
prediction, a row whose file is gone, a file under MEDIA_ROOT without its row), nothing stuck (queued
or running at the end), every fault injected and every recovery under 30 s; the exit status is 1
otherwise.

    .venv/bin/python bench/soak.py [--uploads 1000] [--clients 8] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import redis
import requests
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script: bench's modules and the project's apps

from bench.scratch_database import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    create_database,
    database_urls,
    drop_database,
)

DATA_DIRS = (
    REPO_ROOT.parent / "shared" / "data" / "sudirman_midsag_t2",
    REPO_ROOT / "tests/data/sudirman_sample",
)
LOOPBACK = "127.0.0.1"
RECOVERY_GOAL_S = 30.0
FAULT_GAP_S = 5.0
WARM_UP_TIMEOUT_S = 600
POLL_S = 0.5


@dataclass
class Upload:
    index: int
    status: int | None  # None: no answer, or a 2xx answer without a scan
    scan_id: int | None = None
    error: str = ""
    at: float = 0.0  # seconds into the soak when the answer came


@dataclass
class Fault:
    name: str
    at: float  # the share of the uploads answered before it strikes
    struck_s: float = 0.0  # seconds into the soak
    started: datetime | None = None
    ended: datetime | None = None
    detail: str = ""
    running: list[int] = field(default_factory=list)


FAULT_PLAN = (("broker", 0.2), ("pool_child", 0.4), ("worker", 0.6), ("database", 0.8))


def _now() -> datetime:
    return datetime.now(UTC)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _distinct_images(count: int) -> tuple[list[tuple[str, bytes]], str]:
    """``count`` PNGs derived from the real images: pass r over the folder crops 3 pixels off the edges at
    offset (r % 4, r // 4 % 4) and brightens by 2% every 16 passes, so no two share their bytes."""
    folder = next((d for d in DATA_DIRS if d.is_dir() and any(d.glob("*/*.png"))), None)
    if folder is None:
        raise SystemExit(f"no images under {' or '.join(str(d) for d in DATA_DIRS)}")
    sources = sorted(folder.glob("*/*.png"))
    images, digests = [], set()
    for index in range(count):
        source = sources[index % len(sources)]
        round_ = index // len(sources)
        with Image.open(source) as image:
            pixels = np.asarray(image)
        dx, dy = round_ % 4, round_ // 4 % 4
        height, width = pixels.shape[:2]
        pixels = pixels[dy : dy + height - 3, dx : dx + width - 3]
        if round_ >= 16:
            pixels = np.clip(pixels * (1 + 0.02 * (round_ // 16)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        if digest in digests:
            raise SystemExit(f"variant {round_} of {source.name} repeats an earlier image; use fewer uploads")
        digests.add(digest)
        images.append((f"{source.stem}-v{round_}.png", data))
    return images, f"{len(sources)} real images in {folder.name}"


class Service:
    """A process of the stack in a session of its own, so one signal reaches it and all its children.
    Each start writes a new log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_dir = log_dir
        self.starts = 0
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if ready():
                return
            time.sleep(0.2)
        raise SystemExit(f"{self.name} was not ready after {timeout:.0f} s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the process and its children, as a crash or an out-of-memory kill would."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the group, then SIGKILL to whatever of it is left: a process that did not stop within
        ``timeout``, or children that outlived their parent."""
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self.process.wait(timeout=30)

    def children(self) -> list[int]:
        pids = []
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            try:
                pids += [int(pid) for pid in children.read_text().split()]
            except FileNotFoundError:
                continue
        return pids


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


class Services:
    """Redis, gunicorn, the Celery worker and beat for one soak run, and the faults injected into them."""

    def __init__(self, stack: ExitStack, env: dict[str, str], scratch: Path, args: argparse.Namespace):
        self.env = env
        self.redis_port = urlsplit(env["CELERY_BROKER_URL"]).port
        self.web_port = _free_port()
        self.base_url = f"http://{LOOPBACK}:{self.web_port}"
        self.outage = args.outage
        logs = scratch / "logs"
        logs.mkdir()
        redis_dir = scratch / "redis"
        redis_dir.mkdir()
        python = [sys.executable, "-m"]
        self.redis = Service(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                *("--bind", LOOPBACK, "--port", str(self.redis_port), "--dir", str(redis_dir)),
                *("--appendonly", "yes", "--save", "", "--protected-mode", "yes"),
            ],
            env,
            logs,
        )
        self.web = Service(
            "web",
            [
                *python,
                *("gunicorn", "lumbar_platform.wsgi:application", "--bind", f"{LOOPBACK}:{self.web_port}"),
                *("--workers", str(args.web_workers), "--timeout", "60"),
            ],
            env,
            logs,
        )
        celery = [*python, "celery", "-A", "lumbar_platform"]
        self.worker = Service(
            "worker",
            [
                *celery,
                "worker",
                "--loglevel=INFO",
                f"--concurrency={args.concurrency}",
                # as in the Makefile and the compose file: see the note on the worker there
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env,
            logs,
        )
        self.beat = Service(
            "beat",
            [*celery, "beat", "--loglevel=INFO", f"--schedule={scratch / 'celerybeat-schedule'}"],
            env,
            logs,
        )
        for service in (self.redis, self.web, self.worker, self.beat):
            stack.callback(service.stop)

    def start(self) -> None:
        self.start_redis()
        self.web.start()
        self.worker.start()
        self.beat.start()

    def start_redis(self) -> None:
        client = redis.Redis(host=LOOPBACK, port=self.redis_port, socket_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        self.redis.start()
        self.redis.wait_until(answers, timeout=30)
        client.close()

    def wait_ready(self) -> None:
        def web_answers() -> bool:
            try:
                requests.get(f"{self.base_url}/api/v1/", timeout=2)
            except requests.RequestException:
                return False
            return True

        self.web.wait_until(web_answers, timeout=60)
        self.wait_worker_ready()

    def wait_worker_ready(self) -> None:
        self.worker.wait_until(lambda: " ready." in self.worker.log(), timeout=180)

    def inject(self, fault: Fault, running: Callable[[], list[int]]) -> None:
        """Inject the fault. Each notes the predictions ``running`` at the moment it strikes, and sets
        ``fault.ended`` when its service is back, or at the kill where the stack recovers by itself."""
        fault.started = _now()
        getattr(self, f"_fault_{fault.name}")(fault, running)

    def _fault_broker(self, fault: Fault, running: Callable[[], list[int]]) -> None:
        fault.running = running()
        self.redis.kill()
        time.sleep(self.outage)
        self.start_redis()
        fault.ended = _now()
        fault.detail = f"Redis down for {self.outage:.0f} s, restarted on its append-only file"

    def _fault_database(self, fault: Fault, running: Callable[[], list[int]]) -> None:
        from django.db import connection

        fault.running = running()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            (terminated,) = cursor.fetchone()
        fault.ended = _now()
        fault.detail = f"{terminated} connections terminated"

    def _fault_pool_child(self, fault: Fault, running: Callable[[], list[int]]) -> None:
        """Kill the pool process that used the most CPU in the last 50 ms: one running a prediction, not
        one waiting for its next task (looked for during at most 5 s, else the busiest seen)."""
        children = self.worker.children()
        if not children:
            raise SystemExit(f"the worker has no pool processes:\n{self.worker.log()[-3000:]}")
        deadline = time.monotonic() + 5
        while True:
            before = {pid: _cpu_ticks(pid) for pid in children}
            time.sleep(0.05)
            used = {pid: _cpu_ticks(pid) - ticks for pid, ticks in before.items()}
            busiest = max(used, key=used.__getitem__)
            if used[busiest] > 0 or time.monotonic() > deadline:
                break
        fault.running = running()
        with suppress(ProcessLookupError):  # it ended on its own meanwhile: the pool replaces it all the same
            os.kill(busiest, signal.SIGKILL)
        fault.ended = _now()
        fault.detail = f"pool process {busiest} of {len(children)} killed"

    def _fault_worker(self, fault: Fault, running: Callable[[], list[int]]) -> None:
        fault.running = running()
        self.worker.kill()
        self.worker.start()
        fault.ended = _now()
        self.wait_worker_ready()
        ready = (_now() - fault.ended).total_seconds()
        fault.detail = f"worker and pool killed, restarted at once, ready after {ready:.0f} s"


class Clients:
    """Upload threads sharing one queue of image indices; they wait while ``backlog`` accepted uploads
    have no finished prediction yet (``finished`` is kept up to date by the caller)."""

    def __init__(
        self, args: argparse.Namespace, base_url: str, token: str, case_ids: list[int], images: list
    ) -> None:
        self.base_url, self.token, self.case_ids, self.images = base_url, token, case_ids, images
        self.backlog, self.timeout = args.backlog, args.request_timeout
        self.jobs: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(images)):
            self.jobs.put(index)
        self.results: list[Upload] = []
        self.finished = 0
        self.started = 0.0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._upload, daemon=True) for _ in range(args.clients)]

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def busy(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=self.timeout + 5)

    def _waiting(self) -> int:
        return sum(1 for upload in self.results if upload.scan_id is not None) - self.finished

    def _upload(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.token}"
        while not self.stop.is_set():
            if self._waiting() >= self.backlog:
                time.sleep(0.2)
                continue
            try:
                index = self.jobs.get_nowait()
            except queue.Empty:
                return
            upload = self._post(session, index)
            upload.at = time.monotonic() - self.started
            self.results.append(upload)

    def _post(self, session: requests.Session, index: int) -> Upload:
        name, data = self.images[index]
        url = f"{self.base_url}/api/v1/cases/{self.case_ids[index % len(self.case_ids)]}/scans/"
        try:
            response = session.post(url, files={"file": (name, data, "image/png")}, timeout=self.timeout)
        except requests.RequestException as exc:
            return Upload(index, None, error=f"{type(exc).__name__}: {exc}"[:300])
        if not response.ok:
            return Upload(index, response.status_code, error=response.text[:300])
        try:
            return Upload(index, response.status_code, scan_id=int(response.json()["id"]))
        except (ValueError, KeyError, TypeError):
            return Upload(index, None, error=f"HTTP {response.status_code} without a scan id")


def _api(session: requests.Session, base_url: str, path: str, payload: dict) -> dict:
    response = session.post(f"{base_url}/api/v1/{path}", json=payload, timeout=60)
    if response.status_code not in (200, 201):
        raise SystemExit(f"POST /api/v1/{path} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def _prepare_cases(base_url: str, username: str, password: str, count: int) -> tuple[str, list[int]]:
    session = requests.Session()
    token = _api(session, base_url, "auth/token/", {"username": username, "password": password})["token"]
    session.headers["Authorization"] = f"Token {token}"
    patient = _api(session, base_url, "patients/", {"identifier": f"SOAK-{os.getpid()}"})
    case_ids = [
        _api(session, base_url, "cases/", {"patient": patient["id"], "clinical_question": f"soak {n}"})["id"]
        for n in range(count)
    ]
    return token, case_ids


def _warm_up(services: Services, token: str, case_id: int, images: list[tuple[str, bytes]]) -> float:
    """Classify one scan per pool process, so the faults strike a worker that has loaded the model and
    traced its graphs, as a worker in service has. Returns the seconds it took."""
    from diagnosis.models import Prediction

    started = time.monotonic()
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    for name, data in images:
        url = f"{services.base_url}/api/v1/cases/{case_id}/scans/"
        response = session.post(url, files={"file": (name, data, "image/png")}, timeout=120)
        if response.status_code != 201:
            raise SystemExit(f"warm-up upload answered {response.status_code}: {response.text[:500]}")
    predictions = Prediction.objects.filter(scan__case_id=case_id)
    while predictions.exclude(status=Prediction.Status.DONE).exists():
        if time.monotonic() - started > WARM_UP_TIMEOUT_S:
            raise SystemExit(f"the warm-up predictions did not finish:\n{services.worker.log()[-3000:]}")
        time.sleep(POLL_S)
    return time.monotonic() - started


@dataclass
class Run:
    uploads: list[Upload]
    faults: list[Fault]
    upload_s: float
    elapsed_s: float
    outcome: str


def _soak(services: Services, args: argparse.Namespace, clients: Clients, case_ids: list[int]) -> Run:
    """Upload everything, inject each fault once its share of the uploads is answered and the fault before
    it has recovered, and wait for the predictions of the soak's cases."""
    from diagnosis.models import Prediction

    predictions = Prediction.objects.filter(scan__case_id__in=case_ids)
    running = predictions.filter(status=Prediction.Status.RUNNING)
    finished_statuses = (Prediction.Status.DONE, Prediction.Status.FAILED)
    pending = [Fault(name, at) for name, at in FAULT_PLAN]
    faults = list(pending)
    started = last_progress = time.monotonic()
    uploads_ended = None
    last_finished, last_report = -1, 0.0
    clients.start()
    try:
        while True:
            now = time.monotonic()
            finished = clients.finished = predictions.filter(status__in=finished_statuses).count()
            unfinished = predictions.exclude(status__in=finished_statuses).count()
            answered = len(clients.results)
            if uploads_ended is None and not clients.busy():
                uploads_ended = now
            if finished != last_finished:
                last_finished, last_progress = finished, now
            if now - last_report >= 10:
                last_report = now
                _say(f"{now - started:6.0f} s  answered {answered}/{args.uploads}  finished {finished}")
            if pending and _fault_due(pending[0], faults, answered / args.uploads, predictions):
                fault = pending.pop(0)
                fault.struck_s = now - started
                _say(f"{now - started:6.0f} s  fault: {fault.name}")
                services.inject(fault, lambda: list(running.values_list("pk", flat=True)))
                _say(f"{time.monotonic() - started:6.0f} s  {fault.detail}")
                last_progress = time.monotonic()
                continue
            if uploads_ended is not None and unfinished == 0:
                outcome = "every prediction finished" + (", before every fault struck" if pending else "")
                break
            if unfinished and now - last_progress > args.stall:
                outcome = f"no prediction finished for {args.stall:.0f} s"
                break
            if uploads_ended is not None and now - uploads_ended > args.timeout:
                outcome = f"timed out {args.timeout:.0f} s after the last upload"
                break
            time.sleep(POLL_S)
    finally:
        clients.close()
    ended = time.monotonic()
    return Run(list(clients.results), faults, (uploads_ended or ended) - started, ended - started, outcome)


def _fault_due(fault: Fault, faults: list[Fault], uploaded: float, predictions) -> bool:
    """Its share of the uploads is answered; the fault before has been recovered from for FAULT_GAP_S
    (a prediction finished after it, and so did every prediction it struck), so that no fault hides how
    long the one before took; and a prediction is running: a fault between two predictions, or after
    the last, would test nothing."""
    from diagnosis.models import Prediction

    if uploaded < fault.at:
        return False
    before = [f for f in faults if f.ended is not None]
    if before:
        previous = before[-1]
        struck = predictions.filter(pk__in=previous.running)
        if struck.exclude(status__in=(Prediction.Status.DONE, Prediction.Status.FAILED)).exists():
            return False
        recovered = (
            predictions.filter(status=Prediction.Status.DONE, finished_at__gt=previous.ended)
            .order_by("finished_at")
            .first()
        )
        if recovered is None or (_now() - recovered.finished_at).total_seconds() < FAULT_GAP_S:
            return False
    return predictions.filter(status=Prediction.Status.RUNNING).exists()


def _files_and_rows(media_root: Path) -> tuple[list[str], list[str]]:
    """Rows whose file is gone (scans and heatmaps) and files under MEDIA_ROOT that no row refers to."""
    from diagnosis.models import Prediction, Scan

    referenced = set(Scan.objects.values_list("file", flat=True))
    referenced |= set(Prediction.objects.exclude(heatmap="").values_list("heatmap", flat=True))
    on_disk = {str(path.relative_to(media_root)) for path in media_root.rglob("*") if path.is_file()}
    return sorted(referenced - on_disk), sorted(on_disk - referenced)


def _figures(run: Run, case_ids: list[int], media_root: Path, warm_up_s: float) -> dict:
    """The figures of the soak's cases (not the warm-up's); files are checked across all of MEDIA_ROOT."""
    from django.db.models import Count, Min

    from diagnosis.models import Prediction, Scan

    uploads = run.uploads
    all_predictions = Prediction.objects.filter(scan__case_id__in=case_ids)
    finished_statuses = (Prediction.Status.DONE, Prediction.Status.FAILED)
    accepted = {u.scan_id for u in uploads if u.status in (200, 201)}
    server_errors = [u for u in uploads if u.status is None or u.status >= 500]
    rejected = [u for u in uploads if u.status is not None and 400 <= u.status < 500]
    by_status = dict(all_predictions.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    finished_scans = set(
        all_predictions.filter(scan_id__in=accepted, status__in=finished_statuses).values_list(
            "scan_id", flat=True
        )
    )
    rows_without_files, files_without_rows = _files_and_rows(media_root)
    unfinished_uploads = len(accepted - finished_scans)

    fault_figures, recoveries, reruns = [], [], []
    done = all_predictions.filter(status=Prediction.Status.DONE)
    for fault in run.faults:
        figure = {"fault": fault.name, "injected": fault.ended is not None}
        if fault.ended is not None:
            next_done = done.filter(finished_at__gt=fault.ended).aggregate(t=Min("finished_at"))["t"]
            recovery = (next_done - fault.ended).total_seconds() if next_done else None
            recoveries.append(recovery)
            struck = Prediction.objects.filter(pk__in=fault.running)
            rerun = None
            if not struck.exclude(status__in=finished_statuses).exists():
                last = max((p.finished_at for p in struck), default=fault.ended)
                rerun = max(0.0, (last - fault.ended).total_seconds())
            reruns.append(rerun)
            figure.update(
                struck_s=round(fault.struck_s, 1),
                duration_s=round((fault.ended - fault.started).total_seconds(), 1),
                recovery_s=None if recovery is None else round(recovery, 1),
                running=len(fault.running),
                rerun_s=None if rerun is None else round(rerun, 1),
                detail=fault.detail,
            )
        fault_figures.append(figure)

    all_injected = all(f["injected"] for f in fault_figures)
    max_recovery = None if None in recoveries or not all_injected else max(recoveries, default=0.0)
    max_rerun = None if None in reruns else max(reruns, default=0.0)
    done_count = by_status.get(Prediction.Status.DONE, 0)
    figures = {
        "uploads": len(uploads),
        "accepted": len(accepted),
        "server_errors": len(server_errors),
        "rejected": len(rejected),
        "scans": Scan.objects.filter(case_id__in=case_ids).count(),
        "done": done_count,
        "failed": by_status.get(Prediction.Status.FAILED, 0),
        "stuck": by_status.get(Prediction.Status.QUEUED, 0) + by_status.get(Prediction.Status.RUNNING, 0),
        "lost": unfinished_uploads + len(rows_without_files) + len(files_without_rows),
        "lost_detail": {
            "accepted_without_finished_prediction": unfinished_uploads,
            "rows_without_files": len(rows_without_files),
            "files_without_rows": len(files_without_rows),
        },
        "max_recovery_s": None if max_recovery is None else round(max_recovery, 1),
        "max_rerun_s": None if max_rerun is None else round(max_rerun, 1),
        "faults": fault_figures,
        "warm_up_s": round(warm_up_s, 1),
        "upload_s": round(run.upload_s, 1),
        "elapsed_s": round(run.elapsed_s, 1),
        "uploads_per_s": round(len(uploads) / run.upload_s, 2) if run.upload_s else None,
        "predictions_per_s": round(done_count / run.elapsed_s, 2),
        "wait_ended": run.outcome,
        "examples": {
            "server_error": [f"at {u.at:.0f} s: HTTP {u.status} {u.error}" for u in server_errors[:3]],
            "rejected": [f"at {u.at:.0f} s: HTTP {u.status} {u.error}" for u in rejected[:3]],
            "row_without_file": rows_without_files[:3],
            "file_without_row": files_without_rows[:3],
            "failed": list(
                all_predictions.filter(status=Prediction.Status.FAILED)
                .values_list("error", flat=True)
                .distinct()[:3]
            ),
        },
    }
    figures["goal_met"] = (
        figures["server_errors"] == 0
        and figures["lost"] == 0
        and figures["stuck"] == 0
        and max_recovery is not None
        and max_recovery < RECOVERY_GOAL_S
    )
    return figures


def _print_table(figures: dict) -> None:
    rows = ["uploads", "accepted", "server_errors", "rejected", "scans", "done", "failed", "stuck", "lost"]
    for key in rows:
        print(f"{key:<16}{figures[key]:>8}")
    for key, value in figures["lost_detail"].items():
        print(f"  {key:<38}{value:>6}")
    recovery = figures["max_recovery_s"]
    print(f"{'max_recovery_s':<16}{'none' if recovery is None else f'{recovery:.1f}':>8}")
    rerun = figures["max_rerun_s"]
    print(f"{'max_rerun_s':<16}{'none' if rerun is None else f'{rerun:.1f}':>8}")
    print(f"{'warm_up_s':<16}{figures['warm_up_s']:>8.0f}")
    print(f"{'upload_s':<16}{figures['upload_s']:>8.0f}")
    print(f"{'elapsed_s':<16}{figures['elapsed_s']:>8.0f}")
    print(f"{'uploads/s':<16}{figures['uploads_per_s'] or 0:>8.2f}")
    print(f"{'predictions/s':<16}{figures['predictions_per_s']:>8.2f}")
    print()
    print(f"{'fault':<12}{'at s':>6}{'took s':>8}{'recovery s':>12}{'running':>9}{'rerun s':>9}  detail")
    for fault in figures["faults"]:
        if not fault["injected"]:
            print(f"{fault['fault']:<12}  not injected")
            continue
        recovery = "never" if fault["recovery_s"] is None else f"{fault['recovery_s']:.1f}"
        rerun = "never" if fault["rerun_s"] is None else f"{fault['rerun_s']:.1f}"
        print(
            f"{fault['fault']:<12}{fault['struck_s']:>6.0f}{fault['duration_s']:>8.1f}{recovery:>12}"
            f"{fault['running']:>9}{rerun:>9}  {fault['detail']}"
        )
    print()
    print(f"wait ended: {figures['wait_ended']}")
    for kind, examples in figures["examples"].items():
        for example in examples:
            print(f"{kind}: {example}")
    print(
        f"goal (0 server errors, 0 lost, 0 stuck, recovery < {RECOVERY_GOAL_S:.0f} s): "
        f"{'met' if figures['goal_met'] else 'MISSED'}"
    )


def _keep_logs(logs: Path, destination: Path) -> None:
    if logs.is_dir():  # not there when the run failed before starting a service
        shutil.copytree(logs, destination, dirs_exist_ok=True)


def _stack_env(database_url: str, broker_port: int, scratch: Path) -> dict[str, str]:
    """The environment of every process of the run: production settings on the run's own database,
    broker and folders."""
    env = {
        key: value
        for key, value in os.environ.items()
        # Nothing of the caller's own services: this run talks only to what it started.
        if key not in ("CACHE_URL", "DEBUG", "CELERY_RESULT_BACKEND", "DJANGO_SETTINGS_MODULE")
    }
    for folder in ("media", "var", "static"):
        (scratch / folder).mkdir()
    env.update(
        DJANGO_SETTINGS_MODULE="lumbar_platform.settings.production",
        SECRET_KEY=secrets.token_hex(32),
        ALLOWED_HOSTS=LOOPBACK,
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=f"redis://{LOOPBACK}:{broker_port}/0",
        MEDIA_ROOT=str(scratch / "media"),
        LUMBAR_VAR_DIR=str(scratch / "var"),
        STATIC_ROOT=str(scratch / "static"),
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def _setup_django(env: dict[str, str], username: str, password: str) -> str:
    """Point this process at the soak stack, migrate, create the clinician; returns the active model."""
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from diagnosis.services.accounts import clinician_create
    from ml.models import ModelVersion

    call_command("migrate", verbosity=0)
    model = ModelVersion.objects.filter(is_active=True).first()
    if model is None:
        raise SystemExit("migrating activated no model; is ml/artifacts/ complete?")
    clinician_create(username=username, password=password)
    return model.name


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--uploads", type=int, default=1000, help="distinct images to upload (default 1000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent uploading clients (default 8)")
    parser.add_argument(
        "--backlog",
        type=int,
        help="most uploads waiting for their prediction (default: a tenth of the uploads, 8 to 50)",
    )
    parser.add_argument("--cases", type=int, default=4, help="cases the uploads are spread over (default 4)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes (default 2)")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn workers (default 3)")
    parser.add_argument("--outage", type=float, default=5, help="seconds Redis stays down (default 5)")
    parser.add_argument(
        "--stall", type=float, default=120, help="stop once no prediction finished for this long (120 s)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="most seconds to wait after the uploads")
    parser.add_argument("--request-timeout", type=float, default=120, help="seconds per upload request")
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES_URL,
        help=f"a database on the server to create the soak database on (default {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--logs", type=Path, help="copy the services' logs into this folder at the end")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.backlog is None:
        args.backlog = min(50, max(8, args.uploads // 10))
    for name in ("uploads", "clients", "backlog", "cases", "concurrency", "web_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    # SIGTERM unwinds like Ctrl-C, so every cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    name = f"lumbar_soak_{os.getpid()}"
    admin_url, database_url = database_urls(args.postgres, name)
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="lumbar-soak-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        if args.logs:
            stack.callback(_keep_logs, scratch / "logs", args.logs)
        create_database(admin_url, name)
        stack.callback(drop_database, admin_url, name)
        env = _stack_env(database_url, _free_port(), scratch)
        username, password = "soak", secrets.token_urlsafe(18)
        model = _setup_django(env, username, password)
        from django.db import connections

        stack.callback(connections.close_all)
        services = Services(stack, env, scratch, args)
        services.start()
        _say(f"database {name}, broker {env['CELERY_BROKER_URL']}, web {services.base_url}, model {model}")
        images, source = _distinct_images(args.concurrency + args.uploads)
        _say(f"{args.uploads} uploads derived from {source}; waiting for the worker")
        services.wait_ready()
        token, (warm_up_case, *case_ids) = _prepare_cases(
            services.base_url, username, password, args.cases + 1
        )
        warm_up_s = _warm_up(services, token, warm_up_case, images[: args.concurrency])
        _say(f"{args.concurrency} warm-up predictions took {warm_up_s:.0f} s; soaking")
        clients = Clients(args, services.base_url, token, case_ids, images[args.concurrency :])
        run = _soak(services, args, clients, case_ids)
        figures = _figures(run, case_ids, scratch / "media", warm_up_s)
    if args.json:
        print(json.dumps(figures))
    else:
        _print_table(figures)
    return 0 if figures["goal_met"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted; what the run started is stopped and removed")
