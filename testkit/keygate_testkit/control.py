"""The real control service, `keygate-control serve` on 127.0.0.1, on a SQLite file or a
PostgreSQL database; and its command-line client. Every wait is bounded."""
import os
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from .paths import ADMIN_TOKEN, SYNC_TOKEN, control_binary
from .ports import free_port
from .processes import start, stop
from .waiting import wait_until

START_SECONDS = 20
STOP_SECONDS = 10
CLI_SECONDS = 20


def service_env(database, extra_env=None, admin_token=ADMIN_TOKEN, sync_token=SYNC_TOKEN):
    """The environment of a control-service process: none of the caller's KEYGATE_* settings,
    the tokens, and its store (`database`: a SQLite file as a Path, or a PostgreSQL URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env.update({"KEYGATE_ADMIN_TOKEN": admin_token, "KEYGATE_SYNC_TOKEN": sync_token})
    if isinstance(database, str):
        env["KEYGATE_DATABASE_URL"] = database
    else:
        env["KEYGATE_DB"] = str(database)
    env.update(extra_env or {})
    return env


def seed(database, count, secrets_out=None, binary=None, timeout=3600):
    """`keygate-control seed`: `count` keys into `database` (their secrets into `secrets_out`
    when given); returns the seconds it took."""
    argv = [str(binary or control_binary()), "seed", "--count", str(count)]
    if secrets_out:
        argv += ["--secrets-out", str(secrets_out)]
    started = time.monotonic()
    subprocess.run(argv, env=service_env(database), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=timeout)
    return time.monotonic() - started


def run_cli(*args, url=None, token=None, timeout=CLI_SECONDS, input=None):
    """`keygate-control ARGS` with only the given KEYGATE_URL and KEYGATE_ADMIN_TOKEN set
    (and `input` on its standard input)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    if url is not None:
        env["KEYGATE_URL"] = url
    if token is not None:
        env["KEYGATE_ADMIN_TOKEN"] = token
    return subprocess.run([str(control_binary()), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          input=input)


class ControlService:
    """One `keygate-control serve` on a port of its own, which it keeps across restarts: it can
    be stopped (or killed) and started again on the same database. `database` is a SQLite file
    (a Path; by default a new one in a temporary folder) or a PostgreSQL URL, whose `cluster`
    (a PostgresCluster) can then read and dump it. With `tls` (a keygate_testkit.tls
    IssuedCertificate) and `ca_cert` (its CA's PEM file) it serves https and is checked
    against that CA. Not started until `start()`."""

    def __init__(self, database=None, log_path=None, *, cluster=None, port=None, extra_env=None, extra_args=(),
                 binary=None, start_timeout=START_SECONDS, tls=None, ca_cert=None):
        self.dir = Path(tempfile.mkdtemp(prefix="keygate-control-")) if database is None or log_path is None else None
        self.database = database if database is not None else self.dir / "keygate.db"
        self.log_path = Path(log_path) if log_path else self.dir / "control.log"
        self.cluster = cluster
        self.port = port or free_port()
        self.extra_env = extra_env or {}
        self.extra_args = list(extra_args)
        self.binary = binary
        self.start_timeout = start_timeout
        self.tls = tls
        self.ca_cert = ca_cert
        self.proc = None

    @property
    def is_postgres(self):
        return isinstance(self.database, str)

    @property
    def db_path(self):
        assert not self.is_postgres, "this service keeps its keys in PostgreSQL"
        return self.database

    def env(self):
        return service_env(self.database, self.extra_env)

    def url(self, path=""):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    @property
    def verify(self):
        """What `requests` verifies the service's certificate with (`verify=`)."""
        return str(self.ca_cert) if self.tls else True

    def tls_args(self):
        return ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)] if self.tls else []

    def start(self):
        """Starts the service and returns it once /healthz answers; RuntimeError if it exits or
        does not answer within its start timeout."""
        self.proc = start([self.binary or control_binary(), "serve", "--listen", f"127.0.0.1:{self.port}",
                           *self.tls_args(), *self.extra_args], self.log_path, env=self.env())

        def healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"keygate-control exited early: {self.log_text()}")
            return requests.get(self.url("/healthz"), timeout=1, verify=self.verify).status_code == 200

        try:
            wait_until(healthy, timeout=self.start_timeout, what="keygate-control /healthz",
                       retry_on=(requests.RequestException,))
        except AssertionError:
            stop(self.proc, STOP_SECONDS)
            raise RuntimeError(f"keygate-control not healthy within {self.start_timeout}s: {self.log_text()[-3000:]}") from None
        return self

    def stop(self, hard=False):
        """SIGTERM (SIGKILL after STOP_SECONDS), or SIGKILL at once when `hard`."""
        if self.proc is not None and self.proc.poll() is None:
            if hard:
                self.proc.kill()
                self.proc.wait(timeout=STOP_SECONDS)
            else:
                stop(self.proc, STOP_SECONDS)

    close = stop

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin(self, method, path, **kwargs):
        """A request with the admin token."""
        kwargs.setdefault("verify", self.verify)
        return requests.request(method, self.url(path), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                timeout=10, **kwargs)

    def create_key(self, **fields):
        fields.setdefault("name", "e2e")
        response = self.admin("POST", "/v1/keys", json=fields)
        assert response.status_code == 201, response.text
        return response.json()

    def sql(self, query):
        """Rows of a read-only query on the service's database (integers as int)."""
        if self.is_postgres:
            rows = self.cluster.psql(self.database.rsplit("/", 1)[1], query)
            return [tuple(int(value) if value.lstrip("-").isdigit() else value for value in row) for row in rows]
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


def keys_cli(service, *args, token=ADMIN_TOKEN):
    """`keygate-control keys ARGS` against `service`."""
    return run_cli("keys", *args, url=service.url(), token=token)
