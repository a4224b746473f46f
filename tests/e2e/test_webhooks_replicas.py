"""Webhook delivery across control-service replicas on one throwaway PostgreSQL database: each
event is delivered by one replica (the outbox lease), and a replica killed with SIGKILL in the
middle of a delivery loses nothing: once its lease lapses another replica sends the same event
again, with the same `webhook-id`, so the receiver sees it at most twice and the log ends
`delivered`."""

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from keygate_testkit.control import ControlService
from keygate_testkit.waiting import wait_until
from keygate_testkit.webhooks import Receiver

# A 2 s attempt timeout makes the lease 7 s (timeout + 5 s).
REPLICA_ARGS = ["--webhook-allow-private", "--webhook-retry-base", "1", "--webhook-timeout", "2"]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_a_replica_killed_mid_delivery_loses_nothing_and_duplicates_at_most_that_delivery(postgres_cluster, receiver,
                                                                                          tmp_path):
    url = postgres_cluster.new_database()
    first = ControlService(url, tmp_path / "first.log", extra_args=REPLICA_ARGS).start()
    second = None
    try:
        created = first.admin("POST", "/v1/webhooks", json={"url": receiver.url, "events": ["key.created"]})
        assert created.status_code == 201, created.text
        hook = created.json()
        receiver.hold_next = True
        key = first.create_key(name="during-a-crash")
        assert receiver.held.wait(15), "the first replica never sent the delivery"
        first.stop(hard=True)
        receiver.release.set()
        second = ControlService(url, tmp_path / "second.log", extra_args=REPLICA_ARGS).start()
        event_id = receiver.deliveries[0]["headers"]["webhook-id"]

        def delivered():
            log = second.admin("GET", f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
            return [entry for entry in log if entry["event_id"] == event_id and entry["status"] == "delivered"]

        entry = wait_until(delivered, timeout=30, what="the survivor to deliver the event")[0]
        attempts = receiver.with_id(event_id)
        assert len(attempts) == 2, [attempt["headers"] for attempt in attempts]
        assert attempts[0]["body"] == attempts[1]["body"]
        for attempt in attempts:
            body = Verifier(hook["secret"]).verify(attempt["body"], attempt["headers"])
            assert body["type"] == "key.created" and body["data"]["key_id"] == key["id"]
        assert entry["attempts"] == 1 and entry["last_status"] == 204
        # Nothing else was sent twice: one event, one delivery row.
        assert len(receiver.deliveries) == 2
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_two_live_replicas_deliver_each_event_once(postgres_cluster, receiver, tmp_path):
    url = postgres_cluster.new_database()
    replicas = [ControlService(url, tmp_path / f"r{index}.log", extra_args=REPLICA_ARGS).start() for index in range(2)]
    try:
        created = replicas[0].admin("POST", "/v1/webhooks", json={"url": receiver.url, "events": ["key.created"]})
        assert created.status_code == 201, created.text
        keys = [replicas[index % 2].create_key(name=f"k{index}") for index in range(20)]
        wait_until(lambda: len(receiver.events("key.created")) >= 20, timeout=30, what="20 key.created events")
        # Both replicas poll the outbox every second; give a double delivery the time to show.
        wait_until(lambda: all(
            entry["status"] == "delivered"
            for entry in replicas[1].admin("GET", f"/v1/webhooks/{created.json()['id']}/deliveries").json()["deliveries"]),
            timeout=10, what="every delivery logged as delivered")
        ids = [delivery["headers"]["webhook-id"] for delivery in receiver.deliveries]
        assert len(ids) == len(set(ids)) == 20
        assert {event["data"]["key_id"] for event in receiver.events("key.created")} == {key["id"] for key in keys}
    finally:
        for replica in replicas:
            replica.stop()
