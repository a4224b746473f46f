"""Proxy identity with real Envoys (docs/security.md, "Proxy identity"), the shared sync token
switched off: three Envoys enroll with one enrollment token under their node ids, show up live
in the fleet list and have their usage recorded under their identities; a revoked one is
stopped at its next call while the others serve on (it never sees a later key); one frozen with
SIGSTOP turns stale and comes back live; one restarted enrolls again under its name and keeps its
identity and history."""

import signal

import pytest

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.paths import BUILD
from keygate_testkit.waiting import wait_until

STALE_AFTER_S = 6


def listed(control):
    answer = control.admin("GET", "/v1/proxies")
    assert answer.status_code == 200, answer.text
    return {proxy["name"]: proxy for proxy in answer.json()["proxies"]}


def enrolling_config(token):
    config = plugin_config(control={"long_poll_wait": "2s", "refresh_interval": "1s"},
                           usage={"report_interval": "1s"})
    del config["control"]["token"]
    config["control"]["enrollment_token"] = token
    config["control"]["proxy_labels"] = {"zone": "test"}
    return config


@pytest.fixture(params=["sqlite", "postgres"])
def fleet(request, upstream, tmp_path):
    cluster = request.getfixturevalue("postgres_cluster") if request.param == "postgres" else None
    database = cluster.new_database() if cluster else tmp_path / "keygate.db"
    control = ControlService(database, tmp_path / "control.log", cluster=cluster, extra_env={
        "KEYGATE_NO_SHARED_SYNC_TOKEN": "true",
        "KEYGATE_PROXY_STALE_AFTER": f"{STALE_AFTER_S}s",
    }).start()
    made = control.admin("POST", "/v1/enrollment-tokens", json={"name": "mesh"})
    assert made.status_code == 201, made.text
    config = enrolling_config(made.json()["token"])
    envoys = {}

    def start(name):
        # The native build cannot read Envoy's node id through the dynamic-module ABI: it
        # enrolls under control.proxy_name (docs/native.md).
        named = dict(config, control=dict(config["control"], proxy_name=name)) if BUILD == "native" else config
        envoys[name] = Envoy(upstream.port, control.port, named, concurrency=1,
                             extra_args=["--service-node", name])
        return envoys[name]

    try:
        for n in range(3):
            start(f"envoy-{n}")
        yield control, envoys, start
    finally:
        for envoy in envoys.values():
            envoy.proc.send_signal(signal.SIGCONT)
            envoy.close()
        control.stop()


def test_a_fleet_enrolls_is_seen_and_a_revoked_proxy_is_stopped(fleet):
    control, envoys, start = fleet
    key = control.create_key(name="fleet key")
    for envoy in envoys.values():
        envoy.wait_for_status("/v1/models", key["key"], 200, timeout=15)
    proxies = wait_until(lambda: (seen := listed(control)) and all(
        seen.get(name, {}).get("state") == "live" and seen[name]["last_report"]["at"] for name in envoys) and seen,
        timeout=20, what=f"every Envoy live with a usage report: {listed(control)}")
    assert len({proxies[name]["id"] for name in envoys}) == 3
    assert all(proxies[name]["labels"] == {"zone": "test"} for name in envoys)
    assert all(proxies[name]["version"] for name in envoys)
    for name in envoys:
        reports = control.admin("GET", f"/v1/proxies/{proxies[name]['id']}/reports").json()
        assert reports["allowed"] >= 1, (name, reports)

    # Revoked: its next call is refused; the others serve on and get a new key.
    revoked = proxies["envoy-0"]["id"]
    assert control.admin("DELETE", f"/v1/proxies/{revoked}").status_code == 204
    wait_until(lambda: "this name was revoked" in envoys["envoy-0"].logs(), timeout=15,
               what="the revoked Envoy refused and its enrollment refused")
    later = control.create_key(name="after the revocation")
    for name in ("envoy-1", "envoy-2"):
        envoys[name].wait_for_status("/v1/models", later["key"], 200, timeout=10)
    assert envoys["envoy-0"].get("/v1/models", later["key"]).status_code == 401
    assert envoys["envoy-0"].get("/v1/models", key["key"]).status_code == 200, "its last snapshot serves"
    assert listed(control)["envoy-0"]["state"] == "revoked"

    # Frozen: stale after the bound, live again once it runs.
    envoys["envoy-1"].proc.send_signal(signal.SIGSTOP)
    wait_until(lambda: listed(control)["envoy-1"]["state"] == "stale", timeout=STALE_AFTER_S + 15,
               what="the frozen Envoy listed stale")
    assert listed(control)["envoy-2"]["state"] == "live"
    envoys["envoy-1"].proc.send_signal(signal.SIGCONT)
    wait_until(lambda: listed(control)["envoy-1"]["state"] == "live", timeout=15,
               what="the thawed Envoy live again")

    # Restarted: enrolls again under its node id, same identity, history kept.
    before = listed(control)["envoy-2"]
    envoys["envoy-2"].close()
    restarted = start("envoy-2")
    restarted.wait_for_status("/v1/models", later["key"], 200, timeout=15)
    after = wait_until(lambda: (p := listed(control)["envoy-2"])["enrolled_at"] != before["enrolled_at"] and p,
                       timeout=15, what="the restarted Envoy enrolled again")
    assert after["id"] == before["id"] and after["created_at"] == before["created_at"]
    assert control.admin("GET", f"/v1/proxies/{after['id']}/reports").json()["allowed"] >= 1
