"""What proxies' usage reports cost the database (docs/benchmarks.md, "Usage reports from a
fleet"): BENCH_PROXIES (a list, default 100,500,1000) simulated Envoys, each posting
`POST /v1/usage` every BENCH_REPORT_INTERVAL seconds (5, the filter's default
`usage.report_interval`) to one of two control replicas on one PostgreSQL (keygate_testkit.postgres,
fsync on), for BENCH_SECONDS (30) after a warm-up of one interval. `make bench-usage`.

Each report is what a busy filter sends: BENCH_REPORT_KEYS (50) keys with traffic in the
interval, of which BENCH_SHARED (10) are the same for every proxy (a few big customers whose
traffic reaches every pod) and the rest drawn from BENCH_KEYS (20,000) seeded free-plan keys, so
each report also refreshes the keys' daily and monthly quota marks, as in production. Every
report counts allowed requests and, for one key in five, a denial code.

BENCH_IDENTITY (a list, default shared,credential) runs each fleet size twice, side by side: every
proxy posting with the shared sync token, and every proxy enrolled first and posting with its own
credential (docs/security.md, "Proxy identity": the credential check, the sightings flushed every
2 s and the per-proxy copy of each usage row). The ratio of the two is what identity costs.

Printed, one JSON line per fleet size and identity: reports answered and offered per second, failures, the
report's latency as the proxy saw it (p50, p99, max), and the CPU of the replicas (summed) and of
PostgreSQL, each also per 100 proxies and per 1,000 key-reports: the cost per proxy is flat when
those stay flat as the fleet grows."""

import json
import multiprocessing
import os
import random
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import requests

from fleet_sync import CLOCK_TICKS, cpu_ticks, gather, log, postgres_pids
from keygate_testkit.control import ControlService, seed
from keygate_testkit.paths import SYNC_TOKEN
from keygate_testkit.postgres import PostgresCluster

PROXY_COUNTS = [int(n) for n in os.environ.get("BENCH_PROXIES", "100,500,1000").split(",")]
INTERVAL = float(os.environ.get("BENCH_REPORT_INTERVAL", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
KEYS = int(os.environ.get("BENCH_KEYS", "20000"))
REPORT_KEYS = int(os.environ.get("BENCH_REPORT_KEYS", "50"))
SHARED = int(os.environ.get("BENCH_SHARED", "10"))
PROCESSES = int(os.environ.get("BENCH_CLIENT_PROCESSES", "5"))
IDENTITIES = os.environ.get("BENCH_IDENTITY", "shared,credential").split(",")
ENROLLMENT_TOKEN = "kge_bench-enrollment-token"
REPLICAS = 2
START_SECONDS = 60


def current_hour():
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def report_body(proxy, key_ids, rng):
    reports = []
    for n, key_id in enumerate(key_ids):
        report = {"key_id": key_id, "hour": current_hour(), "allowed": rng.randint(1, 50)}
        if n % 5 == 0:
            report["denied"] = {"RATE_LIMIT_EXCEEDED": rng.randint(1, 5)}
        reports.append(report)
    return {"proxy_id": proxy, "batch_id": uuid.uuid4().hex, "reports": reports}


def enroll(urls, proxies):
    """Each proxy's credential, enrolled with the bench's enrollment token (spread over the
    replicas as the proxies' posts are)."""
    credentials = []
    for index in range(proxies):
        answer = requests.post(f"{urls[index % len(urls)]}/v1/proxies/enroll",
                               headers={"Authorization": f"Bearer {ENROLLMENT_TOKEN}"},
                               json={"name": f"bench-proxy-{index:04d}"}, timeout=30)
        answer.raise_for_status()
        credentials.append(answer.json()["credential"])
    return credentials


def run_proxy(url, index, proxies, shared, pool, start_at, stop_at, results, bearer):
    """One proxy: a report every INTERVAL, one in flight at a time (as the filter's lease)."""
    rng = random.Random(index)
    proxy = f"bench-proxy-{index:04d}"
    session = requests.Session()
    headers = {"Authorization": f"Bearer {bearer}"}
    tick = start_at + INTERVAL * index / proxies  # spread over the interval, as pods start
    latencies, failures = [], 0
    while tick < stop_at:
        delay = tick - time.time()
        if delay > 0:
            time.sleep(delay)
        keys = shared + rng.sample(pool, REPORT_KEYS - len(shared))
        body = report_body(proxy, keys, rng)
        began = time.monotonic()
        try:
            response = session.post(f"{url}/v1/usage", json=body, headers=headers, timeout=30)
            ok = response.status_code == 200 and response.json().get("accepted") == len(keys)
        except (requests.RequestException, ValueError):
            ok = False
        took = time.monotonic() - began
        if tick >= start_at + INTERVAL:
            if ok:
                latencies.append(took)
            else:
                failures += 1
        # A slow report delays the next to the next tick, as the filter's interval timer does.
        tick += INTERVAL * max(1, int((time.time() - tick) // INTERVAL) + 1)
    results.append((latencies, failures))


def client_process(urls, proxies, indexes, shared, pool, start_at, stop_at, queue, bearers):
    results = []
    threads = [threading.Thread(target=run_proxy,
                                args=(urls[index % len(urls)], index, proxies, shared, pool, start_at,
                                      stop_at, results, bearers[index]))
               for index in indexes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(results)


def measure(urls, proxies, key_ids, service_pids, database_pids, bearers):
    rng = random.Random(proxies)
    shared = key_ids[:SHARED]
    pool = key_ids[SHARED:]
    start_at = time.time() + 2 + proxies / 200
    stop_at = start_at + INTERVAL + SECONDS
    queue = multiprocessing.Queue()
    rng.shuffle(pool)
    processes = [multiprocessing.Process(target=client_process,
                                         args=(urls, proxies, list(range(n, proxies, PROCESSES)),
                                               shared, pool, start_at, stop_at, queue, bearers))
                 for n in range(PROCESSES)]
    for process in processes:
        process.start()
    time.sleep(max(0.0, start_at + INTERVAL - time.time()))
    pids = database_pids()
    before = (time.monotonic(), cpu_ticks(service_pids), cpu_ticks(pids))
    time.sleep(max(0.0, stop_at - time.time()))
    after = (time.monotonic(), cpu_ticks(service_pids), cpu_ticks(pids))
    results = gather(processes, queue)
    latencies = sorted(latency for chunk in results for run in chunk for latency in run[0])
    failures = sum(run[1] for chunk in results for run in chunk)
    elapsed = after[0] - before[0]
    offered = proxies / INTERVAL

    def percent(ticks):
        return round(100 * ticks / CLOCK_TICKS / elapsed, 1)

    def quantile(q):
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000, 1)

    control, postgres = after[1] - before[1], after[2] - before[2]
    key_reports_per_s = offered * REPORT_KEYS
    return {
        "proxies": proxies,
        "reports_per_s": round(len(latencies) / SECONDS, 1),
        "offered_per_s": round(offered, 1),
        "failed": failures,
        "control_cpu_percent": percent(control),
        "postgres_cpu_percent": percent(postgres),
        "control_cpu_percent_per_100_proxies": round(percent(control) * 100 / proxies, 2),
        "postgres_cpu_percent_per_100_proxies": round(percent(postgres) * 100 / proxies, 2),
        "postgres_cpu_ms_per_1000_key_reports": round(
            10 * percent(postgres) / key_reports_per_s * 1000, 2),
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
        "max_ms": quantile(1.0),
    }


def main():
    work = Path(tempfile.mkdtemp(prefix="keygate-bench-usage-"))
    cluster = PostgresCluster(work / "postgres", durable=True).init()
    cluster.start()
    results = {"keys": KEYS, "report_keys": REPORT_KEYS, "shared_keys": SHARED,
               "interval_s": INTERVAL, "seconds": SECONDS, "replicas": REPLICAS,
               "cores": os.cpu_count(), "runs": []}
    try:
        for proxies, identity in [(p, i) for p in PROXY_COUNTS for i in IDENTITIES]:
            database = cluster.new_database(f"usage_{proxies}_{identity}")
            log(f"seeding {KEYS} keys")
            seed(database, KEYS)
            name = database.rsplit("/", 1)[1]
            key_ids = [row[0] for row in cluster.psql(name, "SELECT id FROM keys ORDER BY id")]
            services = []
            try:
                for n in range(REPLICAS):
                    services.append(ControlService(
                        database, work / f"usage-{proxies}-{identity}-{n}.log", start_timeout=START_SECONDS,
                        extra_env={"KEYGATE_ENROLLMENT_TOKEN": ENROLLMENT_TOKEN,
                                   "KEYGATE_ENROLLMENTS_PER_MINUTE": "100000"}).start())
                urls = [service.url() for service in services]
                bearers = enroll(urls, proxies) if identity == "credential" else [SYNC_TOKEN] * proxies
                log(f"{proxies} proxies ({identity}) x {REPORT_KEYS} keys, a report every {INTERVAL:g} s, "
                    f"{SECONDS:.0f} s")
                result = measure(urls, proxies, key_ids, [service.proc.pid for service in services],
                                 lambda: postgres_pids(cluster), bearers)
                result["identity"] = identity
                rows = cluster.psql(name, "SELECT COUNT(*) FROM usage_hourly")
                result["usage_hourly_rows"] = int(rows[0][0])
            finally:
                for service in services:
                    service.stop()
            results["runs"].append(result)
            print(json.dumps(result), flush=True)
    finally:
        cluster.destroy()
    log(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
