"""Real control service + real Envoy: keys created, revoked, rotated and deleted through the
admin API take effect in the proxy within one refresh (or at once with long polling), and
the proxy keeps serving when the control service goes away."""
import time

import pytest

from harness import ControlService, Envoy, Upstream, plugin_config, wait_until


@pytest.fixture(scope="module")
def upstream():
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def control():
    service = ControlService()
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
    control = ControlService()
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
