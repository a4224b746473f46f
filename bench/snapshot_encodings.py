"""Serving a full snapshot of many keys in JSON and in the compact encoding: time and bytes on
the wire for one client paging through it: compact right after the service started (the first
page waits for the cached snapshot the service builds at start), compact again (from the cache),
then JSON twice. `python bench/snapshot_encodings.py --keys 1000000` (SQLite, seeded
with `keygate-control seed`; the database is kept in --dir for later runs). `--postgres` runs
the same on a local PostgreSQL (tests/pgcluster.py, fsync on), seeded afresh."""

import argparse
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from control_service import CONTROL, SYNC, control_env, log, serve, stop
from pgcluster import PostgresCluster

COMPACT = "application/vnd.keygate.snapshot+binary"


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
    headers = {"Authorization": f"Bearer {SYNC}"}
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


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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
            subprocess.run([str(CONTROL), "seed", "--count", str(args.keys)],
                           env=control_env(database), check=True)
        measure(database, args)
    finally:
        if cluster:
            cluster.destroy()


def measure(database, args):
    process, url = serve(database, args.dir / "serve.log")
    try:
        with requests.Session() as session:
            # Right after start the first page waits for the build the service starts with.
            for name, compact in [("compact, at start", True), ("compact, cached", True),
                                  ("json", False), ("json", False)]:
                seconds, size, pages = load(session, url, args.limit, compact)
                print(f"{name:16} {seconds:6.2f} s  {size / 1e6:7.1f} MB  {pages} pages, "
                      f"service RSS {rss_mb(process.pid):.0f} MB")
    finally:
        stop(process)


if __name__ == "__main__":
    main()
