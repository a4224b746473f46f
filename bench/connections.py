"""The control service under the issue-24 slowloris (docs/operations.md, "Connections: timeouts
and the cap"): 60 connections that send the start of a request and a header line every second
but never finish it. Prints how many are still open at each mark (the issue saw 60 of 60 after
65 s), and the latency of `GET /healthz` (a new connection each, and on one kept-alive
connection) without and during the attack.

  .venv/bin/python bench/connections.py [--binary PATH] [--header-timeout 10s] [--marks 5,12,65]

`--binary` runs another build (an older one shows the issue's behaviour)."""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from keygate_testkit import connections
from keygate_testkit.control import ControlService

SLOW_CONNECTIONS = 60
LATENCY_SAMPLES = 300


def milliseconds(samples):
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3)}


def latency(port):
    """healthz latency over a new connection per request, and over one kept-alive connection."""
    fresh, kept = [], []
    for _ in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        with connections.connect(port) as connection:
            assert connections.request(connection)[0] == 200
        fresh.append(time.perf_counter() - started)
    with connections.connect(port) as connection:
        for _ in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            assert connections.request(connection)[0] == 200
            kept.append(time.perf_counter() - started)
    return {"new_connection": milliseconds(fresh), "kept_alive": milliseconds(kept)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary")
    parser.add_argument("--header-timeout", help="passed to serve (omit for the default, or for an old build)")
    parser.add_argument("--marks", default="5,12,65", help="seconds after opening at which to count")
    args = parser.parse_args()
    marks = [float(mark) for mark in args.marks.split(",")]
    directory = Path(tempfile.mkdtemp(prefix="keygate-bench-connections-"))
    extra = ["--header-timeout", args.header_timeout] if args.header_timeout else []
    service = ControlService(directory / "keygate.db", directory / "serve.log", extra_args=extra,
                             binary=args.binary).start()
    result = {"binary": args.binary or "this build", "header_timeout": args.header_timeout or "default"}
    try:
        result["latency_without_attack"] = latency(service.port)
        opened = time.monotonic()
        slow = connections.slowloris(service.port, SLOW_CONNECTIONS)
        open_at = {}
        during = None
        for mark in marks:
            # A bounded loop: one dribble a second until the mark.
            while time.monotonic() - opened < mark:
                connections.dribble(slow)
                if during is None:
                    during = latency(service.port)
                time.sleep(min(1.0, max(0.0, mark - (time.monotonic() - opened))))
            open_at[f"{mark:g}s"] = len(connections.still_open(slow))
            print(f"after {mark:g} s: {open_at[f'{mark:g}s']} of {SLOW_CONNECTIONS} still open", file=sys.stderr)
        result["slowloris_open"] = open_at
        result["latency_during_attack"] = during
        for connection in slow:
            connection.close()
    finally:
        service.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
