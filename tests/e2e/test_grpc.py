"""gRPC through the real Envoy with a real gRPC client (grpcio) and a small gRPC upstream: a call
with a key gets through with its identity; each denial carries the gRPC status a client acts on
(UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED with the retry delay, UNAVAILABLE), a
`grpc-message` a person can read and the documented headers as metadata."""

import grpc
import pytest

from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.grpc_upstream import METHOD, GrpcUpstream, say
from keygate_testkit.snapshot_server import SnapshotServer, key_record

VALID = "pk_live_" + "grpcValid0000000000000000000000000000000"
SCOPED = "pk_live_" + "grpcScoped000000000000000000000000000000"
LIMITED = "pk_live_" + "grpcLimited00000000000000000000000000000"


@pytest.fixture(scope="module")
def grpc_upstream():
    server = GrpcUpstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def snapshots():
    server = SnapshotServer()
    server.publish([
        key_record(VALID, "key_grpc"),
        key_record(SCOPED, "key_scoped", scopes=["list_models"]),
        key_record(LIMITED, "key_limited", limits={"per_minute": 2}),
    ])
    yield server
    server.close()


@pytest.fixture(scope="module")
def proxy(upstream, grpc_upstream, snapshots):
    routes = [{"methods": ["POST"], "exact": METHOD, "scope": "echo"}]
    envoy = Envoy(upstream.port, snapshots.port, plugin_config(routes=routes), grpc_upstream_port=grpc_upstream.port)
    envoy.wait_for_status("/v1/models", VALID, 200)
    yield envoy
    envoy.close()


def refused(port, key=None):
    with pytest.raises(grpc.RpcError) as raised:
        say(port, key=key)
    return raised.value


def test_a_call_with_a_key_reaches_the_upstream_with_its_identity(proxy):
    answer, trailers = say(proxy.port, b"ping", key=VALID)
    assert answer == b"ping"
    assert trailers["x-keygate-key-id"] == "key_grpc"


def test_denials_carry_the_grpc_status_a_client_acts_on(proxy):
    missing = refused(proxy.port)
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert missing.details().startswith("UNAUTHORIZED: No API key provided")
    assert "www-authenticate" in dict(missing.trailing_metadata())

    unknown = refused(proxy.port, key="pk_live_" + "nope" * 10)
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED
    assert unknown.details().startswith("INVALID_API_KEY: ")

    scoped = refused(proxy.port, key=SCOPED)
    assert scoped.code() == grpc.StatusCode.PERMISSION_DENIED
    assert scoped.details().startswith("OPERATION_NOT_ALLOWED: ")


def test_over_the_limit_is_resource_exhausted_with_the_delay_not_unavailable(proxy):
    for _ in range(2):
        say(proxy.port, key=LIMITED)
    over = refused(proxy.port, key=LIMITED)
    assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (over.code(), over.details())
    assert over.details().startswith("RATE_LIMIT_EXCEEDED: ") and "retry after" in over.details()
    metadata = dict(over.trailing_metadata())
    seconds = int(metadata["retry-after"])
    assert 1 <= seconds <= 62  # a minute and one 2-second bucket (docs/rate-limits.md)
    assert int(metadata["grpc-retry-pushback-ms"]) == seconds * 1000
    assert metadata["x-ratelimit-limit"] == "2"


def test_without_a_snapshot_a_closed_filter_answers_unavailable(upstream, grpc_upstream):
    nothing = SnapshotServer()
    nothing.override = (503, b"{}", 0)  # never a snapshot: the filter has none to decide with
    envoy = Envoy(upstream.port, nothing.port, plugin_config(fail_mode="closed"), grpc_upstream_port=grpc_upstream.port)
    try:
        envoy.wait_for_status("/v1/models", VALID, 503)
        down = refused(envoy.port, key=VALID)
        assert down.code() == grpc.StatusCode.UNAVAILABLE
        assert down.details().startswith("AUTH_UNAVAILABLE: ")
    finally:
        envoy.close()
        nothing.close()
