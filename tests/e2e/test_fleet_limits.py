"""Fleet-wide rate limits through real Envoys on one real control service: a key's per-minute
limit holds across Envoys within the documented overshoot bound (docs/rate-limits.md), traffic
through one Envoy still gets the whole limit, the headers show the fleet-wide remaining, and a
control service that dies costs fleet enforcement, never availability."""

import hashlib
import time

import pytest
import requests

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.paths import SYNC_TOKEN
from keygate_testkit.waiting import wait_until

SYNC_INTERVAL_S = 0.5
# A sync's round trip on loopback is milliseconds; this allows for a loaded 2-core machine.
ROUND_TRIP_BUDGET_S = 0.25


def fleet_config(sync_encoding="binary"):
    return plugin_config(
        control={"long_poll_wait": "5s"},
        rate_limits={"sync_interval": f"{int(SYNC_INTERVAL_S * 1000)}ms",
                     "sync_encoding": sync_encoding},
    )


CONFIG = fleet_config()
FELL_BACK = "refused the binary fleet sync"


@pytest.fixture
def control():
    service = ControlService().start()
    yield service
    service.stop()


@pytest.fixture
def envoys(upstream, control):
    started = []

    def start(count, config=CONFIG):
        for _ in range(count):
            started.append(Envoy(upstream.port, control.port, config, direct_response=True))
        return started[-count:]

    yield start
    for proxy in started:
        proxy.close()


def syncs(proxy):
    return proxy.stat("keygate_ratelimit_sync_ok")


def await_syncs(proxies, count=2, timeout=15):
    """Waits for `count` more completed syncs of each proxy in turn: two syncs of a proxy have
    posted what it admitted before (a worker hands its slots over within half a sync interval),
    and each later proxy's syncs start after the earlier ones' posts, so they carry the answer."""
    for proxy in proxies:
        begun = syncs(proxy)
        wait_until(lambda p=proxy, b=begun: syncs(p) >= b + count, timeout=timeout,
                   what=f"{count} fleet syncs")


def loaded_key(control, proxies, **limits):
    key = control.create_key(name="fleet limited", scopes=["list_models"], limits=limits)
    for proxy in proxies:
        # Loaded once a route it lacks the scope for answers 403 instead of 401: the scope is
        # checked before the limits, so the probe is not counted.
        wait_until(lambda p=proxy: p.get("/v1/jobs", key["key"], method="POST").status_code == 403,
                   timeout=15, what="the key to reach every Envoy")
    return key


@pytest.mark.parametrize("encodings", [("binary", "binary"), ("binary", "json")],
                         ids=["binary", "binary-then-json"])
def test_a_burst_through_one_envoy_is_refused_by_the_next(control, envoys, encodings):
    """The default binary sync, and an Envoy kept on JSON hearing what a binary one counted."""
    first, = envoys(1, fleet_config(encodings[0]))
    second, = envoys(1, fleet_config(encodings[1]))
    key = loaded_key(control, [first, second], per_minute=6)
    for _ in range(6):
        assert first.get("/v1/models", key["key"]).status_code == 200
    assert first.get("/v1/models", key["key"]).status_code == 429
    await_syncs([first, second])
    refused = second.get("/v1/models", key["key"])
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert second.stat("keygate_ratelimit_refused_by_fleet") >= 1
    for proxy in (first, second):
        assert FELL_BACK not in proxy.logs()


def test_one_envoys_traffic_gets_the_whole_limit_and_headers_are_fleet_wide(control, envoys):
    first, second = envoys(2)
    key = loaded_key(control, [first, second], per_minute=10)
    answers = [first.get("/v1/models", key["key"]) for _ in range(12)]
    assert [answer.status_code for answer in answers] == [200] * 10 + [429] * 2
    other = loaded_key(control, [first, second], per_minute=10)
    for _ in range(3):
        assert first.get("/v1/models", other["key"]).status_code == 200
    await_syncs([first])
    # 3 of 10 is not "hot", so the second Envoy learns of the first's 3 when it syncs the key
    # itself: after its first request of it.
    assert second.get("/v1/models", other["key"]).status_code == 200
    await_syncs([second])
    shown = second.get("/v1/models", other["key"])
    assert shown.status_code == 200
    assert shown.headers["x-ratelimit-remaining"] == str(10 - 3 - 2)


def admitted_per_window(times, window_s):
    """The most requests admitted in any interval of `window_s` seconds."""
    most = 0
    for i, start in enumerate(times):
        most = max(most, sum(1 for t in times[i:] if t < start + window_s))
    return most


def test_round_robin_over_three_envoys_stays_within_the_documented_bound(control, envoys):
    """A 10 s window (the minute_window knob) and 30 requests allowed in it, 15 requests a
    second offered round-robin over three Envoys: without the fleet sync each Envoy would admit
    30 (90 in all); with it, at most L + (N-1)/N * r * (2s + t)."""
    window_s, limit, rate = 10, 30, 15.0
    config = plugin_config(
        control={"long_poll_wait": "5s"},
        rate_limits={"sync_interval": f"{int(SYNC_INTERVAL_S * 1000)}ms",
                     "minute_window": f"{window_s}s"},
    )
    proxies = envoys(3, config)
    key = loaded_key(control, proxies, per_minute=limit)
    bound = limit + (2 / 3) * rate * (2 * SYNC_INTERVAL_S + ROUND_TRIP_BUDGET_S)
    admitted = []
    started = time.monotonic()
    for n in range(int(rate * window_s * 2.5)):
        due = started + n / rate
        time.sleep(max(0.0, due - time.monotonic()))
        answer = proxies[n % 3].get("/v1/models", key["key"])
        assert answer.status_code in (200, 429), answer.text
        if answer.status_code == 200:
            admitted.append(time.monotonic())
    most = admitted_per_window(admitted, window_s)
    print(f"offered {rate}/s over 3 Envoys for {window_s * 2.5:.0f}s against {limit} per {window_s}s: "
          f"at most {most} admitted in any {window_s}s (bound {bound:.1f}, per-Envoy counting "
          f"would allow {3 * limit})")
    assert limit <= most <= bound


def test_a_dead_control_service_means_local_limits_then_fleet_limits_again(control, envoys):
    first, second = envoys(2)
    key = loaded_key(control, [first, second], per_minute=8)
    control.stop(hard=True)
    # Each Envoy enforces its own count: 8 each, no 5xx.
    for proxy in (first, second):
        answers = [proxy.get("/v1/models", key["key"]).status_code for _ in range(10)]
        assert answers == [200] * 8 + [429] * 2, answers
    wait_until(lambda: first.stat("keygate_ratelimit_sync_failed") > 0, timeout=10,
               what="failed syncs to be counted")
    control.start()
    await_syncs([first, second], timeout=45)
    fresh = loaded_key(control, [first, second], per_minute=8)
    for _ in range(8):
        assert first.get("/v1/models", fresh["key"]).status_code == 200
    await_syncs([first, second])
    assert second.get("/v1/models", fresh["key"]).status_code == 429


def test_a_forged_fleet_count_cannot_make_every_envoy_refuse_a_key(control, envoys):
    """The fleet-sync half of issue 30's attack: whoever holds a sync secret posts that it
    admitted 5,000 of a key limited to 6 a minute (declaring the key's real limit, so the count
    is pushed to every Envoy as a key at its limit). Counted, it refused the key fleet-wide for the
    minute (429 at both Envoys with the control service before the bound); it is refused instead
    (docs/security.md, "Implausible fleet counts") and the key keeps working everywhere."""
    first, second = envoys(2)
    key = loaded_key(control, [first, second], per_minute=6)
    version = requests.get(control.url("/v1/snapshot?limit=1"), timeout=10,
                           headers={"Authorization": f"Bearer {SYNC_TOKEN}"}).json()["version"]

    def bounds_version():
        text = requests.get(control.url("/metrics"), timeout=10).text
        (line,) = [line for line in text.splitlines() if line.startswith("keygate_control_fleet_bounds_version ")]
        return int(line.split()[1])
    wait_until(lambda: bounds_version() >= version, timeout=10, what="the limits index to hold the key")
    minute = int(time.time() * 1000) // 2000
    tag = hashlib.sha256(key["key"].encode()).hexdigest()[:32]
    forged = requests.post(control.url("/v1/ratelimits/sync"), timeout=10,
                           headers={"Authorization": f"Bearer {SYNC_TOKEN}"},
                           json={"proxy_id": "evil", "bucket_ms": [2000, 120000, 3600000],
                                 "window_ms": [60000, 3600000, 86400000],
                                 "keys": [{"key": tag, "limits": [6, None, None],
                                           "counts": [[[minute, 5000]], [], []]}]})
    assert forged.status_code == 200, forged.text
    assert [entry["key"] for entry in forged.json()["refused"]] == [tag]
    await_syncs([first, second])
    for proxy in (first, second):
        answer = proxy.get("/v1/models", key["key"])
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-ratelimit-remaining"] in {"4", "5"}
