"""Sixty seconds of mixed traffic through Envoy with four workers while keys are created and
revoked every second: no 5xx, no panic, and every revoked key refused within one refresh.
Bounded: LOAD_SECONDS (default 60) of traffic from a fixed pool of threads."""
import os
import random
import threading
import time
from collections import Counter

import pytest
import requests

from harness import ControlService, Envoy, plugin_config

LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
THREADS = 8
REFRESH_S = 1.0


def test_mixed_load_with_key_churn(upstream):
    control = ControlService()
    config = plugin_config(
        control={"refresh_interval": f"{int(REFRESH_S * 1000)}ms", "long_poll_wait": "10s"},
        rate_limits={"minute_window": "5s"},
        usage={"report_interval": "2s"},
    )
    proxy = Envoy(upstream.port, control.port, config, concurrency=4)
    try:
        valid = [control.create_key(name=f"valid-{i}", plan="enterprise")["key"] for i in range(5)]
        limited = [control.create_key(name=f"limited-{i}", limits={"per_minute": 5})["key"] for i in range(3)]
        for key in valid + limited:
            proxy.wait_for_status("/v1/models", key, 200, timeout=10)
        invalid = ["pk_live_" + "x" * 40, "not a key", "pk_live_" + "y" * 300]
        revoked = []  # (secret, revoked at) — checked by the traffic threads
        lock = threading.Lock()
        statuses = Counter()
        late_revocations = []
        stop_at = time.monotonic() + LOAD_SECONDS

        def traffic(seed):
            rng = random.Random(seed)
            session = requests.Session()
            while time.monotonic() < stop_at:
                kind = rng.random()
                with lock:
                    revoked_now = list(revoked)
                if kind < 0.4:
                    key, expect = rng.choice(valid), {200}
                elif kind < 0.6:
                    key, expect = rng.choice(limited), {200, 429}
                elif kind < 0.8:
                    key, expect = rng.choice(invalid), {401}
                elif revoked_now:
                    key, revoked_at = rng.choice(revoked_now)
                    expect = {401} if time.monotonic() - revoked_at > REFRESH_S + 1 else {200, 401}
                else:
                    continue
                response = session.get(proxy.url("/v1/models"), headers={"Authorization": f"Bearer {key}"}, timeout=10)
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code not in expect:
                        late_revocations.append((response.status_code, response.text[:200]))

        def churn():
            while time.monotonic() < stop_at - 1:
                created = control.create_key(name="churn")
                assert control.admin("PATCH", f"/v1/keys/{created['id']}", json={"active": False}).status_code == 200
                with lock:
                    revoked.append((created["key"], time.monotonic()))
                time.sleep(1)

        threads = [threading.Thread(target=traffic, args=(i,)) for i in range(THREADS)]
        threads.append(threading.Thread(target=churn))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=LOAD_SECONDS + 60)
        total = sum(statuses.values())
        print(f"load: {total} requests in {LOAD_SECONDS:.0f}s, statuses {dict(statuses)}, {len(revoked)} keys churned")
        assert total > LOAD_SECONDS * 50, statuses
        assert not [s for s in statuses if s >= 500], statuses
        assert statuses[429] > 0 and statuses[401] > 0 and statuses[200] > 0, statuses
        assert not late_revocations, late_revocations[:5]
        assert len(revoked) >= LOAD_SECONDS / 2
        assert proxy.proc.poll() is None
        logs = proxy.logs()
        assert "panicked" not in logs and "Wasm VM failed" not in logs
    finally:
        proxy.close()
        control.stop()
