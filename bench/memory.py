#!/usr/bin/env python3
"""Envoy resident memory with the Keygate store loaded, at 1 and 4 workers.

Serves a synthetic snapshot of N keys from the test snapshot server, starts Envoy with
--concurrency 1 and 4, waits until every key is loaded, and reports VmRSS. Loopback only.
Usage: bench/memory.py [N ...]   (default: 0 1000 100000)
"""
import json
import sys
import time

from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.processes import rss_mb
from keygate_testkit.snapshot_server import SnapshotServer, key_record
from keygate_testkit.upstream import Upstream
from keygate_testkit.waiting import wait_until


def measure(keys, concurrency, upstream):
    server = SnapshotServer()
    server.publish([key_record(f"pk_live_bench{i:032d}", f"key_{i}") for i in range(keys)])
    config = plugin_config(control={"refresh_interval": "60s", "timeout": "30s", "page_size": 5000})
    proxy = Envoy(upstream.port, server.port, config, concurrency=concurrency)
    try:
        started = time.monotonic()
        wait_until(lambda: proxy.stat("keygate_snapshot_refresh_ok") >= 1 and proxy.stat("keygate_keys_loaded") == keys,
                   timeout=300, interval=0.2, what=f"{keys} keys loaded")
        loaded_s = time.monotonic() - started
        time.sleep(1)
        return {"keys": keys, "workers": concurrency, "rss_mb": round(rss_mb(proxy.proc.pid), 1),
                "load_s": round(loaded_s, 2)}
    finally:
        proxy.close()
        server.close()


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [0, 1000, 100000]
    upstream = Upstream()
    results = []
    try:
        for keys in sizes:
            for workers in (1, 4):
                result = measure(keys, workers, upstream)
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        upstream.close()
    return results


if __name__ == "__main__":
    main()
