"""Per-key rate limits, concurrency limits, quotas and usage reports in a real Envoy with four
workers. Windows are shortened through the filter's config (`rate_limits.minute_window`) so
tests run in seconds; the code path is the production one.

Timing on a loaded machine: waits are conditions polled with a deadline; where a test needs
requests to overlap, they are held far longer than scheduling can delay them, or the overlap is
checked (Envoy's count of active upstream requests) before the test relies on it."""
import calendar
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.snapshot_server import SnapshotServer, key_record
from keygate_testkit.waiting import wait_until

BURSTY = "pk_live_" + "bursty000000000000000000000000000000000"
PATIENT = "pk_live_" + "patient00000000000000000000000000000000"
SERIAL = "pk_live_" + "serial000000000000000000000000000000000"
UNLIMITED = "pk_live_" + "unlimited0000000000000000000000000000000"
OVER_QUOTA = "pk_live_" + "overquota0000000000000000000000000000000"
DAILY = "pk_live_" + "daily00000000000000000000000000000000000"
BUSY = "pk_live_" + "busy0000000000000000000000000000000000000"
BUSY_LIMIT = 1280
WINDOW_S = 10
REPORT_INTERVAL_S = 1
# How long the slow upstream holds the requests that must overlap: far more than a loaded
# machine can delay the start of a burst of six.
HOLD_MS = 4000


def keys():
    quota_until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    return [
        key_record(BURSTY, "key_bursty", limits={"per_minute": 20}),
        key_record(PATIENT, "key_patient", limits={"per_minute": 2}),
        key_record(SERIAL, "key_serial", limits={"concurrent": 2}),
        key_record(UNLIMITED, "key_unlimited"),
        key_record(OVER_QUOTA, "key_over_quota", limits={"per_day": 1000}, quota_exceeded_until=quota_until),
        key_record(DAILY, "key_daily", limits={"per_minute": 100, "per_day": 3}),
        key_record(BUSY, "key_busy", limits={"per_minute": BUSY_LIMIT}),
    ]


@pytest.fixture(scope="module")
def snapshots():
    server = SnapshotServer()
    server.publish(keys())
    yield server
    server.close()


@pytest.fixture(scope="module")
def envoy(upstream, snapshots):
    config = plugin_config(
        rate_limits={"minute_window": f"{WINDOW_S}s"},
        usage={"report_interval": f"{REPORT_INTERVAL_S}s"},
    )
    proxy = Envoy(upstream.port, snapshots.port, config, concurrency=4)
    proxy.wait_for_status("/v1/models", UNLIMITED, 200)
    yield proxy
    proxy.close()


def burst(envoy, key, count, threads=16, headers=None):
    def one(_):
        return envoy.get("/anything", key, headers=headers)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, range(count)))


def upstream_requests_active(envoy):
    """Requests Envoy has forwarded to the upstream and not finished: admitted by the filter."""
    return envoy.stats().get('envoy_cluster_upstream_rq_active{envoy_cluster_name="upstream"}', 0)


def test_parallel_burst_admits_exactly_the_limit(envoy):
    started = time.monotonic()
    responses = burst(envoy, BURSTY, 60)
    took = time.monotonic() - started
    statuses = sorted(r.status_code for r in responses)
    # The limit holds in any interval of the window's length; a burst is only "one window" if
    # it fits in one, which it does by two orders of magnitude unless the machine stalls.
    assert took < WINDOW_S, f"the burst took {took:.1f}s, longer than the {WINDOW_S}s window"
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 40, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMIT_EXCEEDED"
    assert error["status"] == 429
    retry_after = int(refused.headers["retry-after"])
    assert error["retry_after"] == retry_after
    assert 1 <= retry_after <= WINDOW_S + 1
    assert refused.headers["x-ratelimit-limit"] == "20"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) >= 1
    assert refused.headers["ratelimit-policy"] == f'"minute";q=20;w={WINDOW_S}'
    assert refused.headers["ratelimit"].startswith('"minute";r=0;t=')


def test_a_busy_key_counted_ahead_admits_exactly_the_limit(envoy):
    """A limit large enough for counting ahead (docs/rate-limits.md): the workers count several
    requests per shared-data write while the key is under half its limit, and one by one after,
    so a burst well over the limit still gets exactly the limit."""
    ahead_before = envoy.stat("keygate_ratelimit_counted_ahead")
    started = time.monotonic()
    responses = burst(envoy, BUSY, 2 * BUSY_LIMIT, threads=32)
    took = time.monotonic() - started
    assert took < WINDOW_S, f"the burst took {took:.1f}s, longer than the {WINDOW_S}s window"
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == BUSY_LIMIT, sorted(set(statuses))
    assert statuses.count(429) == BUSY_LIMIT
    # Counted one by one from half the limit on, so the count went through every value from
    # half to the limit: each remaining below half was told to some request (credited ones are
    # told at least half, what the count ahead of them left).
    remaining = {int(r.headers["x-ratelimit-remaining"]) for r in responses if r.status_code == 200}
    assert set(range(BUSY_LIMIT // 2)) <= remaining, sorted(set(range(BUSY_LIMIT // 2)) - remaining)[:10]
    wait_until(lambda: envoy.stat("keygate_ratelimit_counted_ahead") > ahead_before, timeout=10,
               what="requests counted ahead in the metric")


def test_successes_carry_rate_limit_headers(envoy):
    # The first request of PATIENT to this module's own Envoy: its window is empty.
    first = envoy.get("/v1/models", PATIENT)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit"] == "2"
    assert first.headers["x-ratelimit-remaining"] == "1"
    assert first.headers["ratelimit-policy"] == f'"minute";q=2;w={WINDOW_S}'
    unlimited = envoy.get("/v1/models", UNLIMITED)
    assert unlimited.status_code == 200
    assert "x-ratelimit-limit" not in unlimited.headers


def test_retry_after_is_honoured(envoy):
    responses = [envoy.get("/v1/models", PATIENT) for _ in range(4)]
    refused = [r for r in responses if r.status_code == 429]
    assert refused, [r.status_code for r in responses]
    retry_after = int(refused[-1].headers["retry-after"])
    started = time.monotonic()
    # Not a wait for a condition: waiting exactly Retry-After, as a client would, is what is
    # tested. Load can only make the wait longer, which cannot turn a pass into a failure.
    time.sleep(retry_after)
    allowed = envoy.get("/v1/models", PATIENT)
    assert allowed.status_code == 200, (retry_after, time.monotonic() - started, allowed.text)


def test_daily_window_is_the_tightest(envoy):
    statuses = [envoy.get("/v1/models", DAILY).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = envoy.get("/v1/models", DAILY)
    assert refused.headers["x-ratelimit-limit"] == "3"
    assert int(refused.headers["retry-after"]) > 3600 * 23
    assert refused.headers["ratelimit-policy"] == f'"minute";q=100;w={WINDOW_S}, "day";q=3;w=86400'


def test_concurrency_limit_with_a_slow_upstream(envoy):
    responses = burst(envoy, SERIAL, 6, threads=6, headers={"x-demo-delay-ms": str(HOLD_MS)})
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429, 429, 429], statuses
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["code"] == "CONCURRENCY_LIMIT_EXCEEDED"
        assert refused.headers["retry-after"] == "1"
    # Finished requests give their places back, at the end of their stream (Envoy's log
    # phase, which may run just after the client has its answer).
    wait_until(lambda: envoy.get("/v1/models", SERIAL).status_code == 200, timeout=5, what="places given back")


def hold_request(envoy, key, delay_ms):
    """A request sent on a raw socket and left waiting for a slow upstream; closing the socket
    is the client going away."""
    client = socket.create_connection(("127.0.0.1", envoy.port), timeout=10)
    client.sendall(
        f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"x-demo-delay-ms: {delay_ms}\r\n\r\n".encode()
    )
    return client


def test_client_reset_releases_its_place(envoy):
    # The upstream would hold these for 30 s, far longer than the release is waited for below,
    # so only the clients going away can free the places in time.
    held = [hold_request(envoy, SERIAL, 30_000) for _ in range(2)]
    try:
        wait_until(lambda: upstream_requests_active(envoy) == 2, timeout=10, what="both requests admitted")
        refused = envoy.get("/v1/models", SERIAL)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "CONCURRENCY_LIMIT_EXCEEDED"
    finally:
        for client in held:
            client.close()
    # Envoy resets the abandoned requests upstream, and the filter's end-of-stream hook gives
    # the places back.
    wait_until(lambda: envoy.get("/v1/models", SERIAL).status_code == 200, timeout=10, what="places released")


def test_over_quota_key_gets_quota_exceeded(envoy, snapshots):
    with snapshots.lock:
        record = next(key for key in snapshots.keys if key["id"] == "key_over_quota")
    until = calendar.timegm(time.strptime(record["quota_exceeded_until"], "%Y-%m-%dT%H:%M:%SZ"))
    before = time.time()
    refused = envoy.get("/v1/models", OVER_QUOTA)
    after = time.time()
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "QUOTA_EXCEEDED"
    retry_after = int(refused.headers["retry-after"])
    # The seconds left until the mark's end, whenever this test runs after it was published.
    assert until - after - 1 <= retry_after <= until - before + 1, (retry_after, until - after)
    assert error["retry_after"] == retry_after


def test_usage_reports_match_what_was_sent(upstream):
    server = SnapshotServer()
    server.publish(keys())
    config = plugin_config(rate_limits={"minute_window": f"{WINDOW_S}s"},
                           usage={"report_interval": f"{REPORT_INTERVAL_S}s"})
    proxy = Envoy(upstream.port, server.port, config, concurrency=4)
    try:
        proxy.wait_for_status("/v1/models", UNLIMITED, 200)
        server.usage_status = 503  # the first posts fail and must be retried, not lost
        sent = burst(proxy, BURSTY, 30) + burst(proxy, UNLIMITED, 25)
        sent += [proxy.get("/v1/jobs", key, method="POST") for key in (OVER_QUOTA, OVER_QUOTA)]
        expected_bursty = sum(r.status_code == 200 for r in sent[:30])
        wait_until(lambda: len(server.usage_attempts) >= 2, timeout=10, what="failing usage posts")
        server.usage_status = 200
        expected = {
            "key_bursty": {"allowed": expected_bursty, "RATE_LIMIT_EXCEEDED": 30 - expected_bursty},
            "key_unlimited": {"allowed": 26},  # 25 + the readiness probe
            "key_over_quota": {"allowed": 0, "QUOTA_EXCEEDED": 2},
        }
        wait_until(lambda: server.usage_totals() == expected, timeout=20, what=f"usage totals {expected}")
        # Nothing may be counted twice: one more request, and once a later report has carried
        # it, the totals are exactly one more (a double count posted after the first would be
        # in that report or an earlier one).
        marker = expected["key_unlimited"]["allowed"] + 1
        assert proxy.get("/v1/models", UNLIMITED).status_code == 200
        expected["key_unlimited"]["allowed"] = marker
        wait_until(lambda: server.usage_totals()["key_unlimited"]["allowed"] >= marker, timeout=20,
                   what="the last request reported")
        assert server.usage_totals() == expected, "nothing may be counted twice"
        with server.lock:
            attempts = list(server.usage_attempts)
        ids = [body["batch_id"] for _, body in attempts]
        assert len(set(ids)) < len(ids), "a failed batch must be retried under the same id"
        # One report per interval per Envoy, not one per worker (four workers would post about
        # four times as often). Counted over the whole run rather than gap by gap: a report the
        # loaded machine delays, or the lease moving to another worker, makes one short gap.
        times = [t for t, _ in attempts]
        span = times[-1] - times[0]
        assert len(times) >= 4, times
        assert len(times) - 1 <= span / REPORT_INTERVAL_S + 2, (span, times)
    finally:
        proxy.close()
        server.close()


def test_headers_can_be_turned_off(upstream, snapshots):
    config = plugin_config(rate_limits={"headers": False, "minute_window": f"{WINDOW_S}s"})
    proxy = Envoy(upstream.port, snapshots.port, config)
    try:
        response = proxy.wait_for_status("/v1/models", DAILY, 429)
        assert "x-ratelimit-limit" not in response.headers
        assert "ratelimit" not in response.headers
        assert "retry-after" in response.headers
    finally:
        proxy.close()
