#!/usr/bin/env python3
"""Envoy memory while many distinct rate-limited keys each send one request.

Seeds the real control service with N keys (plan free: 60/min, 1,000/day, so every request
is counted in a rate-limit slot), loads them into Envoy, then sends one request per key with
wrk (a Lua script walks the secrets file) and records Envoy's VmRSS as the keys go by, plus
the filter's counters. The slot table is sized by the snapshot's limited keys, so every
request must be counted (`uncounted` 0) and memory grows only by each used slot's few bytes.
Loopback only; bounded by N and a time limit.

`measure(n)` returns the numbers as a dict (`make bench` stores it in results.json under
`ratelimit_memory`); run alone it also writes target/bench/ratelimit_memory.json.

Usage: bench/ratelimit_memory.py [N]   (default 1000000; env BENCH_SLOTS sets the
`rate_limits.slots` upper bound)
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keygate_testkit.control import ControlService, seed
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.paths import ROOT
from keygate_testkit.processes import rss_mb as process_rss_mb
from keygate_testkit.upstream import Upstream
from keygate_testkit.waiting import wait_until

LUA = r"""
local secrets = {}
local thread_index, thread_count = 0, 1
local counter = 0
function setup(thread)
  thread:set("id", thread_index)
  thread_index = thread_index + 1
end
function init(args)
  thread_count = tonumber(args[2])
  for line in io.lines(args[1]) do secrets[#secrets + 1] = line end
  counter = id
end
function request()
  local secret = secrets[counter % #secrets + 1]
  counter = counter + thread_count
  return wrk.format("GET", "/v1/models", {["Authorization"] = "Bearer " .. secret})
end
"""


def rss_mb(pid):
    return round(process_rss_mb(pid), 1)


def measure(keys):
    """Seeds `keys` limited keys, sends one request per key; RSS and counters as a dict."""
    work = Path(tempfile.mkdtemp(prefix="keygate-rl-memory-"))
    db, secrets = work / "keygate.db", work / "secrets.txt"
    seed_s = seed(db, keys, secrets_out=secrets, timeout=600)
    lua = work / "walk.lua"
    lua.write_text(LUA)
    upstream = Upstream()
    control = ControlService(db).start()
    overrides = {"control": {"refresh_interval": "60s", "timeout": "30s", "page_size": 50000}}
    if os.environ.get("BENCH_SLOTS"):
        overrides["rate_limits"] = {"slots": int(os.environ["BENCH_SLOTS"])}
    proxy = Envoy(upstream.port, control.port, plugin_config(**overrides), concurrency=2, direct_response=True)
    results = {"keys": keys, "seed_s": round(seed_s, 1)}
    try:
        started = time.monotonic()
        wait_until(lambda: proxy.stat("keygate_keys_loaded") == keys, timeout=900, interval=0.5, what="keys loaded")
        results["load_s"] = round(time.monotonic() - started, 1)
        time.sleep(2)
        results["rss_loaded_mb"] = rss_mb(proxy.proc.pid)
        samples = []
        per_step = max(keys // 4, 1)
        for step in range(4):
            # Each wrk run walks the next quarter of the secrets (wrk restarts its counter, so
            # give it a file holding just that quarter).
            part = work / f"part{step}.txt"
            with open(secrets) as src, open(part, "w") as dst:
                for i, line in enumerate(src):
                    if step * per_step <= i < (step + 1) * per_step:
                        dst.write(line)
            run_until(proxy, lua, part, per_step)
            samples.append({"requests": (step + 1) * per_step, "rss_mb": rss_mb(proxy.proc.pid),
                            "allowed": proxy.stat("keygate_requests_allowed"),
                            "uncounted": proxy.stat("keygate_ratelimit_uncounted")})
            print(json.dumps(samples[-1]), flush=True)
        results["samples"] = samples
        results["rss_final_mb"] = samples[-1]["rss_mb"]
        results["uncounted"] = samples[-1]["uncounted"]
    finally:
        proxy.close()
        control.stop()
        upstream.close()
    return results


def main():
    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    results = measure(keys)
    out = ROOT / "target/bench/ratelimit_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def run_until(proxy, lua, part, count):
    """Runs wrk until `count` more requests were answered (bounded at 15 minutes)."""
    target = proxy.stat("keygate_requests_allowed") + proxy.stat("keygate_requests_denied_rate_limit_exceeded") + count
    process = subprocess.Popen(
        ["wrk", "-t2", "-c32", "-d900s", "--timeout", "5s", "-s", str(lua), proxy.url("/"), "--", str(part), "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: proxy.stat("keygate_requests_allowed") + proxy.stat("keygate_requests_denied_rate_limit_exceeded") >= target,
            timeout=900, interval=0.5, what=f"{count} requests",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
