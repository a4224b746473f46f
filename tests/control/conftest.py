"""Fixtures for the control service tests: a real `keygate-control serve` on 127.0.0.1 with a
fresh database and test tokens. Every test that uses a service runs on both backends: a SQLite
file, and a database of a throwaway PostgreSQL cluster (tests/pgcluster.py). Every wait is
bounded by a deadline."""

import os
import signal
import socket
import sqlite3
import subprocess
import threading
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
# How long a started long poll may take to be held by the service (generous: a loaded machine).
HOLD_DEADLINE_SECONDS = 10


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
    """One `serve` process; can be killed and restarted on the same database. `database` is a
    SQLite file (a Path) or a PostgreSQL URL, whose cluster (`cluster`) can dump it."""

    def __init__(self, database, log_path: Path, extra_env=None, cluster=None):
        self.database = database
        self.cluster = cluster
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.process = None
        self.url = None

    @property
    def is_postgres(self):
        return isinstance(self.database, str)

    @property
    def db_path(self):
        assert not self.is_postgres, "this service keeps its keys in PostgreSQL"
        return self.database

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
        env.update({"KEYGATE_ADMIN_TOKEN": ADMIN_TOKEN, "KEYGATE_SYNC_TOKEN": SYNC_TOKEN})
        if self.is_postgres:
            env["KEYGATE_DATABASE_URL"] = self.database
        else:
            env["KEYGATE_DB"] = str(self.database)
        env.update(self.extra_env)
        return env

    def sql(self, query):
        """Rows of a read-only query on the service's database (integers as int)."""
        if self.is_postgres:
            rows = self.cluster.psql(self.database.rsplit("/", 1)[1], query)
            return [tuple(int(value) if value.lstrip("-").isdigit() else value for value in row)
                    for row in rows]
        with sqlite3.connect(self.database) as db:
            return db.execute(query).fetchall()

    def stored_bytes(self):
        """Everything the database holds: the SQLite file and its write-ahead log (where recent
        commits live), or a dump of the PostgreSQL database."""
        if self.is_postgres:
            return self.cluster.dump(self.database).encode()
        data = b""
        for suffix in ["", "-wal"]:
            path = self.database.with_name(self.database.name + suffix)
            if path.exists():
                data += path.read_bytes()
        return data

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


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def new_service(backend, tmp_path_factory, request):
    """Makes a (not yet started) service on a fresh database of the session's backend."""
    cluster = request.getfixturevalue("postgres_cluster") if backend == "postgres" else None

    def make(extra_env=None):
        directory = tmp_path_factory.mktemp("control")
        database = cluster.new_database() if cluster else directory / "keygate.db"
        return ControlService(database, directory / "serve.log", extra_env=extra_env, cluster=cluster)

    return make


@pytest.fixture(scope="session")
def service(new_service):
    control = new_service().start()
    yield control
    control.stop()


@pytest.fixture
def api(service):
    return Api(service.url)


@pytest.fixture
def fresh_service(new_service):
    """A service of its own, for tests that kill or restart it."""
    control = new_service()
    yield control
    control.stop()


@pytest.fixture
def team():
    """A team name no other test uses, so listings can be filtered to one test's keys."""
    return f"team-{uuid.uuid4().hex[:10]}"


def wait_for(condition, timeout, what):
    """Polls `condition` until it is true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def held_polls(api):
    """How many long polls the service holds right now (`GET /v1/snapshot/polls`)."""
    response = api.request("GET", "/v1/snapshot/polls", token="sync")
    assert response.status_code == 200, response.text
    return response.json()["held"]


class HeldPoll:
    """`GET /v1/snapshot?wait=…` in a thread, returned only once the service counts it as held,
    so a write made afterwards must wake it (it cannot have been read before the poll began)."""

    def __init__(self, api, wait, **params):
        self.response = None
        self.error = None
        self.answered_at = None
        self.held_before = held_polls(api)

        def poll():
            try:
                self.response = api.request("GET", "/v1/snapshot", token="sync",
                                            params=dict(params, wait=wait), timeout=wait + 10)
            except requests.RequestException as error:
                self.error = error
            self.answered_at = time.monotonic()

        self.thread = threading.Thread(target=poll, daemon=True)
        self.thread.start()

        def held():
            assert self.thread.is_alive(), f"the poll was answered before it was seen held: {self.outcome()}"
            return held_polls(api) > self.held_before

        wait_for(held, HOLD_DEADLINE_SECONDS, "the service to hold the poll")

    def outcome(self):
        if self.response is not None:
            return f"{self.response.status_code} {self.response.text[:300]}"
        return repr(self.error)

    def answer(self, timeout):
        """The poll's response once it has come, within `timeout` seconds."""
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), f"the poll was not answered within {timeout}s"
        assert self.response is not None, f"the poll failed: {self.error!r}"
        return self.response


def error_of(response):
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    return error["code"], error["message"]
