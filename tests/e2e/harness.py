"""Processes for the end-to-end tests: a real Envoy with the Keygate filter, the demo upstream,
a scriptable snapshot server, and the real control service. Loopback only; every wait is
bounded."""
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import requests

ROOT = Path(__file__).resolve().parents[2]
WASM = Path(os.environ.get("KEYGATE_WASM", ROOT / "target/wasm32-wasip1/release/keygate.wasm")).resolve()
CONTROL_BIN = Path(os.environ.get("KEYGATE_CONTROL_BIN", ROOT / "target/release/keygate-control")).resolve()
ENVOY_BIN = Path(os.environ.get("KEYGATE_ENVOY", ROOT / ".venv/bin/envoy")).resolve()
SYNC_TOKEN = "test-sync-token"
ADMIN_TOKEN = "test-admin-token"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout=20.0, interval=0.05, what="condition"):
    """Polls `condition` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - the condition may fail while starting
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def key_record(secret, key_id, **overrides):
    """A snapshot KeyRecord for `secret`, as the control service would serve it."""
    record = {
        "id": key_id,
        "hash": sha256_hex(secret),
        "prefix": secret[: secret.rfind("_") + 1] if "_" in secret else "",
        "last4": secret[-4:],
        "name": f"name of {key_id}",
        "team": "team-a",
        "environment": "test" if secret.startswith("pk_test_") else "live",
        "scopes": [],
        "allowed_ips": [],
        "expires_at": None,
        "active": True,
        "plan": "free",
        "limits": {},
    }
    record.update(overrides)
    return record


class SnapshotServer:
    """A stand-in control service whose snapshot answer each test sets: a body, a status, a
    delay, or garbage. Records every request it gets."""

    def __init__(self, port=None):
        self.lock = threading.Lock()
        self.version = 0
        self.keys = []
        self.override = None  # (status, body bytes, delay seconds) to answer instead
        self.requests = []
        self.usage_posts = []  # (monotonic time, parsed body) of accepted usage posts
        self.usage_status = 200  # what POST /v1/usage answers
        self.usage_attempts = []  # (monotonic time, parsed body) of every usage post
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server naming
                with server.lock:
                    server.requests.append((time.monotonic(), self.path, dict(self.headers)))
                    override = server.override
                    version, keys = server.version, list(server.keys)
                if self.headers.get("authorization") != f"Bearer {SYNC_TOKEN}":
                    return self._send(401, b'{"error":{"code":"UNAUTHORIZED","message":"sync token"}}')
                if override is not None:
                    status, body, delay = override
                    if delay:
                        time.sleep(delay)
                    return self._send(status, body)
                etag = f'"E-{version}"'
                query = parse_qs(urlparse(self.path).query)
                cursor = int(query.get("cursor", ["0"])[0])
                if cursor == 0 and self.headers.get("if-none-match") == etag:
                    return self._send(304, b"", etag)
                limit = int(query.get("limit", ["10000"])[0])
                page = {"version": version, "epoch": "E", "full": True, "since": 0, "keys": keys[cursor : cursor + limit]}
                if cursor + limit < len(keys):
                    page["next_cursor"] = str(cursor + limit)
                return self._send(200, json.dumps(page).encode(), etag)

            def do_POST(self):  # noqa: N802 - http.server naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.headers.get("authorization") != f"Bearer {SYNC_TOKEN}" or self.path != "/v1/usage":
                    return self._send(401, b'{"error":{"code":"UNAUTHORIZED","message":"sync token"}}')
                body = json.loads(raw)
                with server.lock:
                    server.usage_attempts.append((time.monotonic(), body))
                    status = server.usage_status
                    duplicate = any(b["batch_id"] == body["batch_id"] for _, b in server.usage_posts)
                    if status == 200 and not duplicate:
                        server.usage_posts.append((time.monotonic(), body))
                return self._send(status, json.dumps({"duplicate": duplicate}).encode())

            def _send(self, status, body, etag=None):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                if etag:
                    self.send_header("etag", etag)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = port or free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, keys):
        with self.lock:
            self.keys = list(keys)
            self.version += 1
            return self.version

    def answer(self, status, body, delay=0.0):
        with self.lock:
            self.override = (status, body, delay)

    def heal(self):
        with self.lock:
            self.override = None

    def usage_totals(self):
        """Sum of reported usage per key id: {"key": {"allowed": n, "CODE": n}}."""
        totals = {}
        with self.lock:
            posts = [body for _, body in self.usage_posts]
        for body in posts:
            for report in body["reports"]:
                entry = totals.setdefault(report["key_id"], {"allowed": 0})
                entry["allowed"] += report["allowed"]
                for code, count in report.get("denied", {}).items():
                    entry[code] = entry.get(code, 0) + count
        return totals

    def request_count(self):
        with self.lock:
            return len(self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Upstream:
    """The demo upstream (JSON echo) on a free port."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts/demo_upstream.py"), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: requests.get(f"http://127.0.0.1:{self.port}/", timeout=1).ok, what="demo upstream")

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def plugin_config(**overrides):
    """The shipped plugin configuration, with fast refreshes for tests."""
    config = {
        "control": {
            "cluster": "keygate_control",
            "token": SYNC_TOKEN,
            "refresh_interval": "1s",
            "timeout": "1s",
        },
        "fail_mode": "closed",
        "max_staleness": "5m",
        "key_header": "x-api-key",
        "routes": [
            {"methods": ["POST"], "exact": "/v1/jobs", "scope": "submit_job"},
            {"methods": ["GET"], "template": "/v1/jobs/{id}", "scope": "check_status"},
            {"methods": ["GET"], "exact": "/v1/models", "scope": "list_models"},
        ],
    }
    for name, value in overrides.items():
        if name == "control":
            config["control"].update(value)
        else:
            config[name] = value
    return config


CONTROL_CLUSTER_START = "  - name: keygate_control\n"
REPLICA_ENDPOINT = """        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: %d }
"""


def replicated_control_cluster(control_ports):
    """envoy/envoy-ha.yaml's keygate_control cluster (health-checked replicas) with one
    endpoint per port in `control_ports`."""
    text = (ROOT / "envoy/envoy-ha.yaml").read_text()
    cluster = text[text.index(CONTROL_CLUSTER_START) :]
    shipped = REPLICA_ENDPOINT % 8081 + REPLICA_ENDPOINT % 8091
    assert cluster.endswith(shipped), "envoy/envoy-ha.yaml's keygate_control cluster no longer ends with its two replicas"
    return cluster[: -len(shipped)] + "".join(REPLICA_ENDPOINT % port for port in control_ports)


def envoy_yaml(listener_port, admin_port, upstream_port, control_port, config, access_log, ipv6_port=None):
    """The shipped envoy/envoy.yaml with test ports, the test plugin config and a file
    access log. `control_port` is one port, or a list of control-service replicas' ports: then
    the keygate_control cluster is envoy/envoy-ha.yaml's, listing them all."""
    text = (ROOT / "envoy/envoy.yaml").read_text()
    if isinstance(control_port, (list, tuple)):
        assert text.endswith(text[text.index(CONTROL_CLUSTER_START) :]) and text.count(CONTROL_CLUSTER_START) == 1
        text = text[: text.index(CONTROL_CLUSTER_START)] + replicated_control_cluster(control_port)
        control_port = None
    replacements = {
        "port_value: 10000": f"port_value: {listener_port}",
        "port_value: 9901": f"port_value: {admin_port}",
        "port_value: 8082": f"port_value: {upstream_port}",
        "filename: target/wasm32-wasip1/release/keygate.wasm": f"filename: {WASM}",
    }
    if control_port is not None:
        replacements["port_value: 8081"] = f"port_value: {control_port}"
    for old, new in replacements.items():
        assert old in text, f"envoy/envoy.yaml no longer contains {old!r}"
        text = text.replace(old, new)
    start = text.index("                  value: |\n") + len("                  value: |\n")
    end = text.index("          - name: envoy.filters.http.router")
    body = "\n".join("                    " + line for line in json.dumps(config, indent=2).splitlines())
    text = text[:start] + body + "\n" + text[end:]
    text = text.replace(
        "- name: envoy.access_loggers.stdout\n"
        "            typed_config:\n"
        '              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n',
        "- name: envoy.access_loggers.file\n"
        "            typed_config:\n"
        '              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n'
        f"              path: {access_log}\n",
    )
    if ipv6_port:
        listener_start = text.index("  - name: api\n")
        listener_end = text.index("  clusters:\n")
        listener = text[listener_start:listener_end]
        v6 = listener.replace("- name: api\n", "- name: api_v6\n", 1).replace(
            f"address: 127.0.0.1, port_value: {listener_port}", f'address: "::1", port_value: {ipv6_port}'
        )
        text = text[:listener_end] + v6 + text[listener_end:]
    return text


class Envoy:
    """A real Envoy with the Keygate filter."""

    def __init__(self, upstream_port, control_port, config, concurrency=2, ipv6=False, direct_response=False):
        self.dir = Path(tempfile.mkdtemp(prefix="keygate-envoy-"))
        self.port = free_port()
        self.admin_port = free_port()
        self.ipv6_port = free_port() if ipv6 else None
        self.access_log = self.dir / "access.log"
        self.log_path = self.dir / "envoy.log"
        yaml_path = self.dir / "envoy.yaml"
        text = envoy_yaml(self.port, self.admin_port, upstream_port, control_port, config, self.access_log, self.ipv6_port)
        if direct_response:
            # Envoy answers itself instead of the upstream: for measurements where the
            # Python demo upstream would be the bottleneck.
            catch_all = '              - match: { prefix: "/" }\n                route: { cluster: upstream }'
            assert catch_all in text, "envoy/envoy.yaml's catch-all route changed"
            text = text.replace(
                catch_all,
                '              - match: { prefix: "/" }\n                direct_response: { status: 200, body: { inline_string: "ok" } }',
            )
        yaml_path.write_text(text)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                str(ENVOY_BIN),
                "-c",
                str(yaml_path),
                "--concurrency",
                str(concurrency),
                "--base-id",
                str(random.randint(1000, 60000)),
                "--log-level",
                "info",
                "--file-flush-interval-msec",
                "100",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(self._ready, timeout=60, what="Envoy /ready")
        except AssertionError:
            self.close()
            raise AssertionError(f"Envoy did not start:\n{self.logs()[-4000:]}")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"Envoy exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
        return requests.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1).status_code == 200

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path, key=None, headers=None, method="GET", timeout=10, **kwargs):
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        return requests.request(method, self.url(path), headers=all_headers, timeout=timeout, **kwargs)

    def stats(self):
        text = requests.get(f"http://127.0.0.1:{self.admin_port}/stats/prometheus", timeout=5).text
        values = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
        return values

    def stat(self, suffix):
        """Value of the prometheus series whose name ends with `suffix` (0 when absent)."""
        return sum(v for name, v in self.stats().items() if name.split("{")[0].endswith(suffix))

    def wait_for_status(self, path, key, status, timeout=15.0, headers=None):
        def answered():
            response = self.get(path, key, headers=headers)
            # A list, because a 4xx Response object is falsy.
            return [response] if response.status_code == status else None

        return wait_until(answered, timeout=timeout, what=f"{path} to answer {status}")[0]

    def wait_for_error(self, path, key, status, code, timeout=5.0):
        """Waits until every worker answers `key` with `status` and error `code`: ten answers in
        a row. After a new *full* snapshot a worker may serve the store view it read last for up
        to 100 ms (src/request.rs, VIEW_TTL_MS), so one worker's answer is not yet all of them."""

        def settled():
            for _ in range(10):
                response = self.get(path, key)
                if response.status_code != status or response.json()["error"]["code"] != code:
                    return None
            return [response]

        return wait_until(settled, timeout=timeout, what=f"every worker to answer {path} {status} {code}")[0]

    def logs(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


class ControlService:
    """The real keygate-control on a free port with a fresh SQLite file, or on the PostgreSQL
    database at `database_url` (several replicas may share one)."""

    def __init__(self, db_path=None, port=None, database_url=None):
        self.dir = Path(tempfile.mkdtemp(prefix="keygate-control-"))
        self.db = db_path or self.dir / "keygate.db"
        self.database_url = database_url
        self.port = port or free_port()
        self.start()

    def start(self):
        env = {k: v for k, v in os.environ.items() if k not in ("KEYGATE_DB", "KEYGATE_DATABASE_URL")}
        env.update(KEYGATE_ADMIN_TOKEN=ADMIN_TOKEN, KEYGATE_SYNC_TOKEN=SYNC_TOKEN)
        store = ["--database-url", self.database_url] if self.database_url else ["--db", str(self.db)]
        self.log = open(self.dir / "control.log", "ab")
        self.proc = subprocess.Popen(
            [str(CONTROL_BIN), "serve", "--listen", f"127.0.0.1:{self.port}", *store],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: requests.get(self.url("/healthz"), timeout=1).ok, what="control service")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def admin(self, method, path, **kwargs):
        return requests.request(
            method, self.url(path), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10, **kwargs
        )

    def create_key(self, **fields):
        fields.setdefault("name", "e2e")
        response = self.admin("POST", "/v1/keys", json=fields)
        assert response.status_code == 201, response.text
        return response.json()

    def stop(self, hard=False):
        if self.proc.poll() is None:
            if hard:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=15)
        self.log.close()
