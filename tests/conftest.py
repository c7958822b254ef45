from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from tests.factories import CaseFactory, ClinicianFactory, StaffFactory

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def empty_cache():
    """Nothing cached by one test (the models page's review counts) is seen by the next."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def clinician(db):
    return ClinicianFactory()


@pytest.fixture
def other_clinician(db):
    return ClinicianFactory()


@pytest.fixture
def staff(db):
    return StaffFactory()


@pytest.fixture
def case(clinician):
    return CaseFactory(owner=clinician)


def database_url() -> str:
    """The URL of the database the tests use, for a worker process to open the same one."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    return f"postgres://{credentials}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class WorkerProcess:
    """A real `celery worker` process, on the broker the tests publish to, using the test database."""

    def __init__(self, env: dict[str, str], log_path: Path, *, beat_schedule: Path | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.beat_schedule = beat_schedule
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        beat = ["--beat", f"--schedule={self.beat_schedule}"] if self.beat_schedule else []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "lumbar_platform",
                "worker",
                "--loglevel=INFO",
                "--concurrency=1",
                "--pool=prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                *beat,
            ],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"The worker exited early:\n{self.output()}")
            if " ready." in self.output():
                return
            time.sleep(0.2)
        raise RuntimeError(f"The worker did not become ready:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_pids(self) -> list[int]:
        """The prefork children that run the tasks (Linux: read from /proc)."""
        threads = Path(f"/proc/{self.process.pid}/task").glob("*/children")
        return sorted(int(pid) for children in threads for pid in children.read_text().split())

    def kill(self, sig: int) -> None:
        os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def worker_env(**overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "lumbar_platform.settings.test",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_FILESYSTEM_DIR": str(settings.CELERY_FILESYSTEM_DIR),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


def purge_queue() -> None:
    """Empty the queue, and on Redis forget messages a killed worker left unacknowledged: they would be
    delivered again to a later test's worker once the visibility timeout passes."""
    from lumbar_platform.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_purge("celery")
        if conn.transport.driver_type == "redis":
            channel.client.delete(channel.unacked_key, channel.unacked_index_key)


@pytest.fixture
def start_worker(transactional_db, tmp_path):
    """Start a worker with the test settings; `start_worker(**env)` overrides its environment and
    `start_worker(beat=True)` also runs beat (the dispatcher and the sweep) in it."""
    workers: list[WorkerProcess] = []

    def start(*, beat: bool = False, **overrides: str) -> WorkerProcess:
        number = len(workers)
        worker = WorkerProcess(
            worker_env(**overrides),
            tmp_path / f"worker-{number}.log",
            beat_schedule=tmp_path / f"beat-{number}" if beat else None,
        )
        workers.append(worker)
        worker.start()
        return worker

    purge_queue()
    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="session")
def model_artifacts(tmp_path_factory) -> dict[str, Path]:
    """The shipped artifact folders by model name, and one more: a copy of the first under another name, a
    second model version to re-run a scan with. Small (a localiser and a grader under 10 MB) and real, so a
    real lumbar slice is localised and graded and anything else is refused."""
    from ml.card import ModelCard
    from ml.registry import SHIPPED_ARTIFACTS_DIR

    artifacts = {
        path.parent.name: path.parent for path in sorted(SHIPPED_ARTIFACTS_DIR.glob("*/model_card.json"))
    }
    first = next(iter(artifacts.values()))
    copy = tmp_path_factory.mktemp("models") / f"{first.name}-copy"
    shutil.copytree(first, copy)
    card = ModelCard.read(copy)
    ModelCard(**{**card.__dict__, "name": copy.name}).write(copy)
    return {**artifacts, copy.name: copy}


@pytest.fixture
def active_model(db, model_artifacts):
    """The model the platform activates on a first run (a shipped one), registered and active, that a worker
    can load and run quickly."""
    from ml.models import ModelVersion
    from ml.registry import register_shipped_models

    ModelVersion.objects.update(is_active=False)
    register_shipped_models()
    return ModelVersion.objects.get(is_active=True)


@pytest.fixture
def other_model(db, model_artifacts):
    """A second registered model version (a renamed copy of a shipped one), not active."""
    from ml.registry import model_version_register

    name = next(name for name in model_artifacts if name.endswith("-copy"))
    return model_version_register(artifact_dir=model_artifacts[name])
