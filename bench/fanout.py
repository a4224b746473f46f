"""Revocations and snapshots to thousands of proxies (docs/benchmarks.md, "Revocation fan-out and
restart herd"; issue 24). `make bench-fanout`.

Two control replicas on one PostgreSQL (a throwaway cluster, keygate_testkit.postgres, fsync on)
holding BENCH_HERD_KEYS (100,000) keys made by `keygate-control seed`. The simulated proxies are
the Rust binary bench/fanout (keygate-bench-fanout: one HTTP/1.1 connection per proxy, dealt
round-robin to the replicas), which prints one JSON result a run:

- **fan-out**, for each size in BENCH_PROXIES (1000,5000,10000): every proxy holds
  `GET /v1/snapshot?since=V&epoch=E&wait=30&limit=10000` as the filter does (compact encoding,
  If-None-Match); then BENCH_REVOCATIONS (5) times, once all polls are held, one
  `PATCH /v1/keys/{id}` `{"active": false}` (alternately on each replica), timed from sending it
  to each proxy holding a delta whose record of that key is inactive; each proxy re-polls with the
  new version at once. Also each replica's CPU seconds over the revocations and its delta pages
  built per revocation (`GET /v1/snapshot/polls`: one per version, not one per poll).
- **restart herd**: BENCH_HERD_PROXIES (1000) proxies start evenly within one second, each on a
  new connection, and page through the full snapshot with `cursor` (page size 10,000, the
  filter's default). Time per proxy and to the last one holding every key, each replica's peak
  RSS during the herd (VmHWM, reset through /proc/PID/clear_refs once the replicas have built
  their full snapshot) and its cached full snapshot's bytes.

Each replica runs with `--max-connections` BENCH_MAX_CONNECTIONS (8192; with the default, 4096
per listener, each replica of a 10,000-proxy fleet would refuse 904 of its 5,000). One JSON line
per run on stdout."""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from keygate_testkit.control import ControlService, seed
from keygate_testkit.paths import ADMIN_TOKEN, ROOT, SYNC_TOKEN
from keygate_testkit.postgres import PostgresCluster

PROXIES = [int(n) for n in os.environ.get("BENCH_PROXIES", "1000,5000,10000").split(",")]
HERD_KEYS = int(os.environ.get("BENCH_HERD_KEYS", "100000"))
HERD_PROXIES = int(os.environ.get("BENCH_HERD_PROXIES", "1000"))
REVOCATIONS = int(os.environ.get("BENCH_REVOCATIONS", "5"))
MAX_CONNECTIONS = int(os.environ.get("BENCH_MAX_CONNECTIONS", "8192"))
BINARY = Path(os.environ.get("BENCH_FANOUT_BIN", ROOT / "target/release/keygate-bench-fanout"))
REPLICAS = 2
START_SECONDS = 60
WARM_SECONDS = 300


def log(message):
    print(message, file=sys.stderr, flush=True)


def proc_status_mb(pid, field):
    """A `/proc/PID/status` memory field (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def reset_peak_rss(services):
    """Starts each replica's VmHWM afresh (`5` to /proc/PID/clear_refs), so the peak is this run's,
    not the start-up snapshot build's; False where the kernel refuses."""
    try:
        for service in services:
            Path(f"/proc/{service.proc.pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def raise_open_files(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if needed > hard:
        sys.exit(f"{needed} connections need more open files than this process may have ({hard}): "
                 "raise `ulimit -n` or lower BENCH_PROXIES")


def start_replicas(database, work, label):
    return [ControlService(database, work / f"{label}-{n}.log", start_timeout=START_SECONDS,
                           extra_args=["--max-connections", str(MAX_CONNECTIONS)]).start()
            for n in range(REPLICAS)]


def counters(service):
    response = requests.get(service.url("/v1/snapshot/polls"),
                            headers={"Authorization": f"Bearer {SYNC_TOKEN}"}, timeout=10)
    response.raise_for_status()
    return response.json()


def run_binary(mode, services, *args):
    """Runs keygate-bench-fanout; its JSON report."""
    env = dict(os.environ, KEYGATE_SYNC_TOKEN=SYNC_TOKEN, KEYGATE_ADMIN_TOKEN=ADMIN_TOKEN)
    argv = [str(BINARY), mode, "--urls", ",".join(service.url() for service in services),
            "--pids", ",".join(str(service.proc.pid) for service in services),
            "--ticks", str(os.sysconf("SC_CLK_TCK")), *map(str, args)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"keygate-bench-fanout {mode} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def fanout(database, work, proxies):
    services = start_replicas(database, work, f"fanout-{proxies}")
    try:
        ids = [services[0].create_key(name=f"fanout-{proxies}-{n}")["id"] for n in range(REVOCATIONS)]
        reset = reset_peak_rss(services)
        result = run_binary("fanout", services, "--proxies", proxies, "--revoke", ",".join(ids))
        result["replica_rss_peak_mb"] = [proc_status_mb(service.proc.pid, "VmHWM") for service in services]
        result["replica_rss_peak_since"] = "fleet start" if reset else "replica start"
        return {"run": "fanout", **result}
    finally:
        for service in services:
            service.stop()


def herd(database, work):
    services = start_replicas(database, work, "herd")
    try:
        # A replica builds the full snapshot at start when it holds more than one page of keys.
        deadline = time.monotonic() + WARM_SECONDS
        while HERD_KEYS > 10_000 and not all(counters(s)["full_snapshot_bytes"] for s in services):
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas did not build their full snapshot in time")
            time.sleep(0.2)
        rss_before = [proc_status_mb(service.proc.pid, "VmRSS") for service in services]
        reset = reset_peak_rss(services)
        result = run_binary("herd", services, "--proxies", HERD_PROXIES)
        result.update(
            replica_rss_before_mb=rss_before,
            replica_rss_peak_mb=[proc_status_mb(service.proc.pid, "VmHWM") for service in services],
            replica_rss_peak_since="herd start" if reset else "replica start",
            replica_rss_after_mb=[proc_status_mb(service.proc.pid, "VmRSS") for service in services],
            full_snapshot_mb=[round(counters(service)["full_snapshot_bytes"] / 1e6, 1)
                              for service in services])
        return {"run": "herd", **result}
    finally:
        for service in services:
            service.stop()


def main():
    if not BINARY.is_file():
        sys.exit(f"{BINARY} not found: cargo build --release -p keygate-bench-fanout")
    raise_open_files(max(PROXIES + [HERD_PROXIES]) + 1000)
    work = Path(tempfile.mkdtemp(prefix="keygate-bench-fanout-"))
    cluster = PostgresCluster(work / "postgres", durable=True).init()
    cluster.start()
    results = {"cores": os.cpu_count(), "herd_keys": HERD_KEYS, "revocations": REVOCATIONS,
               "max_connections": MAX_CONNECTIONS, "runs": []}
    try:
        database = cluster.new_database("fanout")
        log(f"seeding {HERD_KEYS} keys")
        results["seed_s"] = round(seed(database, HERD_KEYS), 1)
        for proxies in PROXIES:
            log(f"fan-out: {proxies} proxies on {REPLICAS} replicas, {REVOCATIONS} revocations")
            result = fanout(database, work, proxies)
            results["runs"].append(result)
            print(json.dumps(result), flush=True)
        if HERD_PROXIES > 0:
            log(f"restart herd: {HERD_PROXIES} proxies loading {HERD_KEYS} keys within one second")
            result = herd(database, work)
            results["runs"].append(result)
            print(json.dumps(result), flush=True)
    finally:
        cluster.destroy()
    log(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
