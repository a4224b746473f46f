"""Serving a full snapshot of many keys in JSON and in the compact encoding: time and bytes on
the wire for one client paging through it: compact right after the service started (the first
page waits for the cached snapshot the service builds at start), compact again (from the cache),
then JSON twice. `.venv/bin/python bench/snapshot_encodings.py --keys 1000000` (SQLite, seeded
with `keygate-control seed`; the database is kept in --dir for later runs). `--postgres` runs
the same on a local PostgreSQL (keygate_testkit.postgres, fsync on), seeded afresh."""

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

import requests

from keygate_testkit.control import ControlService, seed
from keygate_testkit.paths import SYNC_TOKEN
from keygate_testkit.postgres import PostgresCluster
from keygate_testkit.processes import rss_mb

COMPACT = "application/vnd.keygate.snapshot+binary"
START_SECONDS = 60


def log(message):
    print(message, file=sys.stderr, flush=True)


def next_cursor(response, compact):
    if not compact:
        return response.json().get("next_cursor")
    body = response.content
    header = body[12:12 + struct.unpack_from("<I", body, 8)[0]]
    flags = header[16]
    if not flags & 2:
        return None
    epoch_length = struct.unpack_from("<H", header, 17)[0]
    at = 19 + epoch_length
    return header[at + 2:at + 2 + struct.unpack_from("<H", header, at)[0]].decode()


def load(session, url, limit, compact):
    """Pages one full snapshot; returns (seconds, bytes, pages)."""
    headers = {"Authorization": f"Bearer {SYNC_TOKEN}"}
    if compact:
        headers["Accept"] = f"{COMPACT}, application/json;q=0.5"
    started, total, pages, cursor = time.monotonic(), 0, 0, None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = session.get(f"{url}/v1/snapshot", params=params, headers=headers, timeout=600)
        assert response.status_code == 200, response.text
        total += len(response.content)
        pages += 1
        cursor = next_cursor(response, compact)
        if not cursor:
            return time.monotonic() - started, total, pages


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/keygate-bench-snapshot"))
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    cluster = None
    if args.postgres:
        work = Path(tempfile.mkdtemp(prefix="keygate-bench-snapshot-", dir=args.dir))
        cluster = PostgresCluster(work / "postgres", durable=True).init()
        cluster.start()
        database = cluster.new_database("bench")
    else:
        database = args.dir / f"keys-{args.keys}.db"
    try:
        if args.postgres or not database.exists():
            log(f"seeding {args.keys} keys into {database}")
            seed(database, args.keys)
        measure(database, args)
    finally:
        if cluster:
            cluster.destroy()


def measure(database, args):
    service = ControlService(database, args.dir / "serve.log", start_timeout=START_SECONDS).start()
    try:
        with requests.Session() as session:
            # Right after start the first page waits for the build the service starts with.
            for name, compact in [("compact, at start", True), ("compact, cached", True),
                                  ("json", False), ("json", False)]:
                seconds, size, pages = load(session, service.url(), args.limit, compact)
                print(f"{name:16} {seconds:6.2f} s  {size / 1e6:7.1f} MB  {pages} pages, "
                      f"service RSS {rss_mb(service.proc.pid):.0f} MB")
    finally:
        service.stop()


if __name__ == "__main__":
    main()
