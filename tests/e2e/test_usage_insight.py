"""What a customer sees of its traffic, measured by the filter in a real Envoy and read back from
the control service: slow requests in the percentiles, upstream 5xx and hang-ups counted and
listed as events with their request ids, denials as events with code, path and client address,
and requests counted per route name."""

import socket
import time

import pytest

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.waiting import wait_until

ROUTES = [
    {"methods": ["POST"], "exact": "/v1/jobs", "scope": "submit_job", "name": "job-submit"},
    {"methods": ["GET"], "template": "/v1/jobs/{id}", "scope": "check_status"},
    {"methods": ["GET"], "exact": "/v1/models", "scope": "list_models"},
]


@pytest.fixture(scope="module")
def control():
    service = ControlService().start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def proxy(upstream, control):
    config = plugin_config(control={"long_poll_wait": "5s"}, usage={"report_interval": "1s"}, routes=ROUTES)
    envoy = Envoy(upstream.port, control.port, config)
    yield envoy
    envoy.close()


def hang_up_mid_response(proxy, secret):
    """Sends a request whose answer's body comes late, reads the status line, and hangs up."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as connection:
        connection.sendall((f"GET /v1/models HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {secret}\r\n"
                            "x-request-id: hung-up\r\nx-demo-body-delay-ms: 5000\r\n\r\n").encode())
        head = connection.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def usage_totals(control, key_id):
    response = control.admin("GET", f"/v1/keys/{key_id}/usage")
    assert response.status_code == 200, response.text
    return response.json()["totals"]


def test_latency_errors_routes_and_events_through_envoy(proxy, control):
    created = control.create_key(name="insight", scopes=["check_status", "list_models"])
    secret, key_id = created["key"], created["id"]
    proxy.wait_for_status("/v1/models", secret, 200, timeout=10)
    for _ in range(5):
        assert proxy.get("/v1/models", secret, headers={"x-demo-delay-ms": "300"}).status_code == 200
    for _ in range(10):
        assert proxy.get("/v1/jobs/7", secret).status_code == 200
    for attempt in range(2):
        failed = proxy.get("/v1/jobs/8?token=hidden", secret,
                           headers={"x-demo-status": "503", "x-request-id": f"failed-{attempt}"})
        assert failed.status_code == 503
    refused = proxy.get("/v1/jobs", secret, method="POST", headers={"x-request-id": "refused-1"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "OPERATION_NOT_ALLOWED"
    assert proxy.get("/v1/other", secret).status_code == 200
    hang_up_mid_response(proxy, secret)
    allowed = 1 + 5 + 10 + 2 + 1 + 1  # the first 200 seen by wait_for_status, and the rest

    def counted():
        totals = usage_totals(control, key_id)
        # Every request counted and what became of each (a worker reports the end of a stream
        # on its own tick, possibly after the request's count).
        finished = sum(totals["upstream"].values())
        done = totals["upstream"]["none"] == 1 and totals["allowed"] == allowed == finished
        return totals if done else None

    totals = wait_until(counted, timeout=20, what="the hang-up counted as none")
    assert totals["upstream"]["5xx"] == 2
    assert totals["upstream"]["2xx"] == totals["allowed"] - 3
    assert totals["latency_ms"]["p95"] >= 300, totals["latency_ms"]
    assert totals["latency_ms"]["p50"] < 300, totals["latency_ms"]
    routes = totals["routes"]
    assert routes["check_status"]["allowed"] == 12
    assert routes["job-submit"] == {"allowed": 0, "denied": {"OPERATION_NOT_ALLOWED": 1}, "total": 1}
    assert routes["other"]["allowed"] == 1
    assert routes["list_models"]["allowed"] == totals["allowed"] - 13
    addresses = totals["client_ips"]
    assert addresses["distinct"] == 1 and addresses["top"][0]["ip"] == "127.0.0.1"
    # Allowed requests' addresses are sampled (docs/usage.md): an estimate, never above the total.
    assert 1 <= addresses["top"][0]["requests"] <= totals["total"] + 16, addresses

    listed = control.admin("GET", f"/v1/keys/{key_id}/events").json()["events"]
    by_request = {event["request_id"]: event for event in listed}
    for attempt in range(2):
        failed = by_request[f"failed-{attempt}"]
        assert (failed["outcome"], failed["status"], failed["method"]) == ("5xx", 503, "GET")
        assert failed["path"] == "/v1/jobs/8", "no query string"
    denial = by_request["refused-1"]
    assert (denial["outcome"], denial["status"], denial["path"]) == ("OPERATION_NOT_ALLOWED", 403, "/v1/jobs")
    assert denial["client_ip"] == "127.0.0.1"
    assert by_request["hung-up"]["outcome"] == "none"
    assert len(listed) == 4
    assert secret not in str(listed)
