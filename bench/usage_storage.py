#!/usr/bin/env python3
"""`make bench-usage-storage`: how much the usage detail (issue 25) adds to the database per
million requests, on SQLite and on PostgreSQL. One control service per backend; BENCH_KEYS (100)
keys, each with traffic in each of the last BENCH_HOURS (24) hours from BENCH_PROXIES (5) proxies,
1,000,000 requests in all. Each key-hour's reports are shaped like a busy filter's: upstream
classes (95 % 2xx, 3 % 4xx, 1 % 5xx, 1 % none), durations over 20 histogram buckets, 3 routes,
2 % denials, 10 client addresses (sketch and top 5) and the events of the denials and failures
(at most 20 a report). Measured twice: counts only (what an older filter sends) and with the
detail, as database bytes (SQLite pages; PostgreSQL's table and index sizes) per million
requests. Prints one JSON line per backend."""

import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from keygate_testkit.api import Api
from keygate_testkit.control import ControlService
from keygate_testkit.ip_sketch import ip_register
from keygate_testkit.postgres import PostgresCluster

KEYS = int(os.environ.get("BENCH_KEYS", "100"))
HOURS = int(os.environ.get("BENCH_HOURS", "24"))
PROXIES = int(os.environ.get("BENCH_PROXIES", "5"))
REQUESTS = 1_000_000
TABLES = ["usage_hourly", "usage_events", "usage_ip_sketch", "usage_batches"]


def report(rng, key_id, hour, requests, detail, key_index):
    denied = max(1, requests * 2 // 100)
    allowed = requests - denied
    body = {"key_id": key_id, "hour": hour, "allowed": allowed,
            "denied": {"RATE_LIMIT_EXCEEDED": denied - denied // 4, "OPERATION_NOT_ALLOWED": denied // 4}}
    if not detail:
        return body
    failed, none = allowed // 100, allowed // 100
    body["upstream"] = {"2xx": allowed - 3 * allowed // 100 - failed - none, "4xx": 3 * allowed // 100,
                        "5xx": failed, "none": none}
    buckets = {}
    for _ in range(allowed):
        bucket = min(143, max(0, int(rng.gauss(60, 8))))
        buckets[str(bucket)] = buckets.get(str(bucket), 0) + 1
    body["latency_buckets"] = buckets
    body["routes"] = {"chat": {"allowed": allowed // 2, "denied": {"RATE_LIMIT_EXCEEDED": denied // 2}},
                      "images": {"allowed": allowed // 3}, "other": {"allowed": allowed - allowed // 2 - allowed // 3}}
    addresses = [key_index * 100 + n for n in range(10)]
    sketch = {}
    for address in addresses:
        register, value = ip_register(address)
        sketch[str(register)] = max(sketch.get(str(register), 0), value)
    body["ip_sketch"] = sketch
    body["top_ips"] = {f"10.{key_index % 250}.0.{n}": allowed // 10 for n in range(5)}
    now_ms = int(datetime.fromisoformat(hour.replace("Z", "+00:00")).timestamp() * 1000)
    outcomes = (["5xx"] * failed + ["none"] * none + ["RATE_LIMIT_EXCEEDED"] * denied)[:20]
    body["events"] = [{"at_ms": now_ms + rng.randrange(3_600_000), "outcome": o,
                       "status": {"5xx": 503, "none": 0}.get(o, 429), "method": "POST", "path": "/v1/chat/completions",
                       "client_ip": f"10.{key_index % 250}.0.{rng.randrange(10)}", "request_id": str(uuid.uuid4())}
                      for o in outcomes]
    body["events_dropped"] = max(0, failed + none + denied - 20)
    return body


def database_bytes(service):
    if service.is_postgres:
        sizes = " + ".join(f"pg_total_relation_size('{table}')" for table in TABLES)
        return int(service.sql(f"SELECT {sizes}")[0][0])
    service.sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return int(service.sql("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")[0][0])


def fill(service, detail):
    api = Api(service.url())
    keys = [api.create(name=f"storage-{n}", plan="enterprise")["id"] for n in range(KEYS)]
    rng = random.Random(7)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    per_report = REQUESTS // (KEYS * HOURS * PROXIES)
    before = database_bytes(service)
    for proxy in range(PROXIES):
        reports = [report(rng, key_id, (now - timedelta(hours=h)).strftime("%Y-%m-%dT%H:00:00Z"), per_report, detail, k)
                   for k, key_id in enumerate(keys) for h in range(HOURS)]
        for start in range(0, len(reports), 1000):
            body = {"proxy_id": f"proxy-{proxy}", "batch_id": uuid.uuid4().hex, "reports": reports[start:start + 1000]}
            answer = api.request("POST", "/v1/usage", token="sync", json=body, timeout=120)
            answer.raise_for_status()
    counted = per_report * KEYS * HOURS * PROXIES
    return (database_bytes(service) - before) * 1_000_000 / counted


def main():
    work = Path(tempfile.mkdtemp(prefix="keygate-usage-storage-"))
    cluster = PostgresCluster(work / "pg").init().start()
    try:
        for backend in ("sqlite", "postgres"):
            results = {}
            for detail in (False, True):
                database = cluster.new_database("storage") if backend == "postgres" else None
                service = ControlService(database, cluster=cluster if database else None).start()
                try:
                    results["with_detail" if detail else "counts_only"] = round(fill(service, detail) / 1e6, 2)
                finally:
                    service.stop()
            print(json.dumps({"backend": backend, "keys": KEYS, "hours": HOURS, "proxies": PROXIES,
                              "mb_per_million_requests": results}), flush=True)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
