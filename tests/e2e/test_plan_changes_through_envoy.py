"""Plans as data through a real Envoy: changing a plan's limits reaches every key on it in the
next snapshot delta, and the long poll delivers it in about a second."""
import time
import uuid

import pytest

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config


@pytest.fixture(scope="module")
def control():
    service = ControlService().start()
    yield service
    service.stop()


def test_a_plan_change_reaches_its_keys_in_envoy(upstream, control):
    config = plugin_config(control={"refresh_interval": "30s", "long_poll_wait": "20s", "timeout": "2s"})
    proxy = Envoy(upstream.port, control.port, config)
    try:
        name = f"tight-{uuid.uuid4().hex[:8]}"
        created = control.admin("POST", "/v1/plans", json={"name": name, "per_minute": 2})
        assert created.status_code == 201, created.text
        key = control.create_key(name="on-a-plan", plan=name)
        assert key["effective_limits"]["per_minute"] == 2
        proxy.wait_for_status("/v1/models", key["key"], 200, timeout=5)
        assert proxy.get("/v1/models", key["key"]).status_code == 200
        refused = proxy.get("/v1/models", key["key"])
        assert refused.status_code == 429, refused.text

        started = time.monotonic()
        patched = control.admin("PATCH", f"/v1/plans/{name}", json={"per_minute": 100})
        assert patched.status_code == 200, patched.text
        # With a 30 s interval only the long poll can deliver this in time.
        proxy.wait_for_status("/v1/models", key["key"], 200, timeout=2.5)
        assert time.monotonic() - started < 2.5
        assert control.admin("GET", f"/v1/keys/{key['id']}").json()["effective_limits"]["per_minute"] == 100
    finally:
        proxy.close()
