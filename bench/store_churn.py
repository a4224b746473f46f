#!/usr/bin/env python3
"""The key store under churn, in one running Envoy (4 workers): memory after N key rotations,
and request latency while a full snapshot of N keys is being loaded.

A snapshot server that speaks the documented JSON protocol (full snapshots in pages, and deltas
since a version; docs/snapshot.md) serves N keys. Envoy loads them (RSS and load time noted),
then N rotations arrive as deltas of ROUND keys each (each key gets a new hash: the old one is
deleted, the new one upserted), the way the control service publishes `POST
/v1/keys/{id}/rotate`; RSS is noted again. Then, with wrk sending a valid key at a steady rate,
the server changes its epoch so the filter loads all N keys again, and the latency of the
requests served during that load is compared with the same load on an idle store.

Usage: bench/store_churn.py [N] [ROUND]   (defaults 1000000, 10000). Loopback only; every wait
is bounded. Prints one JSON object (also returned by `measure`, which `bench/run.py` calls).
"""
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.paths import ROOT, SYNC_TOKEN
from keygate_testkit.ports import free_port
from keygate_testkit.processes import rss_mb
from keygate_testkit.snapshot_server import key_record
from keygate_testkit.upstream import Upstream
from keygate_testkit.waiting import wait_until

LUA = ROOT / "bench/report.lua"


def secret(index, round_):
    return f"pk_live_churn{round_:04d}x{index:030d}"


class DeltaServer:
    """Full snapshots in pages and deltas since any version it published, as JSON."""

    def __init__(self, count):
        self.lock = threading.Lock()
        self.epoch = "churn-1"
        self.version = 1
        # key index → (hash, record JSON text); records are serialised once.
        self.keys = {}
        self.order = []
        self.deltas = {}  # version → (upserted JSON texts, deleted hashes)
        for i in range(count):
            self.keys[i] = self.encode(i, 0)
        self.sort()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server naming
                if self.headers.get("authorization") != f"Bearer {SYNC_TOKEN}":
                    return self.send(401, b"{}")
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                return self.send(200, server.page(query))

            def send(self, status, body):
                if body is None:
                    status, body = 304, b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def sort(self):
        # In hash order, as the control service pages a full snapshot: each page then fills
        # its own run of the filter's shards.
        self.order = sorted(self.keys, key=lambda i: self.keys[i][0])

    @staticmethod
    def encode(index, round_):
        record = key_record(secret(index, round_), f"key_{index}")
        return record["hash"], json.dumps(record, separators=(",", ":"))

    def page(self, query):
        """The answer to one GET: bytes, or None for 304."""
        with self.lock:
            since, epoch = query.get("since"), query.get("epoch")
            if since is not None and epoch == self.epoch and "cursor" not in query:
                since = int(since)
                if since == self.version:
                    return None
                if all(v in self.deltas for v in range(since + 1, self.version + 1)):
                    upserts, deleted = [], []
                    for v in range(since + 1, self.version + 1):
                        upserts += self.deltas[v][0]
                        deleted += self.deltas[v][1]
                    return (f'{{"version":{self.version},"epoch":"{self.epoch}","full":false,"since":{since},'
                            f'"keys":[{",".join(upserts)}],"deleted":{json.dumps(deleted)}}}').encode()
            cursor, limit = int(query.get("cursor", 0)), int(query.get("limit", 10000))
            chunk = [self.keys[i][1] for i in self.order[cursor:cursor + limit]]
            more = f',"next_cursor":"{cursor + limit}"' if cursor + limit < len(self.order) else ""
            return (f'{{"version":{self.version},"epoch":"{self.epoch}","full":true,"since":0,'
                    f'"keys":[{",".join(chunk)}]{more}}}').encode()

    def rotate(self, indices, round_):
        with self.lock:
            upserts, deleted = [], []
            for i in indices:
                deleted.append(self.keys[i][0])
                self.keys[i] = self.encode(i, round_)
                upserts.append(self.keys[i][1])
            self.version += 1
            self.deltas[self.version] = (upserts, deleted)
            # Only recent deltas are kept, as a real feed would; older bases get a full snapshot.
            self.deltas.pop(self.version - 50, None)
            return self.version

    def new_epoch(self):
        with self.lock:
            self.epoch = f"churn-{int(self.epoch.split('-')[1]) + 1}"
            self.version += 1
            self.deltas.clear()
            self.sort()

    def close(self):
        self.httpd.shutdown()


def wrk(port, key, seconds, connections=4):
    env = dict(os.environ, BENCH_KEY=key, BENCH_PATH="/v1/models")
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "2s",
                          "-s", str(LUA), f"http://127.0.0.1:{port}"],
                         env=env, capture_output=True, text=True, timeout=seconds + 30).stdout
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON "):])
            return {"requests": data["requests"], "non2xx": data["non2xx"], "p50_ms": data["p50_us"] / 1000,
                    "p99_ms": data["p99_us"] / 1000, "p999_ms": data["p999_us"] / 1000, "max_ms": data["max_us"] / 1000}
    raise RuntimeError(f"wrk gave no result: {out}")


def measure(count=1_000_000, round_size=10_000, workers=4, log=print):
    server = DeltaServer(count)
    upstream = Upstream()
    config = plugin_config(control={"refresh_interval": "200ms", "timeout": "30s", "page_size": 10000,
                                    "long_poll_wait": "0s"})
    proxy = Envoy(upstream.port, server.port, config, concurrency=workers, direct_response=True)
    result = {"keys": count, "round": round_size, "workers": workers}
    try:
        started = time.monotonic()
        wait_until(lambda: proxy.stat("keygate_keys_loaded") == count, timeout=600, interval=0.1,
                   what=f"{count} keys loaded")
        result["load_s"] = round(time.monotonic() - started, 2)
        time.sleep(3)  # the sweep of the spare set and any settling
        result["rss_loaded_mb"] = round(rss_mb(proxy.proc.pid), 1)
        log(f"store churn: {count:,} keys loaded in {result['load_s']} s, RSS {result['rss_loaded_mb']} MB")

        began = time.monotonic()
        rounds = (count + round_size - 1) // round_size
        for r in range(1, rounds + 1):
            version = server.rotate(range((r - 1) * round_size, min(r * round_size, count)), r)
            wait_until(lambda: proxy.stat("keygate_snapshot_version") >= version, timeout=60, interval=0.02,
                       what=f"rotation round {r} applied")
        result["rotations"] = count
        result["rotation_s"] = round(time.monotonic() - began, 1)
        time.sleep(3)
        result["rss_rotated_mb"] = round(rss_mb(proxy.proc.pid), 1)
        result["rss_growth_pct"] = round(100 * (result["rss_rotated_mb"] / result["rss_loaded_mb"] - 1), 1)
        assert proxy.get("/v1/models", secret(count - 1, rounds)).status_code == 200, "a rotated key works"
        assert proxy.get("/v1/models", secret(count - 1, 0)).status_code == 401, "its old secret does not"
        log(f"store churn: {count:,} rotations in {result['rotation_s']} s, RSS {result['rss_rotated_mb']} MB "
            f"({result['rss_growth_pct']:+} %)")

        key = secret(0, 1)
        idle = wrk(proxy.port, key, 5)
        reloads = proxy.stat("keygate_snapshot_refresh_ok")
        box = {}
        runner = threading.Thread(target=lambda: box.update(w=wrk(proxy.port, key, 15)))
        runner.start()
        time.sleep(0.5)
        server.new_epoch()
        load_began = time.monotonic()
        wait_until(lambda: proxy.stat("keygate_snapshot_refresh_ok") > reloads
                   and proxy.stat("keygate_snapshot_version") == server.version,
                   timeout=120, interval=0.05, what="full reload")
        result["reload_s"] = round(time.monotonic() - load_began, 2)
        runner.join(timeout=60)
        result["latency_idle"] = idle
        result["latency_during_load"] = box.get("w")
        time.sleep(5)
        result["rss_after_reload_mb"] = round(rss_mb(proxy.proc.pid), 1)
        log(f"store churn: full reload {result['reload_s']} s; p99 idle {idle['p99_ms']} ms, during the load "
            f"{box.get('w', {}).get('p99_ms')} ms; RSS after reload and sweep {result['rss_after_reload_mb']} MB")
        return result
    finally:
        proxy.close()
        upstream.close()
        server.close()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    print(json.dumps(measure(n, size)), flush=True)
