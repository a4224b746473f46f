"""What fleet-wide rate limits cost the control service (docs/benchmarks.md, "Fleet rate-limit
sync"): BENCH_ENVOYS (50; a list, `50,200,500`, runs each size) simulated Envoys, each with BENCH_KEYS (1,000) active limited keys
(BENCH_SHARED of them, 100, shared by every Envoy; the rest its own), each posting
`POST /v1/ratelimits/sync` once a second for BENCH_SECONDS (30) after a 5 s warm-up, against a
control service on SQLite (counts in memory), on PostgreSQL (counts in the database;
keygate_testkit.postgres, fsync on), and `ha`: two replicas on PostgreSQL sharing their counts
through Redis (keygate_testkit.redis), each simulated Envoy syncing with one of them (as over a
kept-alive connection; BENCH_ROUTING=alternate sends each sync to the other replica).
`make bench-fleet-sync`; BENCH_BACKENDS=ha (or sqlite,postgres,ha) picks them.

Each post is what the filter sends: every key it admitted requests of since the last sync,
absolute counts, the newest bucket growing. The first post, one a minute after it and one after
a 409 carry every bucket still in the window (as after a minute of steady traffic: 30 two-second
minute buckets, the hour and day buckets); the others only the buckets that can have changed
since the last answered sync (`keygate-sync-buckets: changed`: the two newest minute buckets,
the hour's and the day's). BENCH_POSTS=every_bucket sends every bucket each time (the filter
before it sent changed buckets only). Some of each
Envoy's own keys (BENCH_HOT, 10) run near their limit, so every answer also carries the fleet's
hot keys. Reported as JSON, one line per backend and fleet size: the control service's CPU (% of one core,
from /proc/<pid>/stat; both replicas summed for `ha`), the database's and Redis's, each also per
100 Envoys, the simulated Envoys' own (`clients_cpu_percent`: they share the cores), and the
sync call's latency (p50, p99, max) as the clients saw it.

The Envoys are simulated by the Rust client `keygate-bench-fanout sync` (BENCH_CLIENT=rust, the
default: one connection per Envoy, bodies built with the contract's own encoder, a few percent
of a core for 500 Envoys), or by BENCH_CLIENT_PROCESSES (5) Python processes of threads
(BENCH_CLIENT=python: bodies from cached fragments; they took ~60 % of a core at 500 Envoys,
a third of what the 2 cores had for the plane they measure). They post and
ask for the compact binary encoding, as the filter does (BENCH_ENCODING=binary, the default;
`json` for the JSON one; keygate_testkit.fleet_binary)."""

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from queue import Empty

import requests

from keygate_testkit import fleet_binary
from keygate_testkit.control import ControlService
from keygate_testkit.paths import SYNC_TOKEN
from keygate_testkit.postgres import PostgresCluster
from keygate_testkit.redis import RedisServer

ENVOY_COUNTS = [int(n) for n in os.environ.get("BENCH_ENVOYS", "50").split(",")]
ROUTING = os.environ.get("BENCH_ROUTING", "sticky")
KEYS = int(os.environ.get("BENCH_KEYS", "1000"))
SHARED = int(os.environ.get("BENCH_SHARED", "100"))
HOT = int(os.environ.get("BENCH_HOT", "10"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
WARMUP = 5.0
PROCESSES = int(os.environ.get("BENCH_CLIENT_PROCESSES", "5"))
BACKENDS = os.environ.get("BENCH_BACKENDS", "sqlite,postgres,ha").split(",")
ENCODING = os.environ.get("BENCH_ENCODING", "binary")
POSTS = os.environ.get("BENCH_POSTS", "changed")
if POSTS not in ("changed", "every_bucket"):
    sys.exit(f"BENCH_POSTS must be changed or every_bucket, not {POSTS!r}")
FULL_POST_EVERY_S = 60
CLIENT = os.environ.get("BENCH_CLIENT", "rust")
if CLIENT not in ("rust", "python"):
    sys.exit(f"BENCH_CLIENT must be rust or python, not {CLIENT!r}")
FANOUT_BIN = Path(os.environ.get("BENCH_FANOUT_BIN",
                                 Path(__file__).resolve().parent.parent
                                 / "target/release/keygate-bench-fanout"))
if ENCODING not in ("binary", "json"):
    sys.exit(f"BENCH_ENCODING must be binary or json, not {ENCODING!r}")
BUCKET_MS = [2_000, 120_000, 3_600_000]
WINDOW_MS = [60_000, 3_600_000, 86_400_000]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_SECONDS = 60


def log(message):
    print(message, file=sys.stderr, flush=True)


def cpu_ticks(pids):
    """utime + stime of `pids` (processes that are gone count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def postgres_pids(cluster):
    """The postmaster and its children (the backends serving the replicas)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == postmaster:
                pids.append(int(entry.name))
    return pids


class SimulatedEnvoy:
    """One simulated Envoy: its keys, their counts per bucket, and the post it would send."""

    def __init__(self, index, shared_tags):
        self.proxy = f"bench-envoy-{index:03d}-{uuid.uuid4().hex[:6]}"
        own = [uuid.uuid4().hex for _ in range(KEYS - len(shared_tags))]
        # (tag, limits JSON): shared keys and a few of its own run near their limit (hot); the
        # rest have room.
        self.keys = ([(tag, "[3000,null,null]") for tag in shared_tags]
                     + [(tag, "[90,null,null]") for tag in own[:HOT]]
                     + [(tag, "[100000,null,null]") for tag in own[HOT:]])
        self.history_for = None
        self.history = ""
        self.heads = [fleet_binary.key_head(tag, json.loads(limits)) for tag, limits in self.keys]

    def body(self, now_ms, every_bucket=True):
        """The post at `now_ms`: 30 minute buckets (1 to 3 admitted each, the newest still
        growing; only the two newest unless `every_bucket`), the hour's and the day's bucket."""
        if ENCODING == "binary":
            return self.binary_body(now_ms, every_bucket)
        minute, hour, day = (now_ms // width for width in BUCKET_MS)
        oldest = minute - 29 if every_bucket else minute - 1
        if self.history_for != (minute, oldest):
            self.history_for = (minute, oldest)
            self.history = "".join(f"[{bucket},{1 + bucket % 3}]," for bucket in range(oldest, minute))
        newest = 1 + (now_ms % BUCKET_MS[0]) // 500
        total = 60 + newest
        tail = f"[{minute},{newest}]],[[{hour},{total}]],[[{day},{total}]]]}}"
        keys = ",".join(f'{{"key":"{tag}","limits":{limits},"counts":[[{self.history}{tail}'
                        for tag, limits in self.keys)
        return (f'{{"proxy_id":"{self.proxy}","bucket_ms":{json.dumps(BUCKET_MS)},'
                f'"window_ms":{json.dumps(WINDOW_MS)},"keys":[{keys}]}}').encode()

    def binary_body(self, now_ms, every_bucket):
        """`body` in the binary encoding: every key's windows are the same bytes, so they are
        built once per post (the minute history once per minute) behind each key's cached head."""
        minute, hour, day = (now_ms // width for width in BUCKET_MS)
        oldest = minute - 29 if every_bucket else minute - 1
        if self.history_for != (minute, oldest):
            self.history_for = (minute, oldest)
            self.history = fleet_binary.pairs(
                [(bucket, 1 + bucket % 3) for bucket in range(oldest, minute)])
        newest = 1 + (now_ms % BUCKET_MS[0]) // 500
        total = 60 + newest
        windows = (fleet_binary.varint(minute - oldest + 1) + self.history
                   + fleet_binary.pairs([(minute, newest)], previous=minute - 1)
                   + fleet_binary.window([(hour, total)]) + fleet_binary.window([(day, total)]))
        head = fleet_binary.post_head(self.proxy, BUCKET_MS, WINDOW_MS, len(self.heads))
        # head, then each key's head followed by the shared windows, in one C-level join.
        return head + windows.join(self.heads) + windows


def run_envoy(urls, index, envoy, start_at, stop_at, offset, results):
    sessions = [requests.Session() for _ in urls]
    headers = {"Authorization": f"Bearer {SYNC_TOKEN}", "Content-Type": "application/json"}
    if ENCODING == "binary":
        headers.update({"Content-Type": fleet_binary.MEDIA_TYPE,
                        "Accept": fleet_binary.FILTER_ACCEPT})
    changed_headers = dict(headers, **{"keygate-sync-buckets": "changed"})
    tick = start_at + offset
    latencies, failures, answered = [], 0, []
    sent = 0
    full_at = None
    while tick < stop_at:
        # Like the filter: one sync in flight; a slow one delays the next to the next tick.
        tick = max(tick, start_at + offset + int(time.time() - start_at - offset + 0.999))
        if tick >= stop_at:
            break
        delay = tick - time.time()
        if delay > 0:
            time.sleep(delay)
        began = time.monotonic()
        every_bucket = POSTS == "every_bucket" or full_at is None or began - full_at >= FULL_POST_EVERY_S
        ok = False
        for _ in range(2):  # a 409 asks for every bucket, posted at once
            replica = (index + (sent if ROUTING == "alternate" else 0)) % len(urls)
            sent += 1
            body = envoy.body(int(time.time() * 1000), every_bucket)
            try:
                response = sessions[replica].post(
                    f"{urls[replica]}/v1/ratelimits/sync", data=body,
                    headers=headers if every_bucket else changed_headers, timeout=20)
            except requests.RequestException:
                break
            if response.status_code == 409 and not every_bucket:
                every_bucket = True
                continue
            ok = response.status_code == 200
            break
        if ok and every_bucket:
            full_at = began
        took = time.monotonic() - began
        if ok and tick >= start_at + WARMUP:
            latencies.append(took)
            if len(latencies) % 10 == 1:
                answered.append(fleet_binary.count_reply_keys(response.content)
                                if ENCODING == "binary" else len(response.json()["keys"]))
        elif not ok and tick >= start_at + WARMUP:
            failures += 1
        tick += 1.0
    results.append((latencies, failures, answered))


def client_process(urls, envoys, indexes, shared_tags, start_at, stop_at, queue):
    results = []
    threads = [threading.Thread(target=run_envoy,
                                args=(urls, index, SimulatedEnvoy(index, shared_tags), start_at,
                                      stop_at, index / envoys, results))
               for index in indexes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(results)


def gather(processes, queue):
    """What each client process put on `queue`, then the processes stopped. The last calls in
    flight are each bounded by their timeout, so two minutes is plenty; a process that has not
    reported by then is left out (and said so)."""
    results = []
    deadline = time.monotonic() + 120
    for _ in processes:
        try:
            results.append(queue.get(timeout=max(1.0, deadline - time.monotonic())))
        except Empty:
            log("a client process did not report in time; its simulated proxies are left out")
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
    return results


def measure(urls, envoys, service_pids, database_pids, redis_pids):
    shared_tags = [uuid.uuid4().hex for _ in range(SHARED)]
    start_at = time.time() + 2 + envoys / 100  # the clients build their Envoys first
    stop_at = start_at + WARMUP + SECONDS
    queue = multiprocessing.Queue()
    if CLIENT == "rust":
        if ENCODING != "binary" or POSTS != "changed":
            sys.exit("BENCH_CLIENT=rust posts binary, changed buckets only: use BENCH_CLIENT=python")
        argv = [str(FANOUT_BIN), "sync", "--urls", ",".join(urls), "--envoys", str(envoys),
                "--keys", str(KEYS), "--shared", str(SHARED), "--hot", str(HOT),
                "--salt", uuid.uuid4().hex[:12], "--routing", ROUTING,
                "--start-ms", str(int(start_at * 1000)), "--warmup-ms", str(int(WARMUP * 1000)),
                "--seconds", str(int(SECONDS))]
        rust = subprocess.Popen(argv, env=dict(os.environ, KEYGATE_SYNC_TOKEN=SYNC_TOKEN),
                                stdout=subprocess.PIPE, text=True)
        processes = []
    else:
        processes = [multiprocessing.Process(target=client_process,
                                             args=(urls, envoys, list(range(n, envoys, PROCESSES)),
                                                   shared_tags, start_at, stop_at, queue))
                     for n in range(PROCESSES)]
    for process in processes:
        process.start()
    time.sleep(max(0.0, start_at + WARMUP - time.time()))
    pids = database_pids()
    clients = [rust.pid] if CLIENT == "rust" else [process.pid for process in processes]
    before = (time.monotonic(), cpu_ticks(service_pids), cpu_ticks(pids), cpu_ticks(redis_pids),
              cpu_ticks(clients))
    time.sleep(max(0.0, stop_at - time.time()))
    after = (time.monotonic(), cpu_ticks(service_pids), cpu_ticks(pids), cpu_ticks(redis_pids),
             cpu_ticks(clients))
    elapsed = after[0] - before[0]
    if CLIENT == "rust":
        out, _ = rust.communicate(timeout=120)
        if rust.returncode != 0:
            sys.exit(f"keygate-bench-fanout sync failed ({rust.returncode})")
        report = json.loads(out)
        syncs, failures = report["syncs"], report["failed"]
        quantiles = {name: report[name] for name in ("p50_ms", "p99_ms", "max_ms")}
        answered_median = report["keys_answered_median"]
    else:
        results = gather(processes, queue)
        latencies = sorted(latency for chunk in results for run in chunk for latency in run[0])
        failures = sum(run[1] for chunk in results for run in chunk)
        answered = sorted(count for chunk in results for run in chunk for count in run[2])
        syncs = len(latencies)

        def quantile(q):
            if not latencies:
                return None
            return round(latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000, 1)

        quantiles = {"p50_ms": quantile(0.5), "p99_ms": quantile(0.99), "max_ms": quantile(1.0)}
        answered_median = answered[len(answered) // 2] if answered else 0

    def percent(ticks):
        return round(100 * ticks / CLOCK_TICKS / elapsed, 1)

    def per_100(ticks):
        return round(percent(ticks) * 100 / envoys, 1)

    cpu = {"control_cpu_percent": percent(after[1] - before[1]),
           "control_cpu_percent_per_100_envoys": per_100(after[1] - before[1])}
    if pids:
        cpu.update(postgres_cpu_percent=percent(after[2] - before[2]),
                   postgres_cpu_percent_per_100_envoys=per_100(after[2] - before[2]))
    if redis_pids:
        cpu.update(redis_cpu_percent=percent(after[3] - before[3]),
                   redis_cpu_percent_per_100_envoys=per_100(after[3] - before[3]))
    # What the simulated Envoys took of the same cores (the machine's limit at large fleets).
    cpu.update(clients_cpu_percent=percent(after[4] - before[4]))
    return {
        "envoys": envoys,
        "client": CLIENT,
        "syncs": syncs,
        "syncs_per_s": round(syncs / SECONDS, 1),
        "offered_per_s": envoys,
        "failed": failures,
        **cpu,
        **quantiles,
        "keys_answered_median": answered_median,
    }


def run_backend(label, work, cluster, envoys):
    """One backend at one fleet size: its services started afresh, measured, stopped."""
    services, redis_server = [], None
    try:
        if label == "sqlite":
            database = work / f"keygate-{envoys}.db"
            services.append(ControlService(database, work / f"{label}-{envoys}.log",
                                           start_timeout=START_SECONDS).start())
        else:
            database = cluster.new_database(f"fleet_{label}_{envoys}")
            extra = []
            if label == "ha":
                redis_server = RedisServer(work / f"redis-{envoys}").start()
                extra = ["--redis-url", redis_server.url]
            for n in range(2 if label == "ha" else 1):
                services.append(ControlService(database, work / f"{label}-{envoys}-{n}.log",
                                               extra_args=extra, start_timeout=START_SECONDS).start())
        database_pids = (lambda: postgres_pids(cluster)) if label != "sqlite" else list
        redis_pids = [redis_server.proc.pid] if redis_server else []
        result = measure([service.url() for service in services], envoys,
                         [service.proc.pid for service in services], database_pids, redis_pids)
        if label == "postgres":
            name = database.rsplit("/", 1)[1]
            rows = cluster.psql(name, "SELECT COUNT(*) FROM fleet_counts")
            result["fleet_count_rows"] = int(rows[0][0])
        if redis_server:
            memory = redis_server.command("INFO", "memory")
            used = next(line for line in memory.splitlines() if line.startswith("used_memory:"))
            result["redis_used_mb"] = round(int(used.split(":")[1]) / 2**20, 1)
            result["published_keys"] = [metric(service, "keygate_control_fleet_published_keys")
                                        for service in services]
        return result
    finally:
        for service in services:
            service.stop()
        if redis_server:
            redis_server.close()


def metric(service, name):
    for line in requests.get(service.url("/metrics"), timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main():
    work = Path(tempfile.mkdtemp(prefix="keygate-bench-fleet-"))
    cluster = PostgresCluster(work / "postgres", durable=True).init()
    cluster.start()
    sample = SimulatedEnvoy(0, [uuid.uuid4().hex for _ in range(SHARED)]).body(int(time.time() * 1000))
    results = {"keys_per_envoy": KEYS, "shared_keys": SHARED, "hot_keys_per_envoy": HOT,
               "seconds": SECONDS, "cores": os.cpu_count(), "routing": ROUTING,
               "encoding": ENCODING, "post_kb": round(len(sample) / 1024), "runs": []}
    try:
        for label in BACKENDS:
            for envoys in ENVOY_COUNTS:
                log(f"{label}: {envoys} Envoys x {KEYS} keys, one sync a second each, {SECONDS:.0f} s")
                result = {"backend": label, "posts": POSTS, **run_backend(label, work, cluster, envoys)}
                results["runs"].append(result)
                print(json.dumps(result), flush=True)
    finally:
        cluster.destroy()
    log(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
