#!/usr/bin/env python3
"""Demo upstream for Keygate: answers every request with 200 and a JSON echo of what it
received ({"method", "path", "headers"}), so a caller can see what the filter forwarded.

Usage: demo_upstream.py [--host 127.0.0.1] [--port 8082] [--delay-header x-demo-delay-ms]
"""
import argparse
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_DELAY_MS = 30_000


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _echo(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        # Lets tests hold a request open (slow upstream); bounded.
        delay = self.headers.get("x-demo-delay-ms")
        if delay and delay.isdigit():
            time.sleep(min(int(delay), MAX_DELAY_MS) / 1000)
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = value if name not in headers else headers[name] + "," + value
        body = json.dumps({"method": self.command, "path": self.path, "headers": headers}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo

    def log_message(self, fmt, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), EchoHandler)
    server.daemon_threads = True
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
