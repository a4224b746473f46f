"""A mesh-sized fleet, for real: six Envoys (one worker each, as sidecars run) whose
keygate_control cluster lists two control-service replicas on one PostgreSQL, sharing their fleet
counts through one Redis. A key limited per (short) minute, offered several times its limit
round-robin over the six, is admitted within the documented bound in every window; SIGKILL of a
replica mid-run changes nothing beyond it (docs/rate-limits.md, "The overshoot bound")."""

import signal
import time

import pytest
import requests

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.redis import RedisServer
from keygate_testkit.waiting import wait_until

ENVOYS = 6
SYNC_INTERVAL_S = 0.5
# The replicas' flush interval (control/src/fleet/redis.rs), counted twice in the delay.
FLUSH_INTERVAL_S = 0.25
# A sync's round trip on loopback is milliseconds; this allows for a loaded 2-core machine.
ROUND_TRIP_BUDGET_S = 0.25
WINDOW_S, LIMIT, RATE = 10, 30, 12.0
RUN_WINDOWS = 3


def admitted_per_window(times, window_s):
    """The most requests admitted in any interval of `window_s` seconds."""
    most = 0
    for i, start in enumerate(times):
        most = max(most, sum(1 for t in times[i:] if t < start + window_s))
    return most


@pytest.fixture
def mesh(upstream, postgres_cluster, tmp_path):
    redis_server = RedisServer(tmp_path / "redis").start()
    url = postgres_cluster.new_database()
    replicas, proxies = [], []
    config = plugin_config(
        control={"long_poll_wait": "5s"},
        rate_limits={"sync_interval": f"{int(SYNC_INTERVAL_S * 1000)}ms",
                     "minute_window": f"{WINDOW_S}s"},
    )
    try:
        for n in range(2):
            replicas.append(ControlService(url, tmp_path / f"replica-{n}.log", cluster=postgres_cluster,
                                           extra_args=["--redis-url", redis_server.url]).start())
        for _ in range(ENVOYS):
            proxies.append(Envoy(upstream.port, [replica.port for replica in replicas], config,
                                 concurrency=1, direct_response=True))
        yield replicas, proxies, redis_server
    finally:
        for proxy in proxies:
            proxy.close()
        for replica in replicas:
            replica.stop()
        redis_server.close()


def test_six_envoys_two_replicas_and_redis_hold_the_bound_through_a_replica_kill(mesh):
    replicas, proxies, _ = mesh
    key = replicas[0].create_key(name="mesh limited", scopes=["list_models"],
                                 limits={"per_minute": LIMIT})
    for proxy in proxies:
        wait_until(lambda p=proxy: p.get("/v1/jobs", key["key"], method="POST").status_code == 403,
                   timeout=20, what="the key to reach every Envoy")
    delay = 2 * SYNC_INTERVAL_S + ROUND_TRIP_BUDGET_S + 2 * FLUSH_INTERVAL_S
    bound = LIMIT + (ENVOYS - 1) / ENVOYS * RATE * delay
    admitted, statuses = [], []
    killed_at = None
    started = time.monotonic()
    total = int(RATE * WINDOW_S * RUN_WINDOWS)
    for n in range(total):
        due = started + n / RATE
        time.sleep(max(0.0, due - time.monotonic()))
        if killed_at is None and n >= total // 2:
            replicas[0].proc.send_signal(signal.SIGKILL)
            replicas[0].proc.wait(timeout=10)
            killed_at = time.monotonic()
        answer = proxies[n % ENVOYS].get("/v1/models", key["key"])
        statuses.append(answer.status_code)
        assert answer.status_code in (200, 429), answer.text
        if answer.status_code == 200:
            admitted.append(time.monotonic())
    most = admitted_per_window(admitted, WINDOW_S)
    after_kill = admitted_per_window([t for t in admitted if t >= killed_at], WINDOW_S)
    print(f"offered {RATE}/s over {ENVOYS} Envoys for {WINDOW_S * RUN_WINDOWS}s against {LIMIT} per "
          f"{WINDOW_S}s, replica 1 killed half-way: at most {most} admitted in any {WINDOW_S}s "
          f"({after_kill} after the kill; bound {bound:.1f}; per-Envoy counting would allow "
          f"{ENVOYS * LIMIT})")
    assert most <= bound, (most, bound)
    # The fleet still admits its limit: nothing failed closed, before or after the kill.
    assert most >= LIMIT * 0.8, most
    assert after_kill >= LIMIT * 0.8, after_kill
    assert all(proxy.stat("keygate_ratelimit_sync_ok") > 0 for proxy in proxies)
    # Shared through Redis, not PostgreSQL: the survivor publishes the key and reaches Redis.
    metrics = requests.get(replicas[1].url("/metrics"), timeout=5).text
    assert 'keygate_control_fleet_backend{backend="redis"} 1' in metrics
    assert "keygate_control_fleet_redis_up 1" in metrics
    assert "keygate_control_fleet_published_keys 1" in metrics
    # Honest Envoys at the limit are never taken for forgers (fleet::bounds), with the key's
    # limit known to the replica.
    assert "keygate_control_fleet_implausible_counts_total 0" in metrics
    assert "keygate_control_fleet_bounded_keys 0" not in metrics
    assert replicas[1].sql("SELECT COUNT(*) FROM fleet_counts") == [(0,)]
