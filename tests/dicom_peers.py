"""Real DICOM peers for the tests: the platform's receiver as `manage.py dicom_receiver` in its own process,
dcmtk's storescu, and an Orthanc server with its own configuration and storage folder."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import REPO_ROOT, worker_env

ORTHANC = "/usr/sbin/Orthanc"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float = 20.0, interval: float = 0.1, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ReceiverProcess:
    """`manage.py dicom_receiver` on a free port, on the test database and media folder."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "dicom_receiver",
                "--host=127.0.0.1",
                f"--port={self.port}",
                "--ae-title=LUMBAR",
                "--sweep-seconds=1",
            ],
            cwd=REPO_ROOT,
            env=worker_env(**env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: "listening on" in self.output() or self.process.poll() is not None, 60, what="start")
        if self.process.poll() is not None:
            raise RuntimeError(f"The receiver exited:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log.close()


def storescu(port: int, paths: list[Path], *, called: str = "LUMBAR", calling: str = "SCANNER"):
    """dcmtk's storescu: all files in one association, as a scanner sends a series."""
    return subprocess.run(
        ["storescu", "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


class OrthancServer:
    """Orthanc on free ports with its own configuration and storage, knowing the platform as a modality."""

    def __init__(self, folder: Path, *, platform_port: int, ae_title: str = "ORTHANC") -> None:
        self.dicom_port, self.http_port, self.ae_title = free_port(), free_port(), ae_title
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "lumbar-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "DicomAet": ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomModalities": {"lumbar": ["LUMBAR", "127.0.0.1", platform_port]},
            "Plugins": [],
            "HttpServerEnabled": True,
            "StableAge": 1,
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log_path = folder / "orthanc.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [ORTHANC, str(folder / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT, cwd=folder
        )
        wait_for(self._up, 60, 0.2, "Orthanc to start")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"Orthanc exited:\n{self.log_path.read_text(errors='replace')}")
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def get(self, path: str):
        return json.loads(self.request("GET", path))

    def post_json(self, path: str, payload) -> object:
        return json.loads(self.request("POST", path, json.dumps(payload).encode(), "application/json"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log.close()
