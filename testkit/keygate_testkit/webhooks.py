"""A webhook receiver for the tests: an HTTP server on 127.0.0.1 that records every delivery
(headers and raw body) and answers what the test scripts (fail the next N, or hold a request
until released). Signatures are verified by the tests with the Standard Webhooks library."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from keygate_testkit.waiting import wait_until

HOLD_SECONDS = 30


class Receiver:
    def __init__(self):
        self.deliveries = []
        self.failures_left = 0
        self.hold_next = False
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.deliveries.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                                "body": body})
                    fail = receiver.failures_left > 0
                    if fail:
                        receiver.failures_left -= 1
                    hold = receiver.hold_next
                    receiver.hold_next = False
                if hold:
                    receiver.held.set()
                    receiver.release.wait(HOLD_SECONDS)
                status = 500 if fail else 204
                self.send_response(status)
                self.send_header("content-length", "0" if status == 204 else "9")
                self.end_headers()
                if status != 204:
                    self.wfile.write(b"bad\x1bthing")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self, kind=None):
        """The JSON bodies received so far (of type `kind` if given)."""
        with self.lock:
            bodies = [json.loads(delivery["body"]) for delivery in self.deliveries]
        return [body for body in bodies if kind is None or body["type"] == kind]

    def wait_for(self, kind, count=1, timeout=30, where=None):
        """The first `count` events of type `kind` (matching `where`, a predicate on the body)."""
        def found():
            matching = [event for event in self.events(kind) if where is None or where(event)]
            return matching if len(matching) >= count else None
        return wait_until(found, timeout=timeout, what=f"{count} {kind} webhook event(s)")

    def with_id(self, webhook_id):
        with self.lock:
            return [d for d in self.deliveries if d["headers"].get("webhook-id") == webhook_id]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
