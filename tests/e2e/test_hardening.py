"""Hardening round 2 through a real Envoy: the contract both sides share (a key the admin API
takes is one every Envoy takes; one bad record is quarantined, not the whole sync), scope rules
that hold for path variants, and IPv4-mapped allowlist entries."""
import pytest

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.snapshot_server import SnapshotServer, key_record
from keygate_testkit.waiting import wait_until

VALID = "pk_live_" + "hardening0000000000000000000000000000000"
DAMAGED = "pk_live_" + "damaged00000000000000000000000000000000"
MAPPED = "pk_live_" + "mapped000000000000000000000000000000000"
UNPARSABLE = "pk_live_" + "unparsable00000000000000000000000000000"


@pytest.fixture(scope="module")
def control():
    service = ControlService().start()
    yield service
    service.stop()


def test_a_long_unicode_name_does_not_stop_any_envoy_from_syncing(upstream, control):
    """The break-it finding: a 512-byte name (128 characters) was accepted by the admin API and
    refused by every filter, which then stopped taking changes. Now both sides take it."""
    proxy = Envoy(upstream.port, control.port, plugin_config(control={"long_poll_wait": "10s"}))
    try:
        revoked = control.create_key(name="to be revoked")
        proxy.wait_for_status("/v1/models", revoked["key"], 200, timeout=10)
        long_name = control.admin("POST", "/v1/keys", json={"name": "🔑" * 128})
        assert long_name.status_code == 201, long_name.text
        long_team = control.admin("POST", "/v1/keys", json={"name": "team key", "team": "東" * 90})
        assert long_team.status_code == 201, long_team.text
        for created in (long_name.json(), long_team.json()):
            proxy.wait_for_status("/v1/models", created["key"], 200, timeout=10)
        # The feed keeps flowing: a revocation and a new key after them still land.
        assert control.admin("PATCH", f"/v1/keys/{revoked['id']}", json={"active": False}).status_code == 200
        proxy.wait_for_status("/v1/models", revoked["key"], 401, timeout=10)
        later = control.create_key(name="created afterwards")
        proxy.wait_for_status("/v1/models", later["key"], 200, timeout=10)
        assert proxy.stat("keygate_snapshot_rejected") == 0
        assert proxy.stat("keygate_snapshot_records_quarantined") == 0
    finally:
        proxy.close()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "admin\u202etxt.exe"}, "name"),
        ({"name": "ok", "team": "ops\u200b"}, "team"),
        ({"name": "a\u2066b\u2069"}, "name"),
        ({"name": "🔑" * 129}, "name"),
        ({"name": "ok", "allowed_ips": ["10.0.0.1/8", "10.0.0.0/8"]}, "allowed_ips[1]"),
    ],
)
def test_names_that_could_show_as_another_and_duplicate_networks_are_refused(control, body, field):
    response = control.admin("POST", "/v1/keys", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"].startswith(f"{field}: "), error


def test_allowlists_are_stored_canonical(control):
    created = control.admin(
        "POST", "/v1/keys", json={"name": "canonical", "allowed_ips": ["::ffff:127.0.0.1", "10.1.2.3/8"]}
    )
    assert created.status_code == 201, created.text
    assert created.json()["allowed_ips"] == ["127.0.0.1", "10.0.0.0/8"]


def test_one_bad_record_is_quarantined_and_the_rest_of_the_page_applies(upstream):
    server = SnapshotServer()
    server.publish(
        [key_record(VALID, "key_valid"), key_record(DAMAGED, "key_damaged"), key_record(UNPARSABLE, "key_unparsable")]
    )
    proxy = Envoy(upstream.port, server.port, plugin_config())
    try:
        proxy.wait_for_status("/v1/models", DAMAGED, 200)
        proxy.wait_for_status("/v1/models", UNPARSABLE, 200)
        # A backend sends a record the filter cannot use, beside a change to another key.
        server.publish(
            [
                key_record(VALID, "key_valid", active=False),
                key_record(DAMAGED, "key_damaged", allowed_ips=["10.0.0.0/33"]),
                key_record(UNPARSABLE, "key_unparsable", limits={"per_minute": -1}),
            ]
        )
        inactive = proxy.wait_for_status("/v1/models", VALID, 401, timeout=10)
        assert inactive.json()["error"]["code"] == "API_KEY_INACTIVE"
        # The quarantined key is absent: never its previous version (on every worker, once each
        # has the new snapshot: this server sends full snapshots).
        for secret in (DAMAGED, UNPARSABLE):
            proxy.wait_for_error("/v1/models", secret, 401, "INVALID_API_KEY", timeout=1)
        wait_until(
            lambda: proxy.stat("keygate_snapshot_records_quarantined") >= 2, timeout=10, what="quarantine metric"
        )
        assert proxy.stat("keygate_snapshot_rejected") == 0
        log = proxy.logs()
        assert "key_damaged" in log and "allowed_ips[0]" in log, log[-2000:]
        assert "key_unparsable" in log and "limits.per_minute" in log, log[-2000:]
        # Fixed at the source, the key comes back.
        server.publish([key_record(VALID, "key_valid"), key_record(DAMAGED, "key_damaged")])
        proxy.wait_for_status("/v1/models", DAMAGED, 200, timeout=10)
    finally:
        proxy.close()
        server.close()


def test_ipv4_mapped_entries_match_ipv4_clients(upstream):
    """`::ffff:127.0.0.1` from a backend that does not canonicalise it still means 127.0.0.1."""
    server = SnapshotServer()
    server.publish([key_record(MAPPED, "key_mapped", allowed_ips=["::ffff:127.0.0.1"])])
    proxy = Envoy(upstream.port, server.port, plugin_config())
    try:
        proxy.wait_for_status("/v1/models", MAPPED, 200)
        server.publish([key_record(MAPPED, "key_mapped", allowed_ips=["::ffff:10.0.0.1"])])
        denied = proxy.wait_for_status("/v1/models", MAPPED, 403, timeout=10)
        assert denied.json()["error"]["code"] == "IP_NOT_WHITELISTED"
    finally:
        proxy.close()
        server.close()


ROUTES = {
    "submit_job": ("POST", "/v1/jobs"),
    "check_status": ("GET", "/v1/jobs/123"),
    "list_models": ("GET", "/v1/models"),
}


def variants(path):
    """Ways of writing `path` that an upstream may route as `path`."""
    head, _, last = path.rpartition("/")
    found = [
        path + ";x",
        path + ";jsessionid=1",
        path + ";",
        path + "%3Bx",
        path + "%3bx",
        path.upper(),
        head + "/" + last.capitalize(),
        "/V1" + path[3:],
        "/v1;a=b" + path[3:],
    ]
    if last == "123":
        found += [head + "/123;x", head.upper() + "/123", head + "/123%3B.json"]
    return found


CASES = [(scope, method, variant) for scope, (method, path) in ROUTES.items() for variant in variants(path)]


@pytest.fixture(scope="module")
def scoped_envoy(upstream):
    server = SnapshotServer()
    server.publish(
        [key_record(f"pk_live_without_{scope}_" + "0" * 24, f"key_no_{scope}", scopes=[s for s in ROUTES if s != scope])
         for scope in ROUTES]
        + [key_record("pk_live_all_scopes_" + "0" * 24, "key_all", scopes=list(ROUTES))]
    )
    proxy = Envoy(upstream.port, server.port, plugin_config())
    proxy.wait_for_status("/v1/models", "pk_live_all_scopes_" + "0" * 24, 200)
    yield proxy
    proxy.close()
    server.close()


@pytest.mark.parametrize("scope, method, path", CASES, ids=[f"{s}:{m} {p}" for s, m, p in CASES])
def test_path_variants_need_the_scope_of_the_path_they_stand_for(scoped_envoy, scope, method, path):
    response = scoped_envoy.get(path, f"pk_live_without_{scope}_" + "0" * 24, method=method)
    assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.text[:200]}"
    error = response.json()["error"]
    assert error["code"] == "OPERATION_NOT_ALLOWED"
    assert f'scope="{scope}"' in response.headers["www-authenticate"]
    # The key that holds the scope gets through on the same variant.
    allowed = scoped_envoy.get(path, "pk_live_all_scopes_" + "0" * 24, method=method)
    assert allowed.status_code == 200, f"{method} {path}: {allowed.status_code} {allowed.text[:200]}"


def test_deny_unmatched_refuses_requests_no_rule_names(upstream):
    server = SnapshotServer()
    server.publish([key_record(VALID, "key_valid")])
    proxy = Envoy(upstream.port, server.port, plugin_config(deny_unmatched=True))
    try:
        proxy.wait_for_status("/v1/models", VALID, 200)
        for method, path in [("GET", "/v1/other"), ("DELETE", "/v1/jobs/1"), ("GET", "/v1/models;x/y")]:
            response = proxy.get(path, VALID, method=method)
            assert response.status_code == 403, f"{method} {path}"
            assert response.json()["error"]["code"] == "OPERATION_NOT_ALLOWED"
    finally:
        proxy.close()
        server.close()
