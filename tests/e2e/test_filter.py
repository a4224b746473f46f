"""The filter inside a real Envoy (--concurrency 2) against a served snapshot: every documented
answer with its exact status, body and headers, and what reaches the upstream."""
import json
import re

import pytest
import requests

from keygate_testkit.paths import BUILD
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.snapshot_server import SnapshotServer, key_record
from keygate_testkit.waiting import wait_until

VALID = "pk_live_" + "A1b2C3d4E5f6G7h8I9j0" * 2
SCOPED = "pk_live_" + "scoped000000000000000000000000000000000"
INACTIVE = "pk_live_" + "inactive0000000000000000000000000000000"
EXPIRED = "pk_live_" + "expired00000000000000000000000000000000"
IP_LOCKED = "pk_live_" + "iplocked0000000000000000000000000000000"
LOOPBACK_ONLY = "pk_live_" + "loopback0000000000000000000000000000000"
V6_ONLY = "pk_live_" + "v6only000000000000000000000000000000000"
TEST_ENV = "pk_test_" + "sandbox0000000000000000000000000000000"
UNKNOWN = "pk_live_" + "unknown00000000000000000000000000000000"

KEYS = [
    key_record(VALID, "key_valid", name="Production server", team="acme"),
    key_record(SCOPED, "key_scoped", scopes=["check_status", "list_models"]),
    key_record(INACTIVE, "key_inactive", active=False),
    key_record(EXPIRED, "key_expired", expires_at="2020-01-01T00:00:00Z"),
    key_record(IP_LOCKED, "key_iplocked", allowed_ips=["10.0.0.0/8", "2001:db8::/32"]),
    key_record(LOOPBACK_ONLY, "key_loopback", allowed_ips=["127.0.0.0/8"]),
    key_record(V6_ONLY, "key_v6", allowed_ips=["::1/128"]),
    key_record(TEST_ENV, "key_test"),
]


@pytest.fixture(scope="module")
def snapshots():
    server = SnapshotServer()
    server.publish(KEYS)
    yield server
    server.close()


@pytest.fixture(scope="module")
def envoy(upstream, snapshots):
    proxy = Envoy(upstream.port, snapshots.port, plugin_config(allowed_prefixes=["pk_live_"]), ipv6=True)
    proxy.wait_for_status("/v1/models", VALID, 200)
    yield proxy
    proxy.close()


def error_of(response):
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


def assert_error(response, status, code, request_id=None):
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    # Envoy generates x-request-id when the client sends none, so there always is one.
    assert error["request_id"] == (request_id or error["request_id"])
    assert re.fullmatch(r"[\w-]+", error["request_id"])
    return error


def assert_no_scopes(headers):
    """A key without scopes: an empty `x-keygate-scopes`. The native build cannot set an empty
    header value (Envoy's dynamic-module ABI treats one as removal), so there it is absent
    (docs/native.md); either way a client's own value never passes."""
    if BUILD == "native":
        assert "x-keygate-scopes" not in headers
    else:
        assert headers["x-keygate-scopes"] == ""


def echoed(response):
    assert response.status_code == 200, response.text
    return response.json()


def test_valid_key_reaches_upstream_with_identity_and_without_credentials(envoy):
    seen = echoed(envoy.get("/v1/models?x=1", VALID))
    assert seen["path"] == "/v1/models?x=1"
    headers = seen["headers"]
    assert headers["x-keygate-key-id"] == "key_valid"
    assert headers["x-keygate-key-name"] == "Production server"
    assert headers["x-keygate-team"] == "acme"
    assert headers["x-keygate-environment"] == "live"
    assert_no_scopes(headers)
    assert "authorization" not in headers


def test_the_filter_asks_for_compact_and_loads_json_from_a_backend_that_speaks_only_json(envoy, snapshots):
    """The stand-in answers JSON whatever it is asked: the filter tells the encodings apart by
    their first bytes, so a team's own JSON backend keeps working."""
    echoed(envoy.get("/v1/models", VALID))
    accepts = {headers.get("Accept", headers.get("accept")) for _, _, headers in snapshots.requests}
    assert accepts == {"application/vnd.keygate.snapshot+binary, application/json;q=0.5"}


def test_spoofed_identity_headers_are_replaced(envoy):
    spoof = {"x-keygate-key-id": "key_admin", "x-keygate-scopes": "everything", "x-keygate-extra": "1"}
    headers = echoed(envoy.get("/v1/models", VALID, headers=spoof))["headers"]
    assert headers["x-keygate-key-id"] == "key_valid"
    assert_no_scopes(headers)
    assert "x-keygate-extra" not in headers


def test_key_header_source_and_case_insensitive_scheme(envoy):
    headers = echoed(envoy.get("/v1/models", headers={"x-api-key": VALID}))["headers"]
    assert headers["x-keygate-key-id"] == "key_valid"
    assert "x-api-key" not in headers
    assert echoed(envoy.get("/v1/models", headers={"Authorization": f"bEaReR {VALID}"}))


def test_no_key_is_unauthorized_with_bare_challenge(envoy):
    response = envoy.get("/v1/models")
    error = assert_error(response, 401, "UNAUTHORIZED")
    assert error["message"] == "No API key provided in the request"
    assert response.headers["www-authenticate"] == 'Bearer realm="keygate"'


def test_unknown_key_is_invalid(envoy):
    response = envoy.get("/v1/models", UNKNOWN, headers={"x-request-id": "req-123"})
    error = assert_error(response, 401, "INVALID_API_KEY", request_id="req-123")
    assert error["message"] == "The API key does not exist or is malformed"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="keygate", error="invalid_token"')
    assert UNKNOWN not in response.text and UNKNOWN not in challenge


@pytest.mark.parametrize(
    "authorization",
    [
        f"Basic {VALID}",
        "Bearer",
        "Bearer ",
        "Bearer " + "a" * 257,
        "Bearer key with spaces",
        "Bearer k\u00e9y".encode("utf-8"),
        VALID,
    ],
    ids=["wrong-scheme", "bearer-only", "bearer-empty", "too-long", "spaces", "non-ascii", "no-scheme"],
)
def test_malformed_authorization_is_invalid(envoy, authorization):
    response = envoy.get("/v1/models", headers={"Authorization": authorization})
    assert_error(response, 401, "INVALID_API_KEY")
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


def test_two_different_keys_are_invalid(envoy):
    response = envoy.get("/v1/models", headers={"Authorization": f"Bearer {VALID}", "x-api-key": SCOPED})
    assert_error(response, 401, "INVALID_API_KEY")


def test_key_of_another_environment_says_so(envoy):
    error = assert_error(envoy.get("/v1/models", TEST_ENV), 401, "INVALID_API_KEY")
    assert "environment" in error["message"]
    assert "pk_live_" in error["message"]


def test_inactive_and_expired(envoy):
    response = envoy.get("/v1/models", INACTIVE)
    assert_error(response, 401, "API_KEY_INACTIVE")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert_error(envoy.get("/v1/models", EXPIRED), 401, "API_KEY_EXPIRED")


def test_ip_allowlist_v4_and_v6(envoy):
    response = envoy.get("/v1/models", IP_LOCKED)
    assert_error(response, 403, "IP_NOT_WHITELISTED")
    assert "www-authenticate" not in response.headers
    assert echoed(envoy.get("/v1/models", LOOPBACK_ONLY))
    assert_error(envoy.get("/v1/models", V6_ONLY), 403, "IP_NOT_WHITELISTED")
    v6 = requests.get(
        f"http://[::1]:{envoy.ipv6_port}/v1/models", headers={"Authorization": f"Bearer {V6_ONLY}"}, timeout=10
    )
    assert echoed(v6)["headers"]["x-keygate-key-id"] == "key_v6"
    v6_denied = requests.get(
        f"http://[::1]:{envoy.ipv6_port}/v1/models", headers={"Authorization": f"Bearer {LOOPBACK_ONLY}"}, timeout=10
    )
    assert_error(v6_denied, 403, "IP_NOT_WHITELISTED")


def test_xff_is_not_trusted_by_default(envoy):
    response = envoy.get("/v1/models", IP_LOCKED, headers={"x-forwarded-for": "10.1.2.3"})
    assert_error(response, 403, "IP_NOT_WHITELISTED")


def test_scopes_per_route(envoy):
    response = envoy.get("/v1/jobs", SCOPED, method="POST")
    error = assert_error(response, 403, "OPERATION_NOT_ALLOWED")
    assert "submit_job" in error["message"]
    assert response.headers["www-authenticate"] == 'Bearer realm="keygate", error="insufficient_scope", scope="submit_job"'
    assert_error(envoy.get("/v1/jobs/", SCOPED, method="POST"), 403, "OPERATION_NOT_ALLOWED")
    assert echoed(envoy.get("/v1/jobs/job_42", SCOPED))
    assert echoed(envoy.get("/v1/models", SCOPED))
    assert echoed(envoy.get("/anything/else", SCOPED))
    assert echoed(envoy.get("/v1/jobs", VALID, method="POST"))
    # Path tricks are normalised by Envoy before the filter sees them.
    assert_error(envoy.get("/v1//jobs", SCOPED, method="POST"), 403, "OPERATION_NOT_ALLOWED")
    assert_error(envoy.get("/v1/./jobs", SCOPED, method="POST"), 403, "OPERATION_NOT_ALLOWED")


def test_key_id_reaches_the_access_log(envoy):
    envoy.get("/v1/models?access-log-probe=1", VALID)
    wait_until(
        lambda: re.search(r"access-log-probe=1\" 200 key=key_valid ", envoy.access_log.read_text()),
        timeout=10,
        what="access log line with the key id",
    )


def test_stats_are_published(envoy):
    envoy.get("/v1/models", VALID)
    envoy.get("/v1/models")
    # Counted in the VM and added to Envoy's stats every tick.
    wait_until(lambda: envoy.stat("keygate_requests_allowed") >= 1, what="allowed requests in the stats")
    wait_until(lambda: envoy.stat("keygate_requests_denied_unauthorized") >= 1, what="denials in the stats")
    assert envoy.stat("keygate_keys_loaded") == len(KEYS)
    assert envoy.stat("keygate_snapshot_refresh_ok") >= 1


def test_logs_never_contain_a_key(envoy):
    for key in (VALID, UNKNOWN, SCOPED):
        envoy.get("/v1/jobs", key, method="POST")
    logs = envoy.logs() + envoy.access_log.read_text()
    for key in (VALID, UNKNOWN, SCOPED, INACTIVE):
        assert key not in logs
        assert key[8:] not in logs


def test_one_snapshot_fetch_per_envoy_not_per_worker(upstream):
    """Four workers share one store; the refresh lease keeps it to one fetch per interval."""
    server = SnapshotServer()
    server.publish(KEYS)
    proxy = Envoy(upstream.port, server.port, plugin_config(), concurrency=4)
    try:
        proxy.wait_for_status("/v1/models", VALID, 200)
        start = server.request_count()
        wait_until(lambda: server.request_count() >= start + 3, timeout=15, what="three more refreshes")
        begin = server.requests[start][0]
        window = server.requests[start + 2][0] - begin
        # Three fetches across four workers with a 1 s interval take about two seconds; one
        # fetch per worker would put them within a few milliseconds of each other.
        assert window >= 1.5, [t for t, _, _ in server.requests]
        for _, path, headers in server.requests[start:]:
            assert headers.get("If-None-Match") == '"E-1"' or headers.get("if-none-match") == '"E-1"', headers
            assert "since=1" in path
    finally:
        proxy.close()
        server.close()


def test_snapshot_changes_take_effect_within_a_refresh(upstream):
    server = SnapshotServer()
    server.publish(KEYS)
    proxy = Envoy(upstream.port, server.port, plugin_config())
    try:
        proxy.wait_for_status("/v1/models", VALID, 200)
        revoked = [dict(k, active=False) if k["id"] == "key_valid" else k for k in KEYS]
        server.publish(revoked)
        # This server sends every change as a full snapshot, which reaches each worker within
        # the view TTL; a delta, how the control service sends a revocation, reaches all at once.
        proxy.wait_for_status("/v1/models", VALID, 401, timeout=5)
        proxy.wait_for_error("/v1/models", VALID, 401, "API_KEY_INACTIVE", timeout=1)
        server.publish([k for k in KEYS if k["id"] != "key_valid"] + [key_record(UNKNOWN, "key_new")])
        proxy.wait_for_status("/v1/models", UNKNOWN, 200, timeout=5)
        proxy.wait_for_error("/v1/models", VALID, 401, "INVALID_API_KEY", timeout=1)
    finally:
        proxy.close()
        server.close()


def test_bad_snapshots_are_rejected_and_the_last_good_one_serves(upstream):
    server = SnapshotServer()
    server.publish(KEYS)
    proxy = Envoy(upstream.port, server.port, plugin_config())
    try:
        proxy.wait_for_status("/v1/models", VALID, 200)
        bad = [
            (200, b'{"version": 99, "full": tr'),
            (200, json.dumps({"version": 99, "epoch": "E&since=0", "full": True, "keys": []}).encode()),
            (200, json.dumps({"version": 99, "full": True, "keys": [key_record(VALID, "a"), key_record(VALID, "b")]}).encode()),
            (500, b"internal error"),
        ]
        for status, body in bad:
            failed_before = proxy.stat("keygate_snapshot_refresh_failed")
            server.answer(status, body)
            wait_until(
                lambda: proxy.stat("keygate_snapshot_refresh_failed") > failed_before,
                timeout=10,
                what="a failed refresh to be counted",
            )
            assert echoed(proxy.get("/v1/models", VALID))["headers"]["x-keygate-key-id"] == "key_valid"
            assert_error(proxy.get("/v1/models", UNKNOWN), 401, "INVALID_API_KEY")
        assert proxy.stat("keygate_snapshot_rejected") >= 3
        assert "snapshot refresh failed, last good snapshot keeps serving" in proxy.logs()
        server.heal()
        server.publish(KEYS + [key_record(UNKNOWN, "key_recovered")])
        proxy.wait_for_status("/v1/models", UNKNOWN, 200, timeout=10)
    finally:
        proxy.close()
        server.close()


def test_control_service_down_keeps_serving_and_slow_answers_do_not_stall(upstream):
    server = SnapshotServer()
    server.publish(KEYS)
    proxy = Envoy(upstream.port, server.port, plugin_config())
    try:
        proxy.wait_for_status("/v1/models", VALID, 200)
        server.answer(200, b"{}", delay=3.0)  # slower than the 1 s timeout
        failed_before = proxy.stat("keygate_snapshot_refresh_failed")
        wait_until(
            lambda: proxy.stat("keygate_snapshot_refresh_failed") >= failed_before + 2,
            timeout=15,
            what="timed-out refreshes to be counted",
        )
        assert echoed(proxy.get("/v1/models", VALID))
        server.close()  # now nothing listens at all
        failed_before = proxy.stat("keygate_snapshot_refresh_failed")
        wait_until(
            lambda: proxy.stat("keygate_snapshot_refresh_failed") > failed_before,
            timeout=15,
            what="refused connections to be counted",
        )
        for _ in range(20):
            assert echoed(proxy.get("/v1/models", VALID))
            assert_error(proxy.get("/v1/models", INACTIVE), 401, "API_KEY_INACTIVE")
    finally:
        proxy.close()


def test_fail_closed_before_the_first_snapshot(upstream):
    server = SnapshotServer()
    server.answer(503, b"starting")
    proxy = Envoy(upstream.port, server.port, plugin_config())
    try:
        response = proxy.get("/v1/models", VALID, headers={"x-request-id": "r-1"})
        error = assert_error(response, 503, "AUTH_UNAVAILABLE", request_id="r-1")
        assert "unavailable" in error["message"]
        server.heal()
        server.publish(KEYS)
        proxy.wait_for_status("/v1/models", VALID, 200)
    finally:
        proxy.close()
        server.close()


def test_fail_open_lets_requests_through_marked(upstream):
    server = SnapshotServer()
    server.answer(503, b"starting")
    proxy = Envoy(upstream.port, server.port, plugin_config(fail_mode="open"))
    try:
        headers = echoed(proxy.get("/v1/models", VALID, headers={"x-keygate-key-id": "spoof"}))["headers"]
        assert headers["x-keygate-fail-open"] == "true"
        assert "x-keygate-key-id" not in headers
        assert "authorization" not in headers
        assert proxy.stat("keygate_requests_fail_open") >= 1
    finally:
        proxy.close()
        server.close()


def test_trusted_xff_hops_and_query_parameter_source(upstream, snapshots):
    config = plugin_config(xff_trusted_hops=1, key_query_param="api_key", forward_credentials=False)
    proxy = Envoy(upstream.port, snapshots.port, config)
    try:
        proxy.wait_for_status("/v1/models", VALID, 200)
        allowed = proxy.get("/v1/models", IP_LOCKED, headers={"x-forwarded-for": "203.0.113.9, 10.1.2.3"})
        assert echoed(allowed)["headers"]["x-keygate-key-id"] == "key_iplocked"
        denied = proxy.get("/v1/models", IP_LOCKED, headers={"x-forwarded-for": "10.1.2.3, 203.0.113.9"})
        assert_error(denied, 403, "IP_NOT_WHITELISTED")
        seen = echoed(proxy.get(f"/v1/models?a=1&api_key={VALID}&b=2"))
        assert seen["path"] == "/v1/models?a=1&b=2"
        assert seen["headers"]["x-keygate-key-id"] == "key_valid"
    finally:
        proxy.close()


def test_paged_snapshot_loads_every_page(upstream):
    server = SnapshotServer()
    many = [key_record(f"pk_live_paged{i:030d}", f"key_paged_{i}") for i in range(250)]
    server.publish(many)
    proxy = Envoy(upstream.port, server.port, plugin_config(control={"page_size": 100}))
    try:
        wait_until(lambda: proxy.stat("keygate_keys_loaded") == 250, timeout=15, what="250 keys from 3 pages")
        for i in (0, 99, 100, 249):
            assert echoed(proxy.get("/v1/models", f"pk_live_paged{i:030d}"))["headers"]["x-keygate-key-id"] == f"key_paged_{i}"
        paths = [path for _, path, _ in server.requests]
        assert any("cursor=100" in p for p in paths) and any("cursor=200" in p for p in paths), paths
        # A new full snapshot without the first key retires it once all pages are in.
        server.publish(many[1:])
        proxy.wait_for_status("/v1/models", "pk_live_paged" + "0" * 30, 401, timeout=10)
        assert echoed(proxy.get("/v1/models", f"pk_live_paged{249:030d}"))
    finally:
        proxy.close()
        server.close()


def test_health_route_skips_the_filter(envoy):
    seen = echoed(envoy.get("/healthz"))
    assert "x-keygate-key-id" not in seen["headers"]
    assert_error(envoy.get("/healthz/x"), 401, "UNAUTHORIZED")
