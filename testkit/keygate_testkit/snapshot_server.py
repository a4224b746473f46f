"""A stand-in control service for the filter's tests: serves the snapshot each test sets (or a
status, a delay, garbage) and takes usage reports, in a thread of the test process on a free
loopback port. `key_record` makes the records it serves."""
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from .paths import SYNC_TOKEN
from .ports import free_port


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
        self.fleet_syncs = 0  # fleet syncs answered
        self.jwks_fetches = 0  # GET /.well-known/* (Envoy's jwt_authn), not in `requests`
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server naming
                if self.path.startswith("/.well-known/"):
                    # The shipped Envoy's jwt_authn fetching the OAuth key set: answered as by a
                    # control service with OAuth off, and kept apart from the snapshot requests.
                    with server.lock:
                        server.jwks_fetches += 1
                    return self._send(404, b'{"error":{"code":"NOT_FOUND","message":"OAuth is off"}}')
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
                if self.headers.get("authorization") != f"Bearer {SYNC_TOKEN}":
                    return self._send(401, b'{"error":{"code":"UNAUTHORIZED","message":"sync token"}}')
                if self.path == "/v1/ratelimits/sync":
                    # A fleet of one: no other proxy has counted anything. Without this answer every
                    # proxy here would count fleet syncs as failed (and raise the sync alert).
                    with server.lock:
                        server.fleet_syncs += 1
                    return self._send(200, b'{"keys":[]}')
                if self.path != "/v1/usage":
                    return self._send(404, b'{"error":{"code":"NOT_FOUND","message":"no such path"}}')
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
