"""The control service under hostile and idle connections (issue 24): requests whose headers
never finish are closed after --header-timeout, idle kept-alive connections after
--idle-timeout, a listener holds at most --max-connections (one more is closed unserved), a
stalled body gets 408 after --body-timeout, and a long poll longer than all of these is still
answered. Short flag values keep every case to a few seconds."""

import subprocess
import time

import pytest
import requests

from keygate_testkit import connections
from keygate_testkit.api import Api, error_of
from keygate_testkit.control import ControlService, service_env
from keygate_testkit.paths import ADMIN_TOKEN, control_binary
from keygate_testkit.waiting import wait_until

HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 3.0
# Margin for a loaded machine on top of a timeout, when waiting for a close to be seen.
SLACK = 4.0


def started(tmp_path, *args):
    service = ControlService(tmp_path / "keygate.db", tmp_path / "serve.log", extra_args=list(args))
    return service.start()


@pytest.fixture
def service(tmp_path):
    control = started(tmp_path, "--header-timeout", f"{HEADER_TIMEOUT}s", "--idle-timeout", f"{IDLE_TIMEOUT}s",
                      "--body-timeout", "1s")
    yield control
    control.stop()


def test_connections_whose_headers_never_finish_are_closed_after_the_header_timeout(service):
    """The issue's case: 60 connections that keep sending header lines but never end them."""
    opened = time.monotonic()
    slow = connections.slowloris(service.port, 60)
    try:
        # Still sending, still open before the timeout: nothing is cut early.
        connections.dribble(slow)
        open_now = len(connections.still_open(slow))
        if time.monotonic() - opened < HEADER_TIMEOUT * 0.8:
            assert open_now == 60

        def all_closed():
            connections.dribble(slow)
            return not connections.still_open(slow)

        wait_until(all_closed, timeout=HEADER_TIMEOUT + SLACK, interval=0.2, retry_on=(),
                   what="every slowloris connection to be closed")
        assert time.monotonic() - opened >= HEADER_TIMEOUT * 0.9
        # The service itself is fine and answers at once.
        assert requests.get(service.url("/healthz"), timeout=2).status_code == 200
        wait_until(lambda: "closed 60 whose request headers took over --header-timeout" in service.log_text(),
                   timeout=15, what="the count of slow-header closes in the log")
    finally:
        for connection in slow:
            connection.close()


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_the_header_timeout(service):
    with connections.connect(service.port) as connection:
        assert connections.request(connection)[0] == 200
        answered = time.monotonic()
        # Past the header timeout the connection is still usable: idle is not slow headers.
        wait_until(lambda: time.monotonic() - answered > HEADER_TIMEOUT * 1.5, timeout=5, interval=0.1)
        assert not connections.is_closed(connection)
        assert connections.request(connection)[0] == 200
        answered = time.monotonic()
        connections.wait_closed(connection, IDLE_TIMEOUT + SLACK, "the idle connection to be closed")
        assert time.monotonic() - answered >= IDLE_TIMEOUT * 0.9


def test_the_connection_cap_closes_one_more_unserved_until_one_closes(tmp_path):
    cap = 4
    service = started(tmp_path, "--max-connections", str(cap), "--header-timeout", "30s")
    held = []
    try:
        def serve_one_more():
            connection = connections.connect(service.port)
            if connections.request(connection) is None:
                connection.close()
                return False
            held.append(connection)
            return len(held) == cap

        # The start-up health check's connection may still hold a place for a moment.
        wait_until(serve_one_more, timeout=10, retry_on=(OSError,), what=f"{cap} served connections")
        with connections.connect(service.port) as extra:
            try:
                answer = connections.request(extra)
            except ConnectionError:
                answer = None
            assert answer is None, "a connection over the cap was served"
        held.pop().close()
        wait_until(lambda: requests.get(service.url("/healthz"), timeout=2).status_code == 200, timeout=10,
                   retry_on=(requests.ConnectionError,), what="a new connection served once one closed")
        wait_until(lambda: "over --max-connections 4" in service.log_text(), timeout=15,
                   what="the refused connection in the log")
    finally:
        for connection in held:
            connection.close()
        service.stop()


def test_a_long_poll_longer_than_every_timeout_is_answered(service):
    api = Api(service.url())
    etag = api.snapshot(limit=1).headers["etag"]
    wait = int(IDLE_TIMEOUT + 2)
    started_at = time.monotonic()
    response = api.request("GET", "/v1/snapshot", token="sync", params={"wait": wait},
                           headers={"If-None-Match": etag}, timeout=wait + 10)
    assert response.status_code == 304, response.text
    assert time.monotonic() - started_at >= wait * 0.9


def test_a_body_that_stalls_gets_408_in_the_error_shape(service):
    with connections.connect(service.port) as connection:
        connection.sendall(b"POST /v1/keys HTTP/1.1\r\nHost: keygate\r\nContent-Type: application/json\r\n"
                           + f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
                           + b"Content-Length: 100\r\n\r\n{\"name\":")
        connection.settimeout(10)
        answer = b""
        while b"}}" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408"), head
    response = requests.models.Response()
    response.headers["content-type"] = "application/json"
    response._content = body
    assert error_of(response)[0] == "REQUEST_TIMEOUT"


def test_timeout_flags_refuse_nonsense(tmp_path):
    result = subprocess.run([str(control_binary()), "serve", "--header-timeout", "0s"],
                            env=service_env(tmp_path / "k.db"), capture_output=True, text=True, timeout=10)
    assert result.returncode != 0 and "--header-timeout" in result.stderr and "more than 0" in result.stderr


def test_an_answer_given_before_the_body_was_read_says_connection_close(service):
    """A 405 or 401 answered without reading the request's body ends the connection (the rest
    of the body may still be on the wire), so the answer says `Connection: close` and a client
    does not send its next request into a closing socket (CI saw schemathesis do that)."""
    port = int(service.url().rsplit(":", 1)[1])
    body = b'{"name": "unread"}'
    json_body = ["Content-Type: application/json"]
    cases = [
        ("TRACE", "/v1/keys/key_0000", [f"Authorization: Bearer {ADMIN_TOKEN}", *json_body], 405),
        ("POST", "/v1/keys", ["Authorization: Bearer wrong", *json_body], 401),
    ]
    for method, path, headers, status in cases:
        connection = connections.connect(port)
        answered = connections.exchange(connection, method, path, headers, body)
        assert answered is not None, method
        assert answered[0] == status, (method, answered)
        assert answered[1].get("connection") == "close", (method, answered[1])
        connections.wait_closed(connection, SLACK, what=f"the server to close after the {method}")
        connection.close()
    # A body that was read keeps the connection: two requests on one.
    connection = connections.connect(port)
    for name in ("read-1", "read-2"):
        answered = connections.exchange(connection, "POST", "/v1/keys",
                                        [f"Authorization: Bearer {ADMIN_TOKEN}", *json_body],
                                        f'{{"name": "{name}"}}'.encode())
        assert answered is not None and answered[0] == 201, answered
        assert "connection" not in answered[1], answered[1]
    # A request without a body is read by definition.
    answered = connections.exchange(connection, "GET", "/healthz")
    assert answered is not None and answered[0] == 200
    assert "connection" not in answered[1]
    connection.close()
