"""Fixtures for the control service tests: a real `keygate-control serve` on 127.0.0.1 with a
fresh SQLite file and test tokens. Every wait is bounded by a deadline."""

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token"
SYNC_TOKEN = "test-sync-token"
START_DEADLINE_SECONDS = 15
STOP_DEADLINE_SECONDS = 10


def control_binary() -> Path:
    configured = os.environ.get("KEYGATE_CONTROL_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "release" / "keygate-control"
    if not path.is_file():
        pytest.fail(f"keygate-control binary not found at {path}; build it or set KEYGATE_CONTROL_BIN")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ControlService:
    """One `serve` process; can be killed and restarted on the same database."""

    def __init__(self, db_path: Path, log_path: Path, extra_env=None):
        self.db_path = db_path
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.process = None
        self.url = None

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
        env.update(
            {
                "KEYGATE_ADMIN_TOKEN": ADMIN_TOKEN,
                "KEYGATE_SYNC_TOKEN": SYNC_TOKEN,
                "KEYGATE_DB": str(self.db_path),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(control_binary()), "serve", "--listen", f"127.0.0.1:{port}"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"keygate-control exited early: {self.log_path.read_text()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.process.kill()
        raise RuntimeError(f"keygate-control not healthy within {START_DEADLINE_SECONDS}s")

    def kill_hard(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_DEADLINE_SECONDS)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_DEADLINE_SECONDS)


class Api:
    """Thin helper over requests with the right token for each side of the service."""

    def __init__(self, url: str):
        self.url = url
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        self.sync = {"Authorization": f"Bearer {SYNC_TOKEN}"}

    def request(self, method, path, token="admin", **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if token == "admin":
            headers.update(self.admin)
        elif token == "sync":
            headers.update(self.sync)
        kwargs.setdefault("timeout", 10)
        return requests.request(method, f"{self.url}{path}", headers=headers, **kwargs)

    def create(self, **body):
        body.setdefault("name", "test key")
        response = self.request("POST", "/v1/keys", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def snapshot(self, token="sync", **params):
        return self.request("GET", "/v1/snapshot", token=token, params=params)


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    directory = tmp_path_factory.mktemp("control")
    control = ControlService(directory / "keygate.db", directory / "serve.log").start()
    yield control
    control.stop()


@pytest.fixture
def api(service):
    return Api(service.url)


@pytest.fixture
def fresh_service(tmp_path):
    """A service of its own, for tests that kill or restart it."""
    control = ControlService(tmp_path / "keygate.db", tmp_path / "serve.log")
    yield control
    control.stop()


@pytest.fixture
def team():
    """A team name no other test uses, so listings can be filtered to one test's keys."""
    return f"team-{uuid.uuid4().hex[:10]}"


def error_of(response):
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    return error["code"], error["message"]
