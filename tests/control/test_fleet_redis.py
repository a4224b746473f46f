"""Replicas sharing the fleet's rate-limit counts through Redis (`serve --redis-url`): a key a
replica's Envoys use past its share of a limit reaches the other replica's Envoys within a few
flushes, counts never go to PostgreSQL, and with Redis down (or started again empty) the
replicas answer from their own Envoys' counts and catch up when it is back. Real replicas on a
real PostgreSQL and a real Redis (keygate_testkit.redis), each test with its own."""

import time
import uuid

import pytest
import requests

from keygate_testkit.api import Api
from keygate_testkit.control import ControlService
from keygate_testkit.postgres import PostgresCluster
from keygate_testkit.redis import RedisServer
from keygate_testkit.waiting import wait_until

BUCKET_MS = [2_000, 120_000, 3_600_000]
WINDOW_MS = [60_000, 3_600_000, 86_400_000]
PATH = "/v1/ratelimits/sync"
# A few 250 ms flushes on a busy 2-core machine.
SHARED_WITHIN_SECONDS = 10


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.close()


@pytest.fixture
def cluster(tmp_path):
    cluster = PostgresCluster(tmp_path / "postgres").init().start()
    yield cluster
    cluster.destroy()


def start_replicas(cluster, redis_server, tmp_path, count=2):
    url = cluster.new_database()
    return [ControlService(url, tmp_path / f"replica-{n}.log", cluster=cluster,
                           extra_args=["--redis-url", redis_server.url]).start()
            for n in range(count)]


@pytest.fixture
def replicas(cluster, redis_server, tmp_path):
    started = start_replicas(cluster, redis_server, tmp_path)
    yield started
    for replica in started:
        replica.stop()


def minute_now():
    return int(time.time() * 1000) // BUCKET_MS[0]


def post(proxy, key_tag, minute, count, limit):
    return {"proxy_id": proxy, "bucket_ms": BUCKET_MS, "window_ms": WINDOW_MS,
            "keys": [{"key": key_tag, "limits": [limit, None, None],
                      "counts": [[[minute, count]], [], []]}]}


def rest_of(replica, body):
    """The rest of the fleet's minute counts of the posted key, as `replica` answers."""
    response = Api(replica.url()).request("POST", PATH, token="sync", json=body)
    assert response.status_code == 200, response.text
    for entry in response.json()["keys"]:
        if entry["key"] == body["keys"][0]["key"]:
            return entry["counts"][0]
    return []


def metrics(replica):
    text = requests.get(replica.url("/metrics"), timeout=5).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_a_key_past_its_share_reaches_the_other_replicas_envoys(replicas, redis_server, cluster):
    first, second = replicas
    k, minute = uuid.uuid4().hex, minute_now()
    # Limit 40, two replicas: published at 10 a replica. Envoy A holds 30 through the first.
    rest_of(first, post("envoy-a", k, minute, 30, 40))
    wait_until(lambda: rest_of(second, post("envoy-b", k, minute, 5, 40)) == [[minute, 30]],
               timeout=SHARED_WITHIN_SECONDS, what="A's 30 at the second replica")
    # And back: the first replica's Envoy is told B's 5 (B's replica joined the published key).
    wait_until(lambda: rest_of(first, post("envoy-a", k, minute, 30, 40)) == [[minute, 5]],
               timeout=SHARED_WITHIN_SECONDS, what="B's 5 at the first replica")
    # Hot (35 of 40): an Envoy that never saw the key hears of it through either replica.
    for replica in (first, second):
        body = post("envoy-c", uuid.uuid4().hex, minute, 1, 1000)
        response = Api(replica.url()).request("POST", PATH, token="sync", json=body).json()
        assert {"key": k, "limits": [40, None, None], "counts": [[[minute, 35]], [], []]} in response["keys"]
    # Counts are Redis's business, not PostgreSQL's.
    assert first.sql("SELECT COUNT(*) FROM fleet_counts") == [(0,)]
    assert int(redis_server.command("EXISTS", f"keygate:fleet:t:{k}")) == 1
    seen = metrics(first)
    assert seen['keygate_control_fleet_backend{backend="redis"}'] == 1
    assert seen["keygate_control_fleet_redis_up"] == 1
    assert seen["keygate_control_fleet_published_keys"] >= 1
    assert seen["keygate_control_fleet_live_replicas"] == 2


def test_replicas_take_posts_of_changed_buckets_from_envoys_they_never_saw(replicas):
    """An Envoy's older buckets of any key near a limit are in Redis, whichever replica its
    earlier posts reached: a replica never sends a changed-only post back (409)."""
    k, minute = uuid.uuid4().hex, minute_now()
    for replica in replicas:
        response = Api(replica.url()).request(
            "POST", PATH, token="sync", headers={"keygate-sync-buckets": "changed"},
            json=post(f"envoy-{uuid.uuid4().hex[:6]}", k, minute, 1, 40))
        assert response.status_code == 200, response.text


def test_a_key_far_from_its_limits_costs_redis_nothing(replicas, redis_server):
    first, second = replicas
    k, minute = uuid.uuid4().hex, minute_now()
    rest_of(first, post("envoy-a", k, minute, 9, 40))
    rest_of(second, post("envoy-b", k, minute, 9, 40))
    flushes = metrics(first)["keygate_control_fleet_flushes_total"]
    wait_until(lambda: metrics(first)["keygate_control_fleet_flushes_total"] >= flushes + 4,
               timeout=SHARED_WITHIN_SECONDS, what="four more flushes")
    # 18 of 40 fleet-wide: below half the limit, which the answers leave room for.
    assert int(redis_server.command("EXISTS", f"keygate:fleet:t:{k}")) == 0


def test_an_envoy_alternating_between_replicas_is_counted_once(replicas):
    first, second = replicas
    k, minute = uuid.uuid4().hex, minute_now()
    for count in range(10, 70, 10):
        for replica in (first, second):
            rest_of(replica, post("envoy-a", k, minute, count, 40))
    wait_until(lambda: rest_of(second, post("envoy-b", k, minute, 1, 40)) == [[minute, 60]],
               timeout=SHARED_WITHIN_SECONDS, what="A's 60, once")
    wait_until(lambda: rest_of(first, post("envoy-b2", k, minute, 1, 40)) == [[minute, 61]],
               timeout=SHARED_WITHIN_SECONDS, what="A's 60 and B's 1 at the first replica")


def test_with_redis_down_replicas_answer_from_their_own_counts_and_catch_up(replicas, redis_server):
    first, second = replicas
    k, minute = uuid.uuid4().hex, minute_now()
    rest_of(first, post("envoy-a", k, minute, 20, 40))
    wait_until(lambda: rest_of(second, post("envoy-b", k, minute, 5, 40)) == [[minute, 20]],
               timeout=SHARED_WITHIN_SECONDS, what="shared while Redis is up")
    redis_server.stop()
    wait_until(lambda: metrics(second)["keygate_control_fleet_redis_up"] == 0,
               timeout=SHARED_WITHIN_SECONDS, what="the replica noticing Redis is gone")
    # Nothing is refused and nothing forgotten: the second replica's Envoys keep their own
    # counts and the fleet's last totals; A's new admissions wait for Redis.
    rest_of(first, post("envoy-a", k, minute, 30, 40))
    assert rest_of(second, post("envoy-b2", k, minute, 1, 40)) == [[minute, 25]]
    assert metrics(second)["keygate_control_fleet_flush_failures_total"] > 0
    assert "Redis flush failed" in second.log_text()
    # Back, empty (no persistence): the replicas notice and write everything again.
    redis_server.start()
    wait_until(lambda: rest_of(second, post("envoy-b2", k, minute, 1, 40)) == [[minute, 35]],
               timeout=SHARED_WITHIN_SECONDS * 2, what="counts converged after Redis came back")
    assert metrics(first)["keygate_control_fleet_redis_up"] == 1
    assert "Redis lost its data" in first.log_text() + second.log_text()


def test_a_replica_starts_while_redis_is_down(cluster, tmp_path):
    redis_server = RedisServer(tmp_path / "redis")  # not started
    replica = ControlService(cluster.new_database(), tmp_path / "replica.log", cluster=cluster,
                             extra_args=["--redis-url", redis_server.url]).start()
    try:
        k, minute = uuid.uuid4().hex, minute_now()
        rest_of(replica, post("envoy-a", k, minute, 30, 40))
        assert rest_of(replica, post("envoy-b", k, minute, 1, 40)) == [[minute, 30]]
        wait_until(lambda: metrics(replica)["keygate_control_fleet_flush_failures_total"] > 0,
                   timeout=SHARED_WITHIN_SECONDS, what="a failed flush")
        redis_server.start()
        wait_until(lambda: metrics(replica)["keygate_control_fleet_redis_up"] == 1,
                   timeout=SHARED_WITHIN_SECONDS * 2, what="Redis reached once started")
        assert int(redis_server.command("EXISTS", f"keygate:fleet:t:{k}")) == 1
    finally:
        replica.stop()
        redis_server.close()


def test_a_bad_redis_url_is_refused_at_start(cluster, tmp_path):
    replica = ControlService(cluster.new_database(), tmp_path / "replica.log", cluster=cluster,
                             extra_args=["--redis-url", "http://not-redis"], start_timeout=5)
    with pytest.raises(RuntimeError, match="Redis URL"):
        replica.start()
