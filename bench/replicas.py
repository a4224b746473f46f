"""The control service at scale on each backend (docs/benchmarks.md, "Control service: SQLite
and PostgreSQL"): a full snapshot of N keys from SQLite and from PostgreSQL, and key writes per
second through one and two replicas. `make bench-replicas`; BENCH_KEYS (default 1,000,000) and
BENCH_WRITES (default 2,000) set the sizes. PostgreSQL is a throwaway cluster
(keygate_testkit.postgres) with fsync on, as a real one runs."""

import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from keygate_testkit.control import ControlService, seed
from keygate_testkit.paths import ADMIN_TOKEN, SYNC_TOKEN
from keygate_testkit.postgres import PostgresCluster

KEYS = int(os.environ.get("BENCH_KEYS", "1000000"))
WRITES = int(os.environ.get("BENCH_WRITES", "2000"))
WRITERS = 16
PAGE = 10_000
START_SECONDS = 60


def log(message):
    print(message, file=sys.stderr, flush=True)


def serve(database, log_path):
    """A control service on `database`, started."""
    return ControlService(database, log_path, start_timeout=START_SECONDS).start()


def full_snapshot(url):
    """Seconds and bytes to page through a full snapshot, as a new proxy does."""
    headers = {"Authorization": f"Bearer {SYNC_TOKEN}"}
    started, total, cursor, pages = time.monotonic(), 0, None, 0
    while True:
        params = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
        response = requests.get(f"{url}/v1/snapshot", params=params, headers=headers, timeout=300)
        response.raise_for_status()
        total += len(response.content)
        pages += 1
        cursor = response.json().get("next_cursor")
        if not cursor:
            return time.monotonic() - started, total, pages


def writes_per_second(urls):
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    latencies = []
    lock = threading.Lock()

    def write(writer):
        session = requests.Session()
        for n in range(WRITES // WRITERS):
            began = time.monotonic()
            response = session.post(f"{urls[writer % len(urls)]}/v1/keys", headers=headers,
                                    json={"name": f"w{writer}-{n}"}, timeout=30)
            assert response.status_code == 201, response.text
            with lock:
                latencies.append(time.monotonic() - began)

    started = time.monotonic()
    with ThreadPoolExecutor(WRITERS) as pool:
        for done in [pool.submit(write, writer) for writer in range(WRITERS)]:
            done.result()
    elapsed = time.monotonic() - started
    latencies.sort()
    return len(latencies) / elapsed, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


def main():
    work = Path(tempfile.mkdtemp(prefix="keygate-bench-replicas-"))
    cluster = PostgresCluster(work / "postgres", durable=True).init()
    cluster.start()
    results = {"keys": KEYS, "writes": WRITES, "writers": WRITERS}
    try:
        sqlite_db = work / "keygate.db"
        postgres_db = cluster.new_database("bench")
        for label, database in (("sqlite", sqlite_db), ("postgres", postgres_db)):
            log(f"{label}: seeding {KEYS} keys")
            seconds = seed(database, KEYS)
            service = serve(database, work / f"{label}.log")
            try:
                log(f"{label}: full snapshot")
                took, size, pages = full_snapshot(service.url())
            finally:
                service.stop()
            results[label] = {"seed_s": round(seconds, 1), "full_snapshot_s": round(took, 1),
                              "snapshot_mb": round(size / 1e6, 1), "pages": pages}
        for label, database, replicas in (("sqlite_1", work / "writes.db", 1),
                                          ("postgres_1", cluster.new_database("w1"), 1),
                                          ("postgres_2", cluster.new_database("w2"), 2)):
            log(f"{label}: {WRITES} writes by {WRITERS} writers")
            served = [serve(database, work / f"{label}-{n}.log") for n in range(replicas)]
            try:
                rate, p50, p99 = writes_per_second([service.url() for service in served])
            finally:
                for service in served:
                    service.stop()
            results[label] = {"writes_per_s": round(rate), "p50_ms": round(p50 * 1000, 1),
                              "p99_ms": round(p99 * 1000, 1)}
    finally:
        cluster.destroy()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
