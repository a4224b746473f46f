"""Real control service + real Envoy: keys created, revoked, rotated and deleted through the
admin API take effect in the proxy within one refresh (or at once with long polling), and
the proxy keeps serving when the control service goes away."""
import datetime
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.waiting import wait_until


@pytest.fixture(scope="module")
def control():
    service = ControlService().start()
    yield service
    service.stop()


def test_key_lifecycle_through_envoy_with_polling(upstream, control):
    """Plain polling every second: changes land within one refresh."""
    proxy = Envoy(upstream.port, control.port, plugin_config(control={"refresh_interval": "1s"}))
    try:
        created = control.create_key(name="lifecycle", scopes=["list_models"])
        secret, key_id = created["key"], created["id"]
        started = time.monotonic()
        seen = proxy.wait_for_status("/v1/models", secret, 200, timeout=5).json()
        assert seen["headers"]["x-keygate-key-id"] == key_id
        assert time.monotonic() - started < 3.0, "a new key should work within one refresh"
        assert proxy.get("/v1/jobs", secret, method="POST").status_code == 403

        assert control.admin("PATCH", f"/v1/keys/{key_id}", json={"active": False}).status_code == 200
        denied = proxy.wait_for_status("/v1/models", secret, 401, timeout=3)
        assert denied.json()["error"]["code"] == "API_KEY_INACTIVE"

        assert control.admin("PATCH", f"/v1/keys/{key_id}", json={"active": True}).status_code == 200
        proxy.wait_for_status("/v1/models", secret, 200, timeout=3)

        assert control.admin("DELETE", f"/v1/keys/{key_id}").status_code == 204
        gone = proxy.wait_for_status("/v1/models", secret, 401, timeout=3)
        assert gone.json()["error"]["code"] == "INVALID_API_KEY"
    finally:
        proxy.close()


def test_revocation_is_near_instant_with_long_polling(upstream, control):
    config = plugin_config(control={"refresh_interval": "30s", "long_poll_wait": "20s", "timeout": "2s"})
    proxy = Envoy(upstream.port, control.port, config, concurrency=4)
    try:
        created = control.create_key(name="long-poll")
        secret, key_id = created["key"], created["id"]
        # With a 30 s interval only the long poll can deliver this quickly.
        proxy.wait_for_status("/v1/models", secret, 200, timeout=5)
        latencies = []
        for _ in range(3):
            started = time.monotonic()
            assert control.admin("PATCH", f"/v1/keys/{key_id}", json={"active": False}).status_code == 200
            proxy.wait_for_status("/v1/models", secret, 401, timeout=5)
            latencies.append(time.monotonic() - started)
            assert control.admin("PATCH", f"/v1/keys/{key_id}", json={"active": True}).status_code == 200
            proxy.wait_for_status("/v1/models", secret, 200, timeout=5)
        assert max(latencies) < 1.5, latencies
        assert proxy.stat("keygate_snapshot_refresh_ok") >= 6
    finally:
        proxy.close()


def test_rotation_keeps_both_keys_during_the_grace(upstream, control):
    proxy = Envoy(upstream.port, control.port, plugin_config(control={"long_poll_wait": "10s"}))
    try:
        old = control.create_key(name="rotating", scopes=["check_status"])
        proxy.wait_for_status("/v1/jobs/1", old["key"], 200, timeout=5)
        rotated = control.admin("POST", f"/v1/keys/{old['id']}/rotate", json={"grace_seconds": 2})
        assert rotated.status_code == 201, rotated.text
        new = rotated.json()
        proxy.wait_for_status("/v1/jobs/1", new["key"], 200, timeout=5)
        assert proxy.get("/v1/jobs/1", old["key"]).status_code == 200
        # After the grace the old key expires on the proxy's own clock.
        expired = proxy.wait_for_status("/v1/jobs/1", old["key"], 401, timeout=6)
        assert expired.json()["error"]["code"] == "API_KEY_EXPIRED"
        assert proxy.get("/v1/jobs", new["key"], method="POST").status_code == 403
    finally:
        proxy.close()


def test_control_service_killed_then_back(upstream):
    control = ControlService().start()
    proxy = Envoy(upstream.port, control.port, plugin_config(control={"long_poll_wait": "5s"}))
    try:
        kept = control.create_key(name="kept")
        proxy.wait_for_status("/v1/models", kept["key"], 200, timeout=5)
        control.stop(hard=True)
        failed = proxy.stat("keygate_snapshot_refresh_failed")
        wait_until(lambda: proxy.stat("keygate_snapshot_refresh_failed") > failed, timeout=15, what="failed refresh")
        for _ in range(10):
            assert proxy.get("/v1/models", kept["key"]).status_code == 200
        control.start()
        added = control.create_key(name="after restart")
        proxy.wait_for_status("/v1/models", added["key"], 200, timeout=40)
        assert proxy.get("/v1/models", kept["key"]).status_code == 200
    finally:
        proxy.close()
        control.stop()


def test_quota_holds_across_two_envoys_and_usage_adds_up(upstream, control):
    """Two Envoys report usage to one control service; once the fleet has used the monthly
    quota (which only the control service can see), both answer QUOTA_EXCEEDED until the
    month ends."""
    config = plugin_config(control={"long_poll_wait": "5s"}, usage={"report_interval": "1s"})
    first = Envoy(upstream.port, control.port, config)
    second = Envoy(upstream.port, control.port, config)
    try:
        key = control.create_key(name="fleet", limits={"per_month": 10})
        for proxy in (first, second):
            proxy.wait_for_status("/v1/models", key["key"], 200, timeout=5)
        sent = 2
        for _ in range(4):
            for proxy in (first, second):
                assert proxy.get("/v1/models", key["key"]).status_code == 200
                sent += 1
        # Neither Envoy limits this key by itself: only the fleet-wide quota can stop the next
        # requests (a few more may pass before the usage report and the snapshot mark have gone
        # round: the documented overshoot).
        for proxy in (first, second):
            deadline = time.monotonic() + 15
            while True:
                refused = proxy.get("/v1/models", key["key"])
                if refused.status_code != 200 or time.monotonic() > deadline:
                    break
                sent += 1
                time.sleep(0.2)
            assert refused.status_code == 429, refused.text
            error = refused.json()["error"]
            assert error["code"] == "QUOTA_EXCEEDED", error
            now = datetime.datetime.now(datetime.timezone.utc)
            next_month = (now.replace(day=1) + datetime.timedelta(days=32)).replace(
                day=1, hour=0, minute=0, second=0, microsecond=0
            )
            assert abs(int(refused.headers["retry-after"]) - (next_month - now).total_seconds()) <= 5
        usage = control.admin("GET", f"/v1/keys/{key['id']}/usage?granularity=day")
        assert usage.status_code == 200, usage.text

        def totals():
            body = control.admin("GET", f"/v1/keys/{key['id']}/usage?granularity=day").json()
            return body["totals"]

        wait_until(lambda: totals()["allowed"] == sent and totals()["denied"].get("QUOTA_EXCEEDED", 0) >= 2,
                   timeout=10, what=f"usage of {sent} allowed requests and the refusals")
        assert control.admin("GET", f"/v1/keys/{key['id']}").json()["quota_exceeded_until"]
    finally:
        first.close()
        second.close()


def test_a_paged_compact_snapshot_loads_every_key(upstream, control):
    """The filter asks for the compact encoding: a full snapshot in hash order over several
    pages (hash cursors), then deltas, from the real control service."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda i: control.create_key(name=f"paged {i}"), range(230)))
    proxy = Envoy(upstream.port, control.port,
                  plugin_config(control={"page_size": 100, "refresh_interval": "1s"}))
    try:
        for key in created[::23]:
            seen = proxy.wait_for_status("/v1/models", key["key"], 200, timeout=10).json()
            assert seen["headers"]["x-keygate-key-id"] == key["id"]
        assert proxy.stat("keygate_keys_loaded") >= len(created)
        assert control.admin("DELETE", f"/v1/keys/{created[0]['id']}").status_code == 204
        later = control.create_key(name="after the load")
        proxy.wait_for_status("/v1/models", created[0]["key"], 401, timeout=5)
        proxy.wait_for_status("/v1/models", later["key"], 200, timeout=5)
    finally:
        proxy.close()
