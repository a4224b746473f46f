"""WebSockets and streams through the real Envoy (the shipped envoy.yaml accepts WebSocket
upgrades) with the `websockets` client from PyPI and the demo upstream's echo and server-sent
events: the upgrade is authenticated like any request, a browser's key may come as a query
parameter (stripped before the upstream, never in the access log), and a stream holds its
`concurrent` place until it ends, whichever side ends it."""

import asyncio
import time

import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.snapshot_server import SnapshotServer, key_record
from keygate_testkit.waiting import wait_until

VALID = "pk_live_" + "socketValid00000000000000000000000000000"
ONE_AT_A_TIME = "pk_live_" + "socketOne0000000000000000000000000000000"
# A stream's place is given back within this after the client hangs up (docs/rate-limits.md).
FREED_WITHIN_S = 2.0


@pytest.fixture(scope="module")
def snapshots():
    server = SnapshotServer()
    server.publish([key_record(VALID, "key_socket"), key_record(ONE_AT_A_TIME, "key_one", limits={"concurrent": 1})])
    yield server
    server.close()


@pytest.fixture(scope="module")
def proxy(upstream, snapshots):
    envoy = Envoy(upstream.port, snapshots.port, plugin_config(key_query_param="api_key", routes=[]))
    envoy.wait_for_status("/v1/models", VALID, 200)
    yield envoy
    envoy.close()


def ws_url(proxy, path="/v1/realtime"):
    return f"ws://127.0.0.1:{proxy.port}{path}"


async def echo(url, headers=None, messages=("hello", b"\x00\x01binary")):
    async with connect(url, additional_headers=headers or {}, open_timeout=10) as socket:
        answers = []
        for message in messages:
            await socket.send(message)
            answers.append(await asyncio.wait_for(socket.recv(), 10))
        return answers, socket.response.headers


def test_an_upgrade_with_a_key_is_let_through_and_echoes(proxy):
    answers, headers = asyncio.run(echo(ws_url(proxy), {"Authorization": f"Bearer {VALID}"}))
    assert answers == ["hello", b"\x00\x01binary"]
    assert headers["x-demo-path"] == "/v1/realtime"


def test_an_upgrade_without_a_key_is_refused_with_the_documented_401(proxy):
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(echo(ws_url(proxy)))
    response = refused.value.response
    assert response.status_code == 401
    assert b'"UNAUTHORIZED"' in response.body


def test_a_browser_sends_the_key_as_a_query_parameter_which_never_reaches_the_upstream_or_the_log(proxy):
    answers, headers = asyncio.run(echo(ws_url(proxy, f"/v1/realtime?model=x&api_key={VALID}"), messages=["hi"]))
    assert answers == ["hi"]
    assert headers["x-demo-path"] == "/v1/realtime?model=x"
    wait_until(lambda: "/v1/realtime?model=x" in proxy.access_log.read_text(), timeout=5, what="the access log line")
    assert VALID not in proxy.access_log.read_text()


def sse(proxy, key, events=10, interval_ms=200):
    return requests.get(f"http://127.0.0.1:{proxy.port}/v1/stream",
                        headers={"Authorization": f"Bearer {key}", "x-demo-stream": str(events),
                                 "x-demo-stream-interval-ms": str(interval_ms)},
                        stream=True, timeout=10)


def test_a_server_sent_event_stream_passes_and_holds_its_place_until_it_ends(proxy):
    stream = sse(proxy, ONE_AT_A_TIME)
    assert stream.status_code == 200 and stream.headers["content-type"] == "text/event-stream"
    lines = stream.iter_lines()
    assert next(line for line in lines if line) == b"id: 1"
    # While it streams, the key's one place is taken.
    busy = proxy.get("/v1/models", ONE_AT_A_TIME)
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "CONCURRENCY_LIMIT_EXCEEDED"
    events = [line for line in lines if line.startswith(b"data: ")]
    assert events[-1] == b"data: event 10 of 10" and len(events) == 10
    stream.close()
    wait_until(lambda: proxy.get("/v1/models", ONE_AT_A_TIME).status_code == 200, timeout=FREED_WITHIN_S,
               what="the place given back after the stream ended")


def test_a_client_hanging_up_mid_stream_gives_its_place_back(proxy):
    stream = sse(proxy, ONE_AT_A_TIME, events=1000, interval_ms=100)
    assert stream.status_code == 200
    # The line iterator is kept: letting it go would close the stream before the check.
    lines = stream.iter_lines()
    assert next(line for line in lines if line) == b"id: 1"
    assert proxy.get("/v1/models", ONE_AT_A_TIME).status_code == 429
    hung_up = time.monotonic()
    stream.close()  # closes the connection: the stream is reset mid-way
    wait_until(lambda: proxy.get("/v1/models", ONE_AT_A_TIME).status_code == 200, timeout=FREED_WITHIN_S,
               what="the place given back after the client hung up")
    print(f"place given back {time.monotonic() - hung_up:.2f} s after the client hung up")


def test_an_open_websocket_holds_its_place_until_it_closes(proxy):
    async def scenario():
        headers = {"Authorization": f"Bearer {ONE_AT_A_TIME}"}
        async with connect(ws_url(proxy), additional_headers=headers, open_timeout=10) as socket:
            await socket.send("still here")
            assert await asyncio.wait_for(socket.recv(), 10) == "still here"
            with pytest.raises(InvalidStatus) as second:
                async with connect(ws_url(proxy), additional_headers=headers, open_timeout=10):
                    pass
            assert second.value.response.status_code == 429
    asyncio.run(scenario())
    wait_until(lambda: proxy.get("/v1/models", ONE_AT_A_TIME).status_code == 200, timeout=FREED_WITHIN_S,
               what="the place given back after the socket closed")


def test_a_refused_upgrade_never_logs_its_query_parameter_key(proxy):
    unknown = "pk_live_" + "refusedKey" * 4

    async def scenario():
        with pytest.raises(InvalidStatus) as bad:
            async with connect(ws_url(proxy, f"/v1/refused?api_key={unknown}"), open_timeout=10):
                pass
        assert bad.value.response.status_code == 401
        # A valid key refused too: its one place is taken by an open socket.
        headers = {"Authorization": f"Bearer {ONE_AT_A_TIME}"}
        async with connect(ws_url(proxy), additional_headers=headers, open_timeout=10):
            with pytest.raises(InvalidStatus) as busy:
                async with connect(ws_url(proxy, f"/v1/busy?api_key={ONE_AT_A_TIME}"), open_timeout=10):
                    pass
            assert busy.value.response.status_code == 429
    asyncio.run(scenario())
    wait_until(lambda: "/v1/busy" in proxy.access_log.read_text(), timeout=5, what="the refused upgrades logged")
    log = proxy.access_log.read_text()
    assert "/v1/refused " in log or "/v1/refused\"" in log, log[-500:]
    assert unknown not in log and ONE_AT_A_TIME not in log
