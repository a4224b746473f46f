"""Hostile requests and a hostile or broken control service. Every request gets the documented
answer (or Envoy's own protocol error, never a pass), and the last good snapshot keeps serving."""
import http.client
import json
import socket

import pytest

from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.snapshot_server import SnapshotServer, key_record
from keygate_testkit.waiting import wait_until

VALID = "pk_live_" + "abuse0000000000000000000000000000000000"
OTHER = "pk_live_" + "other0000000000000000000000000000000000"
SANDBOX = "pk_test_" + "sandbox000000000000000000000000000000000"
KEYS = [key_record(VALID, "key_valid"), key_record(OTHER, "key_other"), key_record(SANDBOX, "key_sandbox")]


@pytest.fixture(scope="module")
def snapshots():
    server = SnapshotServer()
    server.publish(KEYS)
    yield server
    server.close()


@pytest.fixture(scope="module")
def envoy(upstream, snapshots):
    proxy = Envoy(upstream.port, snapshots.port, plugin_config(allowed_prefixes=["pk_live_"]))
    proxy.wait_for_status("/v1/models", VALID, 200)
    yield proxy
    proxy.close()


def raw_request(envoy, headers, path="/v1/models"):
    """Sends headers exactly as given (repeats allowed) and returns (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def raw_bytes_request(envoy, raw):
    """Writes raw bytes on a socket; returns (status, body) of the reply, or (None, b"")."""
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=10) as sock:
        sock.sendall(raw)
        reply = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    if not reply:
        return None, b""
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def error_code(body):
    return json.loads(body)["error"]["code"]


def test_64_kib_authorization_header_gets_the_documented_401(envoy):
    status, headers, body = raw_request(envoy, [("Authorization", "Bearer " + "a" * 65536)])
    assert status == 401
    assert headers["content-type"] == "application/json"
    assert error_code(body) == "INVALID_API_KEY"


def test_many_authorization_headers(envoy):
    # Envoy joins repeated Authorization headers with commas; a list is not a valid
    # credential (RFC 9110 gives Authorization no list form), so even repeats of one key fail.
    same = [("Authorization", f"Bearer {VALID}")] * 50
    status, _, body = raw_request(envoy, same)
    assert status == 401 and error_code(body) == "INVALID_API_KEY"
    mixed = same[:25] + [("Authorization", f"Bearer {OTHER}")] + same[:24]
    status, _, body = raw_request(envoy, mixed)
    assert status == 401 and error_code(body) == "INVALID_API_KEY"
    one_bad = [("Authorization", f"Bearer {VALID}"), ("Authorization", "Basic Zm9vOmJhcg==")]
    status, _, body = raw_request(envoy, one_bad)
    assert status == 401 and error_code(body) == "INVALID_API_KEY"


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {VALID}\\x00",
        f"Bearer {VALID}%00",
        f"Bearer {VALID[:10]}\t{VALID[10:]}",
        f"Bearer {VALID}\u00e9".encode(),
        f"Bearer {VALID}\u200b".encode(),
        f"Bearer {VALID}\xff".encode("latin-1"),
        f"Bearer {VALID}, x-keygate-key-id: admin",
        f"Bearer {VALID};admin",
        "Bearer \"" + VALID + "\"",
    ],
    ids=["backslash-x00", "percent-00", "inner-tab", "latin-e", "zero-width", "byte-ff", "comma-injection", "semicolon", "quoted"],
)
def test_odd_bytes_in_the_key_are_invalid(envoy, value):
    status, headers, body = raw_request(envoy, [("Authorization", value)])
    assert status == 401, body
    assert error_code(body) == "INVALID_API_KEY"


def test_header_injection_never_passes(envoy):
    """CR, LF or NUL inside the Authorization value: Envoy either refuses the request or splits
    the line, and then the injected x-keygate-* header is stripped like any client copy. No
    variant authenticates an unknown key or changes the identity of a known one."""
    unknown = "pk_live_" + "nobody000000000000000000000000000000000"
    for key in (VALID, unknown):
        for separator in ("\r", "\n", "\r\n", "\x00"):
            raw = (
                "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Authorization: Bearer {key}{separator}x-keygate-key-id: admin\r\n\r\n"
            )
            status, body = raw_bytes_request(envoy, raw.encode())
            if status == 200:
                assert key == VALID, (repr(separator), body)
                assert json.loads(body)["headers"]["x-keygate-key-id"] == "key_valid", body
            else:
                assert status is None or status >= 400, (repr(separator), status)


def test_query_parameter_is_ignored_when_that_source_is_off(envoy):
    status, _, body = raw_request(envoy, [], path=f"/v1/models?api_key={VALID}")
    assert status == 401 and error_code(body) == "UNAUTHORIZED"


def test_key_of_another_environment(envoy):
    status, _, body = raw_request(envoy, [("Authorization", f"Bearer {SANDBOX}")])
    assert status == 401
    assert "environment" in json.loads(body)["error"]["message"]


def test_control_service_down_at_envoy_start_then_up(upstream):
    server = SnapshotServer()
    port = server.port
    server.close()  # nothing listens there now
    proxy = Envoy(upstream.port, port, plugin_config())
    try:
        for _ in range(5):
            response = proxy.get("/v1/models", VALID)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "AUTH_UNAVAILABLE"
        wait_until(lambda: proxy.stat("keygate_snapshot_refresh_failed") >= 1, what="failed refreshes counted")
        revived = SnapshotServer(port=port)
        try:
            revived.publish(KEYS)
            proxy.wait_for_status("/v1/models", VALID, 200, timeout=40)
        finally:
            revived.close()
    finally:
        proxy.close()


def test_huge_and_schema_breaking_snapshots_are_rejected(upstream):
    server = SnapshotServer()
    server.publish(KEYS)
    proxy = Envoy(upstream.port, server.port, plugin_config())
    try:
        proxy.wait_for_status("/v1/models", VALID, 200)
        # One record with a negative limit is quarantined alone (test_hardening.py); a page
        # whose key list is not a list is not a page.
        not_a_list = json.dumps({"version": 9, "full": True, "keys": {"0": key_record(OTHER, "x")}})
        huge = b'{"version": 9, "full": true, "keys": [], "padding": "' + b"x" * (70 * 1024 * 1024) + b'"}'
        for body in (not_a_list.encode(), huge):
            failed = proxy.stat("keygate_snapshot_refresh_failed")
            server.answer(200, body)
            wait_until(lambda: proxy.stat("keygate_snapshot_refresh_failed") > failed, timeout=20, what="rejection")
            assert proxy.get("/v1/models", VALID).status_code == 200
            assert proxy.get("/v1/models", OTHER).status_code == 200
        assert proxy.proc.poll() is None
        assert "panicked" not in proxy.logs()
    finally:
        proxy.close()
        server.close()
