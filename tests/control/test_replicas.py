"""Several control-service replicas on one PostgreSQL database: the change feed never skips or
repeats a change, long polls wake on any replica, retried usage batches count once across
replicas, and a stopped or restarted PostgreSQL costs availability, never data. Each test runs
its own throwaway cluster (keygate_testkit.postgres), since some stop it."""

import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from keygate_testkit.api import Api, HeldPoll, error_of
from keygate_testkit.control import ControlService
from keygate_testkit.postgres import PostgresCluster
from keygate_testkit.waiting import wait_until

WRITERS_PER_REPLICA = 8
CHANGES = 2_000
FEED_DEADLINE_SECONDS = 120
# A write on one replica must answer a poll held on another within this (typical), and always
# within the re-check interval plus slack (a lost notification).
WAKE_TYPICAL_SECONDS = 0.1
WAKE_WORST_SECONDS = 1.5
# Our deadlines: 3 s for a connection, 5 s per statement; the answer must come before this.
UNAVAILABLE_DEADLINE_SECONDS = 8


@pytest.fixture
def cluster(tmp_path):
    cluster = PostgresCluster(tmp_path / "postgres").init().start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def replicas(cluster, tmp_path):
    """Two replicas on one fresh database."""
    url = cluster.new_database()
    started = [ControlService(url, tmp_path / f"replica-{n}.log", cluster=cluster).start()
               for n in range(2)]
    yield started
    for replica in started:
        replica.stop()


class Follower:
    """Follows the change feed of one replica with long-polled deltas, as a proxy does, and
    records every page."""

    def __init__(self, api):
        self.api = api
        self.pages = []
        self.seen = {}  # key id -> how many delta pages carried it
        self.live = {}  # hash -> key id, as a proxy would hold it
        self.version = None
        self.epoch = None
        self.failures = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def poll_once(self, wait):
        params = {"limit": 500}
        if self.version is not None:
            params.update(since=self.version, epoch=self.epoch, wait=wait)
        cursor = None
        while True:
            if cursor:
                params["cursor"] = cursor
            response = self.api.request("GET", "/v1/snapshot", token="sync", params=params,
                                        timeout=wait + 10)
            if response.status_code == 304:
                return
            assert response.status_code == 200, response.text
            page = response.json()
            if self.version is not None:
                assert not page["full"], "a follower with a current version was sent a full snapshot"
                assert page["since"] == self.version
            self.pages.append((page["since"], page["version"]))
            for record in page["keys"]:
                self.seen[record["id"]] = self.seen.get(record["id"], 0) + 1
                self.live[record["hash"]] = record["id"]
            for removed in page["deleted"]:
                self.live.pop(removed, None)
            cursor = page.get("next_cursor")
            if not cursor:
                assert self.version is None or page["version"] > self.version
                self.version, self.epoch = page["version"], page["epoch"]
                return

    def run(self):
        deadline = time.monotonic() + FEED_DEADLINE_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                self.poll_once(wait=2)
            except Exception as error:  # noqa: BLE001 - reported by the test
                self.failures.append(repr(error))
                return


def test_every_change_reaches_every_follower_once_in_order(replicas, cluster):
    apis = [Api(replica.url()) for replica in replicas]
    followers = [Follower(api) for api in apis]
    for follower in followers:
        follower.poll_once(wait=0)
        follower.thread.start()
    created = []
    lock = threading.Lock()

    def write(writer):
        api = apis[writer % len(apis)]
        for n in range(CHANGES // (WRITERS_PER_REPLICA * len(apis))):
            response = api.request("POST", "/v1/keys", json={"name": f"w{writer}-{n}"})
            assert response.status_code == 201, response.text
            with lock:
                created.append(response.json()["id"])

    started = time.monotonic()
    with ThreadPoolExecutor(WRITERS_PER_REPLICA * len(apis)) as pool:
        for done in [pool.submit(write, writer) for writer in range(WRITERS_PER_REPLICA * len(apis))]:
            done.result(timeout=FEED_DEADLINE_SECONDS)
    elapsed = time.monotonic() - started
    print(f"{len(created)} keys created through 2 replicas by {WRITERS_PER_REPLICA * 2} writers "
          f"in {elapsed:.1f}s ({len(created) / elapsed:.0f}/s)")
    assert len(created) == CHANGES
    stored = dict(cluster.psql(replicas[0].database.rsplit("/", 1)[1],
                               "SELECT id, CAST(value AS BIGINT) FROM keys, meta "
                               "WHERE meta.name = 'version' AND deleted = 0"))
    final_version = int(next(iter(stored.values())))
    for follower in followers:
        wait_until(lambda f=follower: f.failures or f.version == final_version, 30,
                   what="the follower to reach the last version", retry_on=())
        follower.stop.set()
        follower.thread.join(timeout=15)
        assert not follower.failures, follower.failures
        assert set(follower.seen) == set(created), "a follower missed or invented a key"
        repeated = {key: count for key, count in follower.seen.items() if count != 1}
        assert not repeated, f"changes seen more than once: {list(repeated.items())[:5]}"
        # Pages chain: each delta starts where the last ended, and versions only grow.
        versions = [version for _, version in follower.pages]
        assert versions == sorted(versions)
        assert set(follower.live.values()) == set(stored)
    full = apis[1].snapshot(limit=10_000).json()
    assert {record["id"] for record in full["keys"]} == set(stored) == set(created)


def test_a_write_on_one_replica_wakes_polls_held_on_the_other(replicas):
    writer, holder = Api(replicas[0].url()), Api(replicas[1].url())
    current = holder.snapshot().json()
    latencies = []
    for n in range(10):
        poll = HeldPoll(holder, wait=20, since=current["version"], epoch=current["epoch"])
        wrote_at = time.monotonic()
        writer.create(name=f"wake-{n}")
        answer = poll.answer(timeout=WAKE_WORST_SECONDS + 5)
        assert answer.status_code == 200, answer.text
        latencies.append(poll.answered_at - wrote_at)
        current = answer.json()
    latencies.sort()
    print(f"cross-replica wake-up after a write: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms (includes the 201 round trip)")
    assert statistics.median(latencies) <= WAKE_TYPICAL_SECONDS
    assert latencies[-1] <= WAKE_WORST_SECONDS


def test_a_retried_batch_sent_to_the_other_replica_counts_once(replicas):
    first, second = Api(replicas[0].url()), Api(replicas[1].url())
    key = first.create(name="usage across replicas")
    hour = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime())
    body = {"proxy_id": "proxy-a", "batch_id": f"batch-{uuid.uuid4().hex}",
            "reports": [{"key_id": key["id"], "hour": hour, "allowed": 5, "denied": {}}]}
    results = []

    def send(api):
        response = api.request("POST", "/v1/usage", token="sync", json=body)
        assert response.status_code == 200, response.text
        results.append(response.json())

    # At once, through both replicas: one counts it, the other sees it counted.
    threads = [threading.Thread(target=send, args=(api,)) for api in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(result["duplicate"] for result in results) == [False, True]
    totals = second.request("GET", f"/v1/keys/{key['id']}/usage").json()["totals"]
    assert totals["allowed"] == 5


def test_postgres_stopped_means_503_in_time_and_nothing_lost_when_it_returns(replicas, cluster):
    api, other = Api(replicas[0].url()), Api(replicas[1].url())
    before = api.create(name="before the outage")
    current = other.snapshot().json()
    cluster.stop()
    try:
        started = time.monotonic()
        refused = api.request("POST", "/v1/keys", json={"name": "during the outage"}, timeout=30)
        took = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert error_of(refused)[0] == "UNAVAILABLE"
        assert refused.headers.get("retry-after") == "1"
        assert took <= UNAVAILABLE_DEADLINE_SECONDS, f"the write took {took:.1f}s to be refused"
        # Reads of the feed answer too (503 or 304), never hang past the deadline.
        started = time.monotonic()
        feed = other.request("GET", "/v1/snapshot", token="sync", timeout=30,
                             params={"since": current["version"], "epoch": current["epoch"]})
        assert feed.status_code in (304, 503), feed.text
        assert time.monotonic() - started <= UNAVAILABLE_DEADLINE_SECONDS
        for replica in replicas:
            assert replica.proc.poll() is None, "a replica exited while the database was down"
    finally:
        cluster.start()
    # Back without restarting the replicas: writes work, nothing acknowledged was lost.
    def accepts_writes():
        try:
            return api.request("POST", "/v1/keys", json={"name": "after the outage"}).status_code == 201
        except requests.RequestException:
            return False

    wait_until(accepts_writes, 20, what="writes to work again", retry_on=())
    names = {key["name"] for key in other.request("GET", "/v1/keys", params={"limit": 100}).json()["keys"]}
    assert {"before the outage", "after the outage"} <= names
    assert "during the outage" not in names
    assert other.request("GET", f"/v1/keys/{before['id']}").status_code == 200


def test_polls_held_across_a_postgres_restart_are_answered_and_wake_ups_resume(replicas, cluster):
    writer, holder = Api(replicas[0].url()), Api(replicas[1].url())
    current = holder.snapshot().json()
    poll = HeldPoll(holder, wait=15, since=current["version"], epoch=current["epoch"])
    cluster.restart()
    # The held poll is answered (unchanged: 304) by its own deadline, not dropped.
    assert poll.answer(timeout=30).status_code in (200, 304)

    def writes():
        try:
            return writer.request("POST", "/v1/keys", json={"name": "after restart"}).status_code == 201
        except requests.RequestException:
            return False

    wait_until(writes, 20, what="writes to work after the restart", retry_on=())
    current = holder.snapshot().json()
    # LISTEN is re-established: a new write wakes a poll held on the other replica promptly.
    poll = HeldPoll(holder, wait=20, since=current["version"], epoch=current["epoch"])
    wrote_at = time.monotonic()
    writer.create(name="wakes after restart")
    answer = poll.answer(timeout=WAKE_WORST_SECONDS + 5)
    assert answer.status_code == 200
    assert poll.answered_at - wrote_at <= WAKE_WORST_SECONDS


def test_a_replica_refuses_a_schema_newer_than_it_knows(cluster, tmp_path):
    url = cluster.new_database()
    first = ControlService(url, tmp_path / "first.log", cluster=cluster).start()
    first.stop()
    database = url.rsplit("/", 1)[1]
    newest = int(cluster.psql(database, "SELECT MAX(version) FROM refinery_schema_history")[0][0])
    cluster.psql(database, "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) "
                           f"VALUES ({newest + 1}, 'from_a_newer_build', '2030-01-01T00:00:00Z', '0')")
    newer = ControlService(url, tmp_path / "newer.log", cluster=cluster)
    with pytest.raises(RuntimeError) as exited:
        newer.start()
    message = str(exited.value)
    assert "newer keygate-control" in message and f"version {newest}" in message, message
