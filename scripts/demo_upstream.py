#!/usr/bin/env python3
"""Demo upstream for Keygate: answers every request with 200 and a JSON echo of what it
received ({"method", "path", "headers"}), so a caller can see what the filter forwarded.

A request carrying the delay header (`x-demo-delay-ms: 250` by default) is answered that many
milliseconds later, at most 30 s: a slow upstream for tests. A client that goes away meanwhile
gets no answer. `x-demo-status: 503` answers with that status (200 to 599) instead of 200, so
errors can be shown and tested; `x-demo-body-delay-ms: 2000` sends the status line and headers
at once and the body that much later (a long streamed answer a client can hang up on). A value
that is not a whole number is answered with 400.

Streams (scripts/demo_streams.py): `x-demo-stream: N` answers N server-sent events
(`text/event-stream`), `x-demo-stream-interval-ms` apart (default 100); a WebSocket upgrade on
any path is accepted and each message echoed.

HTTP/1.1 with keep-alive: each answer leaves in one write with Nagle off, and the request body
is read to its end (content-length or chunked) so the next request on the connection starts
where it should; a body it cannot frame, or over 1 MiB, is answered and the connection closed.

Usage: demo_upstream.py [--host 127.0.0.1] [--port 8082] [--delay-header x-demo-delay-ms]
       (--delay-header '' turns delays off)
"""
import argparse
import json
import re
import selectors
import signal
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from demo_streams import is_websocket_upgrade, server_sent_events, websocket_echo

DEFAULT_DELAY_HEADER = "x-demo-delay-ms"
STATUS_HEADER = "x-demo-status"
BODY_DELAY_HEADER = "x-demo-body-delay-ms"
STREAM_HEADER = "x-demo-stream"
STREAM_INTERVAL_HEADER = "x-demo-stream-interval-ms"
MAX_DELAY_MS = 30_000
MAX_BODY_BYTES = 1 << 20
MAX_LINE_BYTES = 8192
MAX_CHUNKS = 4096
MAX_TRAILER_LINES = 64
READ_BYTES = 1 << 16
DECIMAL = re.compile(r"[0-9]{1,18}")
HEXADECIMAL = re.compile(rb"[0-9a-fA-F]{1,15}")


class BodyError(Exception):
    """The request body cannot be read to its end: the connection cannot carry another request."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers go out in one write anyway; without this, a client's delayed ACK can still hold
    # a small write back for 40 ms.
    disable_nagle_algorithm = True
    delay_header = DEFAULT_DELAY_HEADER

    def _echo(self):
        try:
            self._discard_body()
        except BodyError as error:
            return self._answer(error.status, {"error": str(error)}, close=True)
        delay_ms = 0
        if self.delay_header:
            value = (self.headers.get(self.delay_header) or "").strip()
            if value and not DECIMAL.fullmatch(value):
                return self._answer(400, {"error": f"{self.delay_header}: not a whole number of milliseconds"})
            delay_ms = min(int(value or 0), MAX_DELAY_MS)
        status_text = (self.headers.get(STATUS_HEADER) or "200").strip()
        if not DECIMAL.fullmatch(status_text) or not 200 <= int(status_text) <= 599:
            return self._answer(400, {"error": f"{STATUS_HEADER}: not a status from 200 to 599"})
        body_delay_text = (self.headers.get(BODY_DELAY_HEADER) or "0").strip()
        if not DECIMAL.fullmatch(body_delay_text):
            return self._answer(400, {"error": f"{BODY_DELAY_HEADER}: not a whole number of milliseconds"})
        if delay_ms and not self._hold(delay_ms / 1000):
            self.close_connection = True
            return
        if self.command == "GET" and is_websocket_upgrade(self.headers):
            if not websocket_echo(self):
                return self._answer(400, {"error": "a WebSocket upgrade needs sec-websocket-key and version 13"})
            return
        stream_text = (self.headers.get(STREAM_HEADER) or "").strip()
        if stream_text:
            interval_text = (self.headers.get(STREAM_INTERVAL_HEADER) or "100").strip()
            if not DECIMAL.fullmatch(stream_text) or not DECIMAL.fullmatch(interval_text):
                return self._answer(400, {"error": f"{STREAM_HEADER}, {STREAM_INTERVAL_HEADER}: whole numbers"})
            return server_sent_events(self, int(stream_text), int(interval_text), self._hold)
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = value if name not in headers else headers[name] + "," + value
        payload = {"method": self.command, "path": self.path, "headers": headers}
        body_delay_ms = min(int(body_delay_text), MAX_DELAY_MS)
        self._answer(int(status_text), payload, body_delay_ms=body_delay_ms)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo

    def _discard_body(self):
        if "transfer-encoding" in self.headers:
            if self.headers["transfer-encoding"].strip().lower() != "chunked":
                raise BodyError(501, "only the chunked transfer-encoding is understood")
            return self._discard_chunked()
        lengths = self.headers.get_all("content-length") or []
        if not lengths:
            return
        if len(set(lengths)) != 1 or not DECIMAL.fullmatch(lengths[0].strip()):
            raise BodyError(400, "bad content-length")
        self._discard(int(lengths[0]))

    def _discard_chunked(self):
        total = 0
        for _ in range(MAX_CHUNKS):
            size_text = self.rfile.readline(MAX_LINE_BYTES).split(b";", 1)[0].strip()
            if not HEXADECIMAL.fullmatch(size_text):
                raise BodyError(400, "bad chunk size")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(MAX_TRAILER_LINES):
                    line = self.rfile.readline(MAX_LINE_BYTES)
                    if line in (b"\r\n", b"\n"):
                        return
                    if not line:
                        raise BodyError(400, "body ended early")
                raise BodyError(400, "too many trailers")
            total += size
            self._discard(size, total)
            if self.rfile.readline(MAX_LINE_BYTES) not in (b"\r\n", b"\n"):
                raise BodyError(400, "bad chunk end")
        raise BodyError(413, "too many chunks")

    def _discard(self, length, body_length=None):
        """Reads `length` bytes of body; `body_length` is the whole body's length so far."""
        if (body_length or length) > MAX_BODY_BYTES:
            raise BodyError(413, f"body over {MAX_BODY_BYTES} bytes")
        while length:
            read = len(self.rfile.read(min(length, READ_BYTES)))
            if not read:
                raise BodyError(400, "body ended early")
            length -= read

    def _hold(self, seconds):
        """Waits `seconds`; False, sooner, if the client closes the connection."""
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ)
            if not selector.select(seconds):
                return True
        try:
            if not self.connection.recv(1, socket.MSG_PEEK):
                return False
        except OSError:
            return False
        # The bytes are a pipelined next request: it waits its turn.
        time.sleep(max(0.0, deadline - time.monotonic()))
        return True

    def _answer(self, status, payload, close=False, body_delay_ms=0):
        if close or body_delay_ms:
            self.close_connection = True
        body = json.dumps(payload).encode()
        lines = [
            f"HTTP/1.1 {status} {phrase(status)}",
            "content-type: application/json",
            f"content-length: {len(body)}",
        ]
        if self.close_connection:
            lines.append("connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if body_delay_ms:
            # The head now, the body later: a client may hang up in between.
            self.wfile.write(head)
            self.wfile.flush()
            if not self._hold(body_delay_ms / 1000):
                return
            try:
                self.wfile.write(body)
            except OSError:
                pass
            return
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def log_message(self, fmt, *args):
        pass


def phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    # Room for a burst of new connections (a load test) without dropped SYNs and their
    # one-second retransmits.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument(
        "--delay-header",
        default=DEFAULT_DELAY_HEADER,
        metavar="NAME",
        help=f"request header naming a delay in ms before the answer, at most {MAX_DELAY_MS} "
        f"(default {DEFAULT_DELAY_HEADER}; '' turns delays off)",
    )
    args = parser.parse_args()
    EchoHandler.delay_header = args.delay_header.strip().lower()
    server = EchoServer((args.host, args.port), EchoHandler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"demo upstream listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
