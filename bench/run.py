#!/usr/bin/env python3
"""`make bench`: Keygate against bare Envoy, Envoy's native api_key_auth and ext_authz.

One Envoy binary, one --concurrency, one upstream (an Envoy `direct_response`, so the upstream
costs nothing), one load generator (wrk with bench/report.lua). Every Envoy in the comparison is
started once and kept running; the load runs are interleaved over BENCH_ROUNDS rounds and the
medians are reported. Then: snapshot size and load time, propagation of a change, revocation
latency under load (long polling and plain polling), and Envoy memory at 1 and 4 workers.

Writes target/bench/results.json, target/bench/results.png and the generated part of
docs/benchmarks.md. Loopback only; every wait and every load run is bounded.

Environment (defaults in brackets; BENCH_QUICK=1 picks small ones for a ~1-minute smoke run):
  BENCH_ROUNDS [3]  BENCH_DURATION seconds per run [8]  BENCH_WARMUP seconds [1]
  BENCH_CONNECTIONS [32]  BENCH_WRK_THREADS [1]  BENCH_CONCURRENCY Envoy workers [2]
  BENCH_SIZES Keygate key counts [1000,100000,1000000]  BENCH_NATIVE_SIZES [1000,100000]
  BENCH_EXTAUTHZ_SIZE [100000]  BENCH_REVOKE_TRIES [5]  BENCH_PLAIN_REFRESH [2s]
  BENCH_MEMORY_SIZES [100000,1000000]  BENCH_DOCS [docs/benchmarks.md; "" to skip]
  BENCH_RL_MEMORY_KEYS distinct limited keys sending one request each [1000000; 0 skips]
"""
import datetime
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

import ratelimit_memory
import store_churn
from keygate_testkit.control import ControlService, seed
from keygate_testkit.envoy import EnvoyProcess
from keygate_testkit.paths import CONTROL_BIN, ENVOY_BIN, NATIVE_DIR as KEYGATE_NATIVE_DIR, ROOT, SYNC_TOKEN
from keygate_testkit.paths import WASM as KEYGATE_WASM
from keygate_testkit.ports import free_port
from keygate_testkit.processes import Program
from keygate_testkit.waiting import wait_until

# Binaries: the kit's (KEYGATE_ENVOY, KEYGATE_WASM, KEYGATE_CONTROL_BIN) and the bench's own;
# main() replaces them with private copies.
ENVOY = ENVOY_BIN
WASM = KEYGATE_WASM
# The native build's directory (libkeygate.so; KEYGATE_NATIVE_DIR), and the empty dynamic module
# (bench/noop-native) the bench puts beside it as libnoop.so.
NATIVE_DIR = KEYGATE_NATIVE_DIR
NOOP_NATIVE = Path(os.environ.get("BENCH_NOOP_NATIVE", ROOT / "target/release/libkeygate_bench_noop_native.so")).resolve()
CONTROL = CONTROL_BIN
NOOP_WASM = Path(os.environ.get("BENCH_NOOP_WASM", ROOT / "target/wasm32-wasip1/release/keygate_bench_noop.wasm")).resolve()
AUTHZ = Path(os.environ.get("BENCH_AUTHZ_BIN", ROOT / "target/release/keygate-bench-authz")).resolve()
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "target/bench")).resolve()
LUA = ROOT / "bench/report.lua"
PATH = "/v1/models"
INVALID_KEY = "pk_live_" + "Z" * 40
NEVER_REACHED = 1_000_000_000


def env_list(name, default):
    return [int(v) for v in os.environ.get(name, default).split(",") if v.strip()]


QUICK = os.environ.get("BENCH_QUICK") == "1"
SETTINGS = {
    "rounds": int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3")),
    "duration_s": int(os.environ.get("BENCH_DURATION", "3" if QUICK else "8")),
    "warmup_s": int(os.environ.get("BENCH_WARMUP", "1")),
    "connections": int(os.environ.get("BENCH_CONNECTIONS", "32")),
    "wrk_threads": int(os.environ.get("BENCH_WRK_THREADS", "1")),
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "2")),
    "sizes": env_list("BENCH_SIZES", "1000,10000" if QUICK else "1000,100000,1000000"),
    "native_sizes": env_list("BENCH_NATIVE_SIZES", "1000,10000" if QUICK else "1000,100000"),
    "extauthz_size": int(os.environ.get("BENCH_EXTAUTHZ_SIZE", "10000" if QUICK else "100000")),
    "revoke_tries": int(os.environ.get("BENCH_REVOKE_TRIES", "2" if QUICK else "5")),
    "plain_refresh": os.environ.get("BENCH_PLAIN_REFRESH", "2s"),
    "memory_sizes": env_list("BENCH_MEMORY_SIZES", "10000" if QUICK else "100000,1000000"),
    # bench/store_churn.py: rotations of this many keys in deltas of churn_round, then a reload.
    "churn_keys": int(os.environ.get("BENCH_CHURN_KEYS", "10000" if QUICK else "1000000")),
    "churn_round": int(os.environ.get("BENCH_CHURN_ROUND", "5000")),
    "ratelimit_memory_keys": int(os.environ.get("BENCH_RL_MEMORY_KEYS", "10000" if QUICK else "1000000")),
    "quiet_wait_s": float(os.environ.get("BENCH_QUIET_WAIT", "5")),
    "unloaded_s": int(os.environ.get("BENCH_UNLOADED_DURATION", "2" if QUICK else "5")),
    # Fleet-wide limits: 3 Envoys, round-robin, a key limited to FLEET_LIMIT per FLEET_WINDOW
    # offered FLEET_RATE requests a second for FLEET_SECONDS (600/min at 3,000/min for 3 min).
    "fleet_seconds": int(os.environ.get("BENCH_FLEET_SECONDS", "30" if QUICK else "180")),
    "fleet_window_s": int(os.environ.get("BENCH_FLEET_WINDOW", "10" if QUICK else "60")),
    "fleet_limit": int(os.environ.get("BENCH_FLEET_LIMIT", "100" if QUICK else "600")),
    "fleet_rate": float(os.environ.get("BENCH_FLEET_RATE", "50")),
}
DOCS = os.environ.get("BENCH_DOCS", str(ROOT / "docs/benchmarks.md"))


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def label(n):
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))


def parse_duration_s(text):
    for unit, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * factor
    raise ValueError(text)


class Processes:
    """Every part the bench starts (the kit's launchers: anything with `proc` and `close()`),
    stopped in reverse order at the end (or on error)."""

    def __init__(self):
        self.parts = []

    def add(self, part):
        self.parts.append(part)
        return part

    def stop(self, part):
        if part in self.parts:
            self.parts.remove(part)
            part.close()

    def stop_all(self):
        for part in reversed(self.parts):
            part.close()
        self.parts = []


PROCS = Processes()


class KeySet:
    """N keys seeded into a fresh control-service database, and the control service serving it."""

    def __init__(self, count, work):
        self.count = count
        self.dir = work / f"keys-{count}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "keygate.db"
        self.secrets_path = self.dir / "secrets.txt"
        self.seed_s = seed(self.db, count, secrets_out=self.secrets_path, binary=CONTROL, timeout=600)
        self.secrets = self.secrets_path.read_text().split()
        self.service = PROCS.add(ControlService(self.db, self.dir / "control.log", binary=CONTROL,
                                                start_timeout=30).start())
        self.port = self.service.port
        self.ids = {}  # secret index -> key id, for the first 1000 keys (seed names them seed-<index>)
        listed = self.admin("GET", "/v1/keys?limit=1000").json()["keys"]
        for record in listed:
            if record["name"].startswith("seed-"):
                self.ids[int(record["name"][5:])] = record["id"]
        # The load key gets the plan without limits: the runs measure the authentication path,
        # not thousands of 429s from the seeded free plan's 60 requests a minute.
        self.admin("PATCH", f"/v1/keys/{self.ids[0]}", json={"plan": "enterprise"}).raise_for_status()
        # A second key with limits in every window, too high ever to refuse: what counting (the
        # slot read and CAS write, the headers) costs next to the unlimited key.
        self.admin("PATCH", f"/v1/keys/{self.ids[1]}", json={
            "plan": "enterprise", "limits": {"per_minute": NEVER_REACHED, "per_hour": NEVER_REACHED,
                                             "per_day": NEVER_REACHED}}).raise_for_status()
        self.limited_secret = self.secrets[1]
        self.warm()
        log(f"seeded {count} keys in {self.seed_s:.1f}s; control service on :{self.port}")

    def warm(self):
        """Waits for the full snapshot the control service builds when it starts (a service
        that has been running has it): load times then measure Envoy, not a cold start of the
        control service, which docs/control-api.md measures on its own. One first page in the
        filter's encoding is answered once the build is done (a few seconds for 1M keys)."""
        started = time.monotonic()
        wait_until(lambda: requests.get(self.url("/v1/snapshot?limit=1"), timeout=60, headers={
            "Authorization": f"Bearer {SYNC_TOKEN}", "Accept": "application/vnd.keygate.snapshot+binary",
        }).status_code == 200, timeout=120, interval=0.5, what="the control service's full snapshot")
        self.warm_s = time.monotonic() - started

    def url(self, path):
        return self.service.url(path)

    def admin(self, method, path, **kwargs):
        return self.service.admin(method, path, **kwargs)

    def snapshot_bytes(self, page_size):
        """Bytes of JSON in a full snapshot fetched the way the filter fetches it."""
        total, cursor, pages = 0, None, 0
        while pages < 10_000:
            query = f"/v1/snapshot?limit={page_size}" + (f"&cursor={cursor}" if cursor else "")
            response = requests.get(self.url(query), headers={"Authorization": f"Bearer {SYNC_TOKEN}"}, timeout=60)
            total += len(response.content)
            pages += 1
            cursor = response.json().get("next_cursor")
            if not cursor:
                return total, pages
        raise RuntimeError("snapshot paging did not end")


def shipped():
    """The shipped envoy/envoy.yaml, parsed: the connection manager and the Keygate filter."""
    config = yaml.safe_load((ROOT / "envoy/envoy.yaml").read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    keygate = next(f for f in hcm["http_filters"] if f["name"] == "keygate")
    return hcm, keygate


def on_sync_token(plugin, control_overrides=None):
    """A shipped plugin configuration on the shared sync token rather than the shipped
    enrollment: a configuration every build reads (A/B benches run builds from before proxy
    identity), and the request path is the same either way. Then `control_overrides`."""
    plugin["control"].pop("enrollment_token_env", None)
    plugin["control"]["token_env"] = "KEYGATE_SYNC_TOKEN"
    plugin["control"].update(control_overrides or {})
    return plugin


def keygate_filter(control_overrides=None, plugin_overrides=None, dropped=()):
    """The shipped filter, `dropped` plugin keys left out (for a build that predates them)."""
    _, filter_config = shipped()
    filter_config = json.loads(json.dumps(filter_config))
    wasm = filter_config["typed_config"]["config"]
    wasm["vm_config"]["code"]["local"]["filename"] = str(WASM)
    plugin = on_sync_token(json.loads(wasm["configuration"]["value"]), control_overrides)
    wasm["vm_config"]["environment_variables"] = {"host_env_keys": ["KEYGATE_SYNC_TOKEN"]}
    plugin.update(plugin_overrides or {})
    for key in dropped:
        plugin.pop(key, None)
    wasm["configuration"]["value"] = json.dumps(plugin)
    return filter_config


def keygate_native_filter(control_port, control_overrides=None):
    """The shipped native filter (envoy/envoy-native.yaml), on the shared sync token
    (`on_sync_token`), calling the control service at `control_port`."""
    config = yaml.safe_load((ROOT / "envoy/envoy-native.yaml").read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filter_config = next(f for f in hcm["http_filters"] if f["name"] == "keygate")
    module = filter_config["typed_config"]["filter_config"]
    plugin = on_sync_token(json.loads(module["value"]),
                           {"url": f"http://127.0.0.1:{control_port}", **(control_overrides or {})})
    module["value"] = json.dumps(plugin)
    return filter_config


def noop_native_filter():
    """Loaded like Keygate's native build, a dynamic module that does nothing."""
    return {
        "name": "noop",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {"name": "noop", "do_not_close": True},
            "filter_name": "noop",
        },
    }


def noop_wasm_filter():
    """Loaded like Keygate (same runtime and VM settings), a Wasm filter that does nothing."""
    filter_config = keygate_filter()
    wasm = filter_config["typed_config"]["config"]
    wasm["name"] = wasm["root_id"] = wasm["vm_config"]["vm_id"] = "noop"
    wasm["vm_config"]["code"]["local"]["filename"] = str(NOOP_WASM)
    wasm["configuration"]["value"] = "{}"
    filter_config["name"] = "noop"
    return filter_config


def native_filter(secrets):
    return {
        "name": "envoy.filters.http.api_key_auth",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
            "credentials": [{"key": s, "client": f"seed-{i}"} for i, s in enumerate(secrets)],
            "key_sources": [{"header": "Authorization"}],
            "forwarding": {"header": "x-client-id", "hide_credentials": True},
        },
    }


def ext_authz_filter():
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "http_service": {
                "server_uri": {"uri": "http://127.0.0.1/", "cluster": "authz", "timeout": "1s"},
                "authorization_request": {"allowed_headers": {"patterns": [{"exact": "authorization"}]}},
            },
        },
    }


def static_cluster(name, port):
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def envoy_config(listen_port, admin_port, auth_filter, clusters):
    """The shipped connection manager (minus its access log, in every case alike), answering
    every request with a direct_response, behind `auth_filter` (None: no auth)."""
    hcm, _ = shipped()
    hcm = json.loads(json.dumps(hcm))
    hcm.pop("access_log", None)
    hcm["route_config"] = {"name": "bench", "virtual_hosts": [{"name": "bench", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": '{"ok":true}'}}}]}]}
    router = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router")
    hcm["http_filters"] = ([auth_filter] if auth_filter else []) + [router]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                "typed_config": hcm}]}],
            }],
            "clusters": clusters,
        },
    }


def start_envoy(name, auth_filter, clusters, work, concurrency):
    """An Envoy of the comparison on the bench's bootstrap (`envoy_config`), returned once ready
    and kept until the end (PROCS)."""
    port, admin_port = free_port(), free_port()
    env = dict(os.environ, KEYGATE_SYNC_TOKEN=SYNC_TOKEN, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(NATIVE_DIR))
    proxy = EnvoyProcess(json.dumps(envoy_config(port, admin_port, auth_filter, clusters)), port, admin_port,
                         concurrency=concurrency, log_level="warning", directory=work / f"envoy-{name}",
                         config_name="envoy.json", env=env,
                         binary=ENVOY, ready_timeout=120)
    proxy.name = name
    return PROCS.add(proxy)


def keys_loaded(proxy):
    return proxy.native_stat("wasmcustom.keygate_keys_loaded")


def snapshot_version(proxy):
    return proxy.native_stat("wasmcustom.keygate_snapshot_version")


def status(proxy, key, timeout=2):
    """The status `proxy` answers PATH with `key` (none when empty)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(proxy.url(PATH), headers=headers, timeout=timeout).status_code


def start_keygate(name, keyset, work, concurrency, control_overrides=None, dropped=(), plugin_overrides=None):
    """Starts Envoy + Keygate on `keyset`'s control service; returns it once every key is in."""
    proxy = start_envoy(name, keygate_filter(control_overrides, plugin_overrides, dropped=dropped),
                        [static_cluster("keygate_control", keyset.port)], work, concurrency)
    wait_until(lambda: keys_loaded(proxy) == keyset.count and proxy.native_stat("wasmcustom.keygate_snapshot_refresh_ok") >= 1,
               timeout=600, interval=0.05, what=f"{name}: {keyset.count} keys loaded")
    proxy.load_s = time.monotonic() - proxy.started
    proxy.fetched_bytes = proxy.native_stat("cluster.keygate_control.upstream_cx_rx_bytes_total")
    log(f"{name}: {keyset.count} keys loaded {proxy.load_s:.2f}s after start "
        f"({proxy.fetched_bytes / 1e6:.1f} MB received from control), RSS {proxy.rss_mb():.0f} MB")
    return proxy


def start_keygate_native(name, keyset, work, concurrency):
    """Starts Envoy + Keygate's native build on `keyset`'s control service; returns it once every
    key is in (its stats are under the dynamic modules' namespace)."""
    proxy = start_envoy(name, keygate_native_filter(keyset.port), [static_cluster("keygate_control", keyset.port)],
                        work, concurrency)
    wait_until(lambda: proxy.native_stat("dynamicmodulescustom.keygate_keys_loaded") == keyset.count
               and proxy.native_stat("dynamicmodulescustom.keygate_snapshot_refresh_ok") >= 1,
               timeout=600, interval=0.05, what=f"{name}: {keyset.count} keys loaded")
    proxy.load_s = time.monotonic() - proxy.started
    log(f"{name}: {keyset.count} keys loaded {proxy.load_s:.2f}s after start, RSS {proxy.rss_mb():.0f} MB")
    return proxy


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_busy_s():
    """CPU seconds the whole machine spent busy (all cores) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICKS


def proc_cpu_s(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu_s():
    total = 0.0
    for part in PROCS.parts:
        try:
            total += proc_cpu_s(part.proc.pid)
        except (OSError, IndexError):
            pass
    return total


def wait_quiet(limit_s):
    """Waits (at most `limit_s`) until other work on the machine uses under a third of a core,
    so that runs are not measured against someone's compiler. Returns that CPU share (%)."""
    deadline = time.monotonic() + limit_s
    while True:
        busy, own, started = cpu_busy_s(), own_cpu_s(), time.monotonic()
        time.sleep(0.5)
        foreign = 100 * ((cpu_busy_s() - busy) - (own_cpu_s() - own)) / (time.monotonic() - started)
        if foreign < 33 or time.monotonic() > deadline:
            return round(max(0.0, foreign), 1)


def wrk(proxy, key, duration_s, extra_env=None, side=None):
    """One wrk run. Also accounts the machine's CPU during it: Envoy's, wrk's, and everything
    else's ("foreign": other work on a shared machine, which makes a run less trustworthy)."""
    env = dict(os.environ, BENCH_KEY=key or "", BENCH_PATH=PATH, **(extra_env or {}))
    argv = ["wrk", "-t", str(SETTINGS["wrk_threads"]), "-c", str(SETTINGS["connections"]),
            "-d", f"{duration_s}s", "--timeout", "2s", "-s", str(LUA), f"http://127.0.0.1:{proxy.port}"]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, envoy_cpu, wall = cpu_busy_s(), proc_cpu_s(proxy.proc.pid), time.monotonic()
    side_cpu = proc_cpu_s(side.pid) if side else 0.0
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=duration_s + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    wall = time.monotonic() - wall
    envoy_cpu = proc_cpu_s(proxy.proc.pid) - envoy_cpu
    side_cpu = (proc_cpu_s(side.pid) - side_cpu) if side else 0.0
    busy = cpu_busy_s() - busy
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON "):])
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            data["envoy_cpu_pct"] = round(100 * envoy_cpu / wall, 1)
            done = resource.getrusage(resource.RUSAGE_CHILDREN)
            wrk_cpu = done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime
            data["wrk_cpu_pct"] = round(100 * wrk_cpu / wall, 1)
            data["side_cpu_s"] = side_cpu
            data["foreign_cpu_pct"] = round(max(0.0, 100 * (busy - envoy_cpu - wrk_cpu - side_cpu) / wall), 1)
            return data
    raise RuntimeError(f"wrk gave no result: {stdout}\n{stderr}")


def measure_cases(cases):
    """Interleaved rounds (the order rotates each round); returns per-case medians and raw runs."""
    runs = {case["name"]: [] for case in cases}
    for round_index in range(SETTINGS["rounds"]):
        shift = round_index % len(cases)
        for case in cases[shift:] + cases[:shift]:
            if SETTINGS["warmup_s"]:
                wrk(case["proxy"], case["key"], SETTINGS["warmup_s"])
            quiet = wait_quiet(SETTINGS["quiet_wait_s"])
            side = case.get("side")
            data = wrk(case["proxy"], case["key"], SETTINGS["duration_s"], side=side)
            data["foreign_before_pct"] = quiet
            data["rss_mb"] = case["proxy"].rss_mb()
            # Envoy CPU per request, plus the authorizer's for ext_authz: the figure that other
            # work on the machine disturbs least.
            data["cpu_us_per_req"] = data["envoy_cpu_pct"] / 100 * data["duration_us"] / data["requests"]
            data["cpu_us_per_req"] += data["side_cpu_s"] * 1e6 / data["requests"]
            runs[case["name"]].append(data)
            log(f"round {round_index + 1} {case['name']:<24} {data['rps']:>9.0f} req/s  p50 {data['p50_us'] / 1000:.3f} ms  "
                f"p99 {data['p99_us'] / 1000:.3f} ms  p99.9 {data['p999_us'] / 1000:.3f} ms  non-2xx {data['non2xx']}  "
                f"cpu% envoy {data['envoy_cpu_pct']:.0f} wrk {data['wrk_cpu_pct']:.0f} other {data['foreign_cpu_pct']:.0f}")
    results = []
    for case in cases:
        r = runs[case["name"]]
        results.append({
            "name": case["name"], "kind": case["kind"], "keys": case.get("keys"), "expect": case["expect"],
            "rps": round(statistics.median(x["rps"] for x in r), 1),
            "p50_ms": round(statistics.median(x["p50_us"] for x in r) / 1000, 3),
            "p99_ms": round(statistics.median(x["p99_us"] for x in r) / 1000, 3),
            "p999_ms": round(statistics.median(x["p999_us"] for x in r) / 1000, 3),
            "rss_mb": round(statistics.median(x["rss_mb"] for x in r), 1),
            "non2xx_fraction": round(sum(x["non2xx"] for x in r) / max(1, sum(x["requests"] for x in r)), 4),
            "errors": sum(x["connect_errors"] + x["read_errors"] + x["write_errors"] + x["timeouts"] for x in r),
            "envoy_cpu_pct": round(statistics.median(x["envoy_cpu_pct"] for x in r), 1),
            "cpu_us_per_req": round(statistics.median(x["cpu_us_per_req"] for x in r), 1),
            "foreign_cpu_pct": round(statistics.median(x["foreign_cpu_pct"] for x in r), 1),
            "runs": [{k: x[k] for k in ("rps", "p50_us", "p99_us", "p999_us", "non2xx", "requests", "rss_mb",
                                        "envoy_cpu_pct", "wrk_cpu_pct", "foreign_cpu_pct", "foreign_before_pct",
                                        "cpu_us_per_req")} for x in r],
        })
    bare = next((c["rps"] for c in results if c["kind"] == "bare"), None)
    for case in results:
        if bare:
            case["ratio_to_bare"] = round(case["rps"] / bare, 3)
    return results


def measure_unloaded(cases, seconds):
    """Latency with one connection (one request at a time, no queueing): the service time that
    the "p99 added" goal is about. Adds `unloaded` to each result measured."""
    saved = SETTINGS["connections"]
    SETTINGS["connections"] = 1
    unloaded = {}
    try:
        for case in cases:
            wait_quiet(SETTINGS["quiet_wait_s"])
            d = wrk(case["proxy"], case["key"], seconds, side=case.get("side"))
            unloaded[case["name"]] = {"rps": round(d["rps"], 1), "p50_ms": d["p50_us"] / 1000, "p99_ms": d["p99_us"] / 1000,
                                      "p999_ms": d["p999_us"] / 1000, "foreign_cpu_pct": d["foreign_cpu_pct"]}
            log(f"unloaded {case['name']:<24} p50 {d['p50_us'] / 1000:.3f} ms  p99 {d['p99_us'] / 1000:.3f} ms  "
                f"p99.9 {d['p999_us'] / 1000:.3f} ms  other cpu {d['foreign_cpu_pct']:.0f}%")
    finally:
        SETTINGS["connections"] = saved
    return unloaded


def propagation(proxy, keyset, tries, index_base):
    """Time from an admin PATCH (sent) to the filter serving the new snapshot version."""
    times = []
    for attempt in range(tries):
        key_id = keyset.ids[index_base + attempt]
        before = snapshot_version(proxy)
        started = time.monotonic()
        response = keyset.admin("PATCH", f"/v1/keys/{key_id}", json={"name": f"renamed-{attempt}"})
        response.raise_for_status()
        wait_until(lambda: snapshot_version(proxy) > before, timeout=60, interval=0.005, what="new snapshot version")
        times.append((time.monotonic() - started) * 1000)
    return times


def revocation(proxy, keyset, tries, index_base, load_key):
    """Deactivates keys while wrk runs against `proxy`; time from the PATCH to the first 401."""
    load_s = tries * 8 + 10
    load = threading.Thread(target=lambda: wrk(proxy, load_key, load_s), daemon=True)
    load.start()
    time.sleep(1)
    times = []
    try:
        for attempt in range(tries):
            index = index_base + attempt
            secret, key_id = keyset.secrets[index], keyset.ids[index]
            wait_until(lambda: status(proxy, secret) == 200, timeout=30, what="key valid before revocation")
            time.sleep(random.uniform(0.0, 1.0))  # land at a random point of the refresh cycle
            started = time.monotonic()
            keyset.admin("PATCH", f"/v1/keys/{key_id}", json={"active": False}).raise_for_status()
            wait_until(lambda: status(proxy, secret) == 401, timeout=60, interval=0.005, what="401 after revocation")
            times.append((time.monotonic() - started) * 1000)
    finally:
        load.join(timeout=load_s + 40)
    return times


def summary(values):
    return {"p50": round(statistics.median(values), 1), "max": round(max(values), 1),
            "runs": [round(v, 1) for v in values]}


def make_plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot")
        return False
    names = [c["name"] for c in results]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    colors = {"bare": "grey", "wasm_noop": "silver", "keygate": "tab:blue", "native": "tab:green", "ext_authz": "tab:red"}
    bar_colors = [colors.get(c["kind"], "black") for c in results]
    top.bar(names, [c["rps"] for c in results], color=bar_colors)
    top.set_ylabel("requests/s (median)")
    top.set_title(f"Envoy {SETTINGS['concurrency']} workers, wrk {SETTINGS['connections']} connections, loopback")
    bottom.bar(names, [c["p99_ms"] for c in results], color=bar_colors)
    bottom.set_ylabel("p99 latency (ms)")
    plt.xticks(rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def envoy_version():
    out = subprocess.run([str(ENVOY), "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.strip().split("version:")[-1].strip()


def fleet_overshoot(keyset, work):
    """Three Envoys (`--concurrency 2`) on one control service, a client sending round-robin at
    a steady rate to a key over its limit: admitted per sliding window vs the limit and the
    documented bound (docs/rate-limits.md)."""
    s = SETTINGS
    window_s, limit, rate = s["fleet_window_s"], s["fleet_limit"], s["fleet_rate"]
    key = keyset.admin("POST", "/v1/keys", json={"name": "fleet", "plan": "enterprise",
                                                 "limits": {"per_minute": limit}}).json()
    plugin = {"rate_limits": {"sync_interval": "1s", "minute_window": f"{window_s}s"}}
    proxies = [start_envoy(f"fleet-{n}", keygate_filter({"long_poll_wait": "5s"}, plugin),
                           [static_cluster("keygate_control", keyset.port)], work, 2) for n in range(3)]
    try:
        for proxy in proxies:
            wait_until(lambda p=proxy: status(p, key["key"]) == 200, timeout=60, what="fleet key loaded")
        sessions = [requests.Session() for _ in proxies]
        admitted, refused, errors = [], 0, 0
        started = time.monotonic()
        for n in range(int(rate * s["fleet_seconds"])):
            due = started + n / rate
            time.sleep(max(0.0, due - time.monotonic()))
            proxy = proxies[n % 3]
            try:
                # Not `status`: that name is the module's function, which the waits above call.
                code = sessions[n % 3].get(f"http://127.0.0.1:{proxy.port}{PATH}", timeout=5,
                                           headers={"Authorization": f"Bearer {key['key']}"}).status_code
            except requests.RequestException:
                errors += 1
                continue
            if code == 200:
                admitted.append(time.monotonic() - started)
            elif code == 429:
                refused += 1
            else:
                errors += 1
        # Sliding windows starting at each admission (the maximum is reached at one of them).
        per_window = []
        j = 0
        for i, start in enumerate(admitted):
            while j < len(admitted) and admitted[j] < start + window_s:
                j += 1
            per_window.append(j - i)
        full = [count for count, start in zip(per_window, admitted) if start + window_s <= admitted[-1] + 1e-9]
        syncs = [proxy.native_stat("wasmcustom.keygate_ratelimit_sync_ok") for proxy in proxies]
        sync_s = 1.0
        # D = 2s + t + c: sync interval, round trip (10 ms), a credit's life (50 ms; 0 when the
        # limit is under 128, whose requests are counted one by one).
        credit_s = 0.05 if limit >= 128 else 0.0
        bound = limit + (2 / 3) * rate * (2 * sync_s + 0.01 + credit_s)
        result = {"envoys": 3, "workers": 2, "limit": limit, "window_s": window_s, "rate_per_s": rate,
                  "seconds": s["fleet_seconds"], "offered": int(rate * s["fleet_seconds"]),
                  "admitted": len(admitted), "refused": refused, "errors": errors,
                  "max_per_window": max(full or per_window or [0]),
                  "median_per_window": statistics.median(full) if full else None,
                  "bound": round(bound, 1), "per_envoy_would_allow": 3 * limit, "syncs_ok": syncs}
        log(f"fleet limits: {result}")
        return result
    finally:
        for proxy in proxies:
            PROCS.stop(proxy)


def goals(data):
    """The goals the issue holds Keygate to, with the measured figures (no tuning, no hiding)."""
    cases = {c["name"]: c for c in data["cases"]}
    rows = []

    def row(goal, value, ok):
        rows.append({"goal": goal, "measured": value, "met": bool(ok)})

    bare = next(c for c in data["cases"] if c["kind"] == "bare")
    mid = 100_000 if "keygate-100k" in cases else sorted(SETTINGS["sizes"])[len(SETTINGS["sizes"]) // 2]
    kg = cases.get(f"keygate-{label(mid)}")
    native = cases.get(f"native-{label(mid)}")
    authz = cases.get(f"ext_authz-{label(SETTINGS['extauthz_size'])}")
    noop = next((c for c in data["cases"] if c["kind"] == "wasm_noop"), None)
    if kg:
        if noop:
            r = kg["rps"] / noop["rps"]
            row(f"Keygate ≥ 0.88 × the empty Wasm filter's throughput ({label(mid)} keys)", f"{r:.2f} ×", r >= 0.88)
        if authz:
            r = kg["rps"] / authz["rps"]
            row(f"Keygate ≥ 1.9 × ext_authz best case ({label(mid)} keys)", f"{r:.2f} ×", r >= 1.9)
        limited = cases.get(f"keygate-{label(mid)}-limited")
        if limited:
            r = limited["rps"] / kg["rps"]
            row(f"a rate-limited key (limits never reached) ≥ 0.95 × an unlimited key ({label(mid)} keys)",
                f"{r:.2f} ×", r >= 0.95)
        if native:
            r = kg["rps"] / native["rps"]
            row(f"(for reference) Keygate vs native api_key_auth ({label(mid)} keys)", f"{r:.2f} ×", True)
        kn = cases.get(f"keygate-native-{label(mid)}")
        if kn:
            r = kn["rps"] / bare["rps"]
            row(f"Keygate native ≥ 0.95 × bare Envoy ({label(mid)} keys)", f"{r:.2f} ×", r >= 0.95)
            native_noop = next((c for c in data["cases"] if c["kind"] == "native_noop"), None)
            if native_noop:
                r = native_noop["rps"] / bare["rps"]
                row("(for reference) the empty dynamic module vs bare Envoy", f"{r:.2f} ×", True)
            if native:
                r = kn["rps"] / native["rps"]
                row(f"Keygate native within 5 % of native api_key_auth ({label(mid)} keys)", f"{r:.2f} ×", r >= 0.95)
            if authz:
                r = kn["rps"] / authz["rps"]
                row(f"Keygate native ≥ 2.5 × ext_authz best case ({label(mid)} keys)", f"{r:.2f} ×", r >= 2.5)
            kn_limited = cases.get(f"keygate-native-{label(mid)}-limited")
            if kn_limited:
                r = kn_limited["rps"] / kn["rps"]
                row(f"(for reference) native: a rate-limited key vs an unlimited key ({label(mid)} keys)",
                    f"{r:.2f} ×", True)
        if kg.get("unloaded") and bare.get("unloaded"):
            added = kg["unloaded"]["p99_ms"] - bare["unloaded"]["p99_ms"]
            row("p99 added over bare ≤ 0.2 ms (one connection, no queueing)", f"{added:+.3f} ms", added <= 0.2)
    for size, s in data["snapshot"].items():
        if int(size) >= 1_000_000:
            row(f"{label(int(size))} keys: Envoy start → all keys loaded ≤ 3 s", f"{s['load_s']:.1f} s", s["load_s"] <= 3)
    for m in data["memory"]:
        if m["keys"] >= 1_000_000 and m["workers"] == 4 and m.get("build", "wasm") == "wasm":
            row(f"{label(m['keys'])} keys: Envoy RSS ≤ 200 MB at 4 workers", f"{m['rss_mb']:.0f} MB", m["rss_mb"] <= 200)
    churn = data.get("store_churn")
    if churn:
        row(f"{churn['rotations']:,} key rotations in a running Envoy: RSS growth ≤ 10 %",
            f"{churn['rss_growth_pct']:+.1f} %", churn["rss_growth_pct"] <= 10)
    rl = data.get("ratelimit_memory")
    if rl:
        row(f"{label(rl['keys'])} distinct limited keys, one request each: none admitted uncounted",
            f"{rl['uncounted']:,} (RSS {rl['rss_final_mb']:.0f} MB)", rl["uncounted"] == 0)
    fleet = data.get("fleet")
    if fleet:
        row(f"fleet-wide limit: admitted per sliding {fleet['window_s']} s ≤ the documented bound "
            f"({fleet['bound']:.0f} for {fleet['limit']})", f"max {fleet['max_per_window']}",
            fleet["max_per_window"] <= fleet["bound"])
    for mode, r in data["revocation_modes"].items():
        bound = r["refresh_interval_s"] * 1000 + 1000
        row(f"revocation ({mode}) ≤ one refresh interval + 1 s ({bound / 1000:.0f} s)",
            f"max {r['max'] / 1000:.2f} s", r["max"] <= bound)
    return rows


def render_markdown(data):
    s = data["settings"]
    lines = [
        "<!-- bench:begin (generated by bench/run.py; edit outside these markers) -->",
        f"Run of {data['date']} on {data['machine']['cpu_count']} cores ({data['machine']['cpu']}), "
        f"{data['machine']['mem_gb']} GiB, {data['machine']['kernel']}. Envoy {data['envoy_version']} "
        f"(`--concurrency {s['concurrency']}`), Keygate `.wasm` {data['wasm_bytes']:,} bytes built from "
        f"{data['source']['commit']}{' with uncommitted changes in src/' if data['source']['src_dirty'] else ''}. "
        f"Load: wrk {data['wrk_version']}, {s['wrk_threads']} thread, {s['connections']} connections, "
        f"{s['duration_s']} s per run after a {s['warmup_s']} s warm-up, {s['rounds']} interleaved rounds, medians. "
        f"`GET {PATH}` with one key per run; the upstream is an Envoy `direct_response`.",
        "",
        "| case | req/s | spread (rounds) | × bare | p50 ms | p99 ms | p99.9 ms | Envoy RSS MB | CPU µs/req | Envoy CPU % | other CPU % | answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in data["cases"]:
        answered = f"{c['expect']}" + (f" (non-2xx {c['non2xx_fraction']:.1%})" if c["non2xx_fraction"] else "")
        if c["errors"]:
            answered += f", {c['errors']} socket errors"
        rates = [r["rps"] for r in c.get("runs", [])] or [c["rps"]]
        spread = f"{min(rates):,.0f}–{max(rates):,.0f}"
        lines.append(f"| {c['name']} | {c['rps']:,.0f} | {spread} | {c['ratio_to_bare']:.2f} | {c['p50_ms']:.3f} | "
                     f"{c['p99_ms']:.3f} | {c['p999_ms']:.3f} | {c['rss_mb']:.0f} | {c['cpu_us_per_req']:.0f} | {c['envoy_cpu_pct']:.0f} | "
                     f"{c['foreign_cpu_pct']:.0f} | {answered} |")
    if any(c.get("unloaded") for c in data["cases"]):
        lines += ["", f"Latency with one connection (one request at a time: service time without queueing), "
                  f"{s['unloaded_s']} s per case, one round:", "",
                  "| case | req/s | p50 ms | p99 ms | p99.9 ms | p99 added over bare | other CPU % |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        bare_unloaded = next((c["unloaded"] for c in data["cases"] if c["kind"] == "bare"), None)
        for c in data["cases"]:
            u = c.get("unloaded")
            if u:
                added = f"{u['p99_ms'] - bare_unloaded['p99_ms']:+.3f} ms" if bare_unloaded else "—"
                lines.append(f"| {c['name']} | {u['rps']:,.0f} | {u['p50_ms']:.3f} | {u['p99_ms']:.3f} | "
                             f"{u['p999_ms']:.3f} | {added} | {u['foreign_cpu_pct']:.0f} |")
    lines += ["", "Snapshot and start-up (Keygate, real `keygate-control`, default page size 10,000, "
              f"`--concurrency {s['concurrency']}`):", "",
              "| keys | full snapshot JSON | received by Envoy | start → all keys loaded | change → new snapshot in filter (long poll), p50 / max |",
              "|---:|---:|---:|---:|---:|"]
    for size, v in data["snapshot"].items():
        prop = v.get("propagation_ms")
        prop_text = f"{prop['p50']:.0f} / {prop['max']:.0f} ms" if prop else "—"
        lines.append(f"| {int(size):,} | {v['snapshot_bytes'] / 1e6:.1f} MB ({v['pages']} pages) | "
                     f"{v['fetched_bytes'] / 1e6:.1f} MB | {v['load_s']:.2f} s | {prop_text} |")
    lines += ["", "Envoy memory (VmRSS once every key is loaded; idle):", "",
              "| build | keys | workers | RSS MB | start → loaded |", "|---|---:|---:|---:|---:|"]
    for m in data["memory"]:
        lines.append(f"| {m.get('build', 'wasm')} | {m['keys']:,} | {m['workers']} | {m['rss_mb']:.0f} | "
                     f"{m['load_s']:.2f} s |")
    churn = data.get("store_churn")
    if churn:
        idle, busy = churn["latency_idle"], churn["latency_during_load"] or {}
        lines += ["", f"The key store under churn (bench/store_churn.py: {churn['keys']:,} keys, "
                  f"`--concurrency {churn['workers']}`, a JSON snapshot server in hash order; rotations as deltas "
                  f"of {churn['round']:,}; then a full reload of every key while wrk sends a valid key on 4 "
                  "connections):", "",
                  "| keys loaded in | RSS loaded | rotations | RSS after | growth | full reload | p99 idle | p99 during the reload | p99.9 during | non-2xx during | RSS after reload |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {churn['load_s']:.2f} s | {churn['rss_loaded_mb']:.0f} MB | {churn['rotations']:,} in "
                  f"{churn['rotation_s']:.0f} s | {churn['rss_rotated_mb']:.0f} MB | {churn['rss_growth_pct']:+.1f} % | "
                  f"{churn['reload_s']:.2f} s | {idle['p99_ms']:.2f} ms | {busy.get('p99_ms', float('nan')):.2f} ms | "
                  f"{busy.get('p999_ms', float('nan')):.2f} ms | {busy.get('non2xx', '—')} | "
                  f"{churn['rss_after_reload_mb']:.0f} MB |"]
    lines += ["", f"Revocation under load ({label(data['revocation_keys'])} keys; `PATCH /v1/keys/{{id}}` "
              "`{\"active\": false}` sent → first 401 from Envoy, probing every 5 ms):", "",
              "| mode | p50 | max | tries |", "|---|---:|---:|---|"]
    for mode, r in data["revocation_modes"].items():
        lines.append(f"| {mode} | {r['p50']:.0f} ms | {r['max']:.0f} ms | {', '.join(f'{v:.0f}' for v in r['runs'])} |")
    rl = data.get("ratelimit_memory")
    if rl:
        lines += ["", f"Rate-limit counters ({rl['keys']:,} keys of the free plan, one request per key, "
                  "`--concurrency 2`, bench/ratelimit_memory.py):", "",
                  "| distinct keys that sent a request | Envoy RSS MB | requests not counted |", "|---:|---:|---:|",
                  f"| 0 (all loaded) | {rl['rss_loaded_mb']:.0f} | — |"]
        lines += [f"| {x['requests']:,} | {x['rss_mb']:.0f} | {x['uncounted']:,} |" for x in rl["samples"]]
    fleet = data.get("fleet")
    if fleet:
        lines += ["", f"Fleet-wide rate limit ({fleet['envoys']} Envoys × `--concurrency {fleet['workers']}` on one "
                  f"control service, `sync_interval` 1 s; one key limited to {fleet['limit']} per "
                  f"{fleet['window_s']} s, offered {fleet['rate_per_s']:.0f} requests/s round-robin for "
                  f"{fleet['seconds']} s; the bound is L + (N−1)/N · r · (2s + t), docs/rate-limits.md):", "",
                  "| limit | offered | admitted | refused | max per sliding window | median per window | bound | per-Envoy counting would allow |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {fleet['limit']} | {fleet['offered']:,} | {fleet['admitted']:,} | {fleet['refused']:,} | "
                  f"{fleet['max_per_window']} | {fleet['median_per_window']} | {fleet['bound']:.0f} | "
                  f"{fleet['per_envoy_would_allow']} |"]
    lines += ["", "Goals:", "", "| goal | measured | |", "|---|---:|---|"]
    for g in data["goals"]:
        lines.append(f"| {g['goal']} | {g['measured']} | {'met' if g['met'] else '**missed**'} |")
    lines += ["", f"Raw numbers: `target/bench/results.json`; whole run {data['elapsed_s'] / 60:.1f} min." + (
        "\n\n![requests/s and p99 per case](benchmarks.png)" if data.get("plot") else ""),
        "<!-- bench:end -->"]
    return "\n".join(lines)


def write_docs(data):
    if not DOCS:
        return
    path = Path(DOCS)
    block = render_markdown(data)
    text = path.read_text() if path.exists() else "# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"
    start = text.find("<!-- bench:begin")
    end = text.find("<!-- bench:end -->")
    if start < 0 or end < 0:
        text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = text[:start] + block + text[end + len("<!-- bench:end -->"):]
    path.write_text(text)
    if data.get("plot"):
        shutil.copy2(OUT / "results.png", path.with_suffix(".png"))
    log(f"wrote {path}")


def source_state():
    """The commit the filter was built from, and whether src/ had uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_dirty": bool(git("status", "--porcelain", "src"))}


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {"cpu_count": os.cpu_count(), "cpu": cpu, "mem_gb": round(mem_kb / 1024 / 1024), "kernel": platform.release()}


def private_copies(work):
    """Runs from copies of the binaries: a rebuild in the shared tree during the run must not
    change what later Envoys load, and the copies' own names keep them apart from anyone's
    `keygate-control` processes."""
    global WASM, NOOP_WASM, CONTROL, AUTHZ, NATIVE_DIR
    bin_dir = work / "bin"
    bin_dir.mkdir()
    native_dir = bin_dir / "native"
    native_dir.mkdir()
    shutil.copy2(NATIVE_DIR / "libkeygate.so", native_dir / "libkeygate.so")
    shutil.copy2(NOOP_NATIVE, native_dir / "libnoop.so")
    NATIVE_DIR = native_dir
    WASM = Path(shutil.copy2(WASM, bin_dir / "keygate.wasm"))
    NOOP_WASM = Path(shutil.copy2(NOOP_WASM, bin_dir / "noop.wasm"))
    CONTROL = Path(shutil.copy2(CONTROL, bin_dir / "bench-control"))
    AUTHZ = Path(shutil.copy2(AUTHZ, bin_dir / "bench-authz"))


def main():
    for tool, path in (("envoy", ENVOY), ("keygate-control", CONTROL), ("authorizer", AUTHZ), ("wasm", WASM),
                       ("no-op wasm", NOOP_WASM)):
        if not Path(path).exists():
            sys.exit(f"bench: {tool} not found at {path} (run `make bench`, which builds it)")
    if not (NATIVE_DIR / "libkeygate.so").exists():
        sys.exit(f"bench: libkeygate.so not found in {NATIVE_DIR} (run `make bench`, which builds it)")
    if not NOOP_NATIVE.exists():
        sys.exit(f"bench: the empty dynamic module not found at {NOOP_NATIVE} (run `make bench`, which builds it)")
    if not shutil.which("wrk"):
        sys.exit("bench: wrk not found (make bench installs it with apt-get)")
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="keygate-bench-"))
    private_copies(work)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench: terminated"))
    began = time.monotonic()
    log(f"settings {json.dumps(SETTINGS)}; work dir {work}")
    c = SETTINGS["concurrency"]
    data = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "envoy_version": envoy_version(), "wasm_bytes": WASM.stat().st_size,
            "wrk_version": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
            "settings": SETTINGS, "snapshot": {}, "memory": [], "source": source_state()}
    try:
        all_sizes = sorted(set(SETTINGS["sizes"] + SETTINGS["native_sizes"] + [SETTINGS["extauthz_size"]]
                               + SETTINGS["memory_sizes"]))
        keysets = {n: KeySet(n, work) for n in all_sizes}
        mid = 100_000 if 100_000 in SETTINGS["sizes"] else sorted(SETTINGS["sizes"])[len(SETTINGS["sizes"]) // 2]

        cases = []
        bare = start_envoy("bare", None, [], work, c)
        cases.append({"name": "bare", "kind": "bare", "proxy": bare, "key": keysets[mid].secrets[0], "expect": 200})
        noop = start_envoy("wasm-noop", noop_wasm_filter(), [], work, c)
        cases.append({"name": "wasm-noop", "kind": "wasm_noop", "proxy": noop, "key": keysets[mid].secrets[0],
                      "expect": 200})
        native_noop = start_envoy("native-noop", noop_native_filter(), [], work, c)
        cases.append({"name": "native-noop", "kind": "native_noop", "proxy": native_noop,
                      "key": keysets[mid].secrets[0], "expect": 200})
        keygate = {}
        for n in SETTINGS["sizes"]:
            proxy = start_keygate(f"keygate-{label(n)}", keysets[n], work, c)
            keygate[n] = proxy
            snapshot_bytes, pages = keysets[n].snapshot_bytes(10_000)
            data["snapshot"][str(n)] = {"load_s": round(proxy.load_s, 2), "fetched_bytes": proxy.fetched_bytes,
                                        "snapshot_bytes": snapshot_bytes, "pages": pages, "workers": c}
            cases.append({"name": f"keygate-{label(n)}", "kind": "keygate", "keys": n, "proxy": proxy,
                          "key": keysets[n].secrets[0], "expect": 200})
        cases.append({"name": f"keygate-{label(mid)}-limited", "kind": "keygate", "keys": mid,
                      "proxy": keygate[mid], "key": keysets[mid].limited_secret, "expect": 200})
        cases.append({"name": f"keygate-{label(mid)}-invalid", "kind": "keygate", "keys": mid, "proxy": keygate[mid],
                      "key": INVALID_KEY, "expect": 401})
        native_keygate = start_keygate_native(f"keygate-native-{label(mid)}", keysets[mid], work, c)
        cases.append({"name": f"keygate-native-{label(mid)}", "kind": "keygate_native", "keys": mid,
                      "proxy": native_keygate, "key": keysets[mid].secrets[0], "expect": 200})
        cases.append({"name": f"keygate-native-{label(mid)}-limited", "kind": "keygate_native", "keys": mid,
                      "proxy": native_keygate, "key": keysets[mid].limited_secret, "expect": 200})
        for n in SETTINGS["native_sizes"]:
            proxy = start_envoy(f"native-{label(n)}", native_filter(keysets[n].secrets), [], work, c)
            log(f"native-{label(n)}: ready {proxy.ready_s:.2f}s after start, RSS {proxy.rss_mb():.0f} MB")
            cases.append({"name": f"native-{label(n)}", "kind": "native", "keys": n, "proxy": proxy,
                          "key": keysets[n].secrets[0], "expect": 200})
        n = SETTINGS["extauthz_size"]
        authz_port = free_port()
        authz = PROCS.add(Program([AUTHZ, "--listen", f"127.0.0.1:{authz_port}", "--secrets",
                                   keysets[n].secrets_path, "--threads", c], work / "authz.log"))
        wait_until(lambda: requests.get(f"http://127.0.0.1:{authz_port}/", timeout=1).status_code == 401,
                   timeout=60, what="authorizer")
        proxy = start_envoy(f"ext_authz-{label(n)}", ext_authz_filter(), [static_cluster("authz", authz_port)], work, c)
        cases.append({"name": f"ext_authz-{label(n)}", "kind": "ext_authz", "keys": n, "proxy": proxy,
                      "key": keysets[n].secrets[0], "expect": 200, "side": authz.proc})

        for case in cases:
            got = status(case["proxy"], case["key"])
            if got != case["expect"]:
                raise RuntimeError(f"{case['name']}: expected {case['expect']} for its key, got {got}")
        log(f"all {len(cases)} cases answer as expected; measuring")
        data["cases"] = measure_cases(cases)
        unloaded = measure_unloaded(cases, SETTINGS["unloaded_s"])
        for result in data["cases"]:
            result["unloaded"] = unloaded.get(result["name"])

        tries = SETTINGS["revoke_tries"]
        for n, proxy in keygate.items():
            if n >= 100_000 or n == max(SETTINGS["sizes"]):
                data["snapshot"][str(n)]["propagation_ms"] = summary(propagation(proxy, keysets[n], 3, 900))
                log(f"keygate-{label(n)}: change → new snapshot {data['snapshot'][str(n)]['propagation_ms']}")

        # Revocation: the long-poll Envoy is the measured keygate-<mid> (shipped settings:
        # refresh 5 s, long_poll_wait 30 s); the plain-polling one differs only in control settings.
        for case in cases:
            if case["kind"] in ("native", "ext_authz", "wasm_noop", "bare", "keygate_native", "native_noop"):
                PROCS.stop(case["proxy"])
        for n, proxy in keygate.items():
            if n != mid:
                PROCS.stop(proxy)
        _, shipped_filter = shipped()
        shipped_control = json.loads(shipped_filter["typed_config"]["config"]["configuration"]["value"])["control"]
        modes = {}
        ks = keysets[mid]
        modes[f"long poll (wait {shipped_control['long_poll_wait']}, refresh {shipped_control['refresh_interval']})"] = (
            keygate[mid], parse_duration_s(shipped_control["refresh_interval"]))
        plain = start_keygate("keygate-plain-poll", ks, work, c,
                              {"long_poll_wait": "0s", "refresh_interval": SETTINGS["plain_refresh"]})
        modes[f"plain polling (refresh {SETTINGS['plain_refresh']})"] = (plain, parse_duration_s(SETTINGS["plain_refresh"]))
        data["revocation_modes"] = {}
        for offset, (mode, (proxy, interval)) in enumerate(modes.items()):
            r = summary(revocation(proxy, ks, tries, 100 + offset * 50, ks.secrets[0]))
            r["refresh_interval_s"] = interval
            data["revocation_modes"][mode] = r
            log(f"revocation {mode}: {r}")
        data["revocation_keys"] = mid
        long_poll = next(iter(data["revocation_modes"].values()))
        data["revocation_ms"] = {"p50": long_poll["p50"], "max": long_poll["max"], "mode": next(iter(data["revocation_modes"]))}
        PROCS.stop(plain)
        PROCS.stop(keygate[mid])

        data["fleet"] = fleet_overshoot(keysets[min(all_sizes)], work)

        for n in SETTINGS["memory_sizes"]:
            for workers in (1, 4):
                proxy = start_keygate(f"memory-{label(n)}-{workers}w", keysets[n], work, workers)
                time.sleep(1)
                data["memory"].append({"keys": n, "workers": workers, "rss_mb": round(proxy.rss_mb(), 1),
                                       "load_s": round(proxy.load_s, 2), "build": "wasm"})
                PROCS.stop(proxy)
            proxy = start_keygate_native(f"memory-native-{label(n)}-4w", keysets[n], work, 4)
            time.sleep(1)
            data["memory"].append({"keys": n, "workers": 4, "rss_mb": round(proxy.rss_mb(), 1),
                                   "load_s": round(proxy.load_s, 2), "build": "native"})
            PROCS.stop(proxy)
        if SETTINGS["churn_keys"]:
            data["store_churn"] = store_churn.measure(SETTINGS["churn_keys"], SETTINGS["churn_round"], log=log)
        if SETTINGS["ratelimit_memory_keys"]:
            data["ratelimit_memory"] = ratelimit_memory.measure(SETTINGS["ratelimit_memory_keys"])
        data["goals"] = goals(data)
        data["plot"] = make_plot(data["cases"], OUT / "results.png")
        data["elapsed_s"] = round(time.monotonic() - began, 1)
        (OUT / "results.json").write_text(json.dumps(data, indent=2))
        log(f"wrote {OUT / 'results.json'} ({data['elapsed_s']} s in all)")
        write_docs(data)
        print(render_markdown(data))
    finally:
        PROCS.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
