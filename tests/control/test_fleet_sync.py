"""POST /v1/ratelimits/sync: what each Envoy admitted per limited key and bucket in, the rest of
the fleet's counts out (contract/src/fleet.rs). On both backends; the counts live in memory on
SQLite and in the database on PostgreSQL, where replicas share them."""

import time
import uuid

import pytest

from keygate_testkit.api import Api, error_of
from keygate_testkit.control import ControlService

BUCKET_MS = [2_000, 120_000, 3_600_000]
WINDOW_MS = [60_000, 3_600_000, 86_400_000]
PATH = "/v1/ratelimits/sync"


def tag():
    """A key tag no other test uses."""
    return uuid.uuid4().hex


def now_buckets():
    now_ms = int(time.time() * 1000)
    return [now_ms // width for width in BUCKET_MS]


def key(key_tag, minute, limits=(1000, None, None), hour=(), day=()):
    return {"key": key_tag, "limits": list(limits),
            "counts": [[list(pair) for pair in minute], [list(pair) for pair in hour],
                       [list(pair) for pair in day]]}


def post(proxy, keys, bucket_ms=BUCKET_MS, window_ms=WINDOW_MS):
    return {"proxy_id": proxy, "bucket_ms": bucket_ms, "window_ms": window_ms, "keys": keys}


def sync(api, body):
    response = api.request("POST", PATH, token="sync", json=body)
    assert response.status_code == 200, response.text
    return {entry["key"]: entry for entry in response.json()["keys"]}


def test_only_the_sync_token_opens_it(api):
    body = post("envoy-auth", [])
    assert api.request("POST", PATH, token=None, json=body).status_code == 401
    assert api.request("POST", PATH, token="admin", json=body).status_code == 401
    assert api.request("POST", PATH, token="sync", json=body).status_code == 200


def test_the_rest_of_the_fleet_is_every_other_envoy_summed(api):
    k = tag()
    minute, hour, day = now_buckets()
    assert k not in sync(api, post("envoy-a", [key(k, [(minute - 1, 3), (minute, 2)], hour=[(hour, 5)])]))
    sync(api, post("envoy-b", [key(k, [(minute, 4)], hour=[(hour, 4)])]))
    answer = sync(api, post("envoy-c", [key(k, [(minute, 1)])]))
    assert answer[k]["counts"] == [[[minute - 1, 3], [minute, 6]], [[hour, 9]], []]
    assert answer[k]["limits"] == [1000, None, None]
    # Envoy A is told only what B and C admitted; zero buckets are left out.
    answer = sync(api, post("envoy-a", [key(k, [(minute - 1, 3), (minute, 2)])]))
    assert answer[k]["counts"] == [[[minute, 5]], [[hour, 4]], []]


def test_counts_are_absolute_a_retry_or_a_late_sync_changes_nothing(api):
    k = tag()
    minute = now_buckets()[0]
    for _ in range(3):
        sync(api, post("envoy-a", [key(k, [(minute, 5)])]))
    assert sync(api, post("envoy-b", [key(k, [(minute, 1)])]))[k]["counts"][0] == [[minute, 5]]
    sync(api, post("envoy-a", [key(k, [(minute, 2)])]))
    assert sync(api, post("envoy-b", [key(k, [(minute, 1)])]))[k]["counts"][0] == [[minute, 5]]
    sync(api, post("envoy-a", [key(k, [(minute, 7)])]))
    assert sync(api, post("envoy-b", [key(k, [(minute, 1)])]))[k]["counts"][0] == [[minute, 7]]


def test_buckets_outside_the_window_are_not_answered(api):
    """Short windows (100 ms buckets, 1 s windows), as the filter's test knobs make them. The
    post's newest bucket is the window's end: no waiting needed."""
    k = tag()
    short = dict(bucket_ms=[100, 1_000, 10_000], window_ms=[1_000, 10_000, 100_000])
    start = int(time.time() * 1000) // 100
    sync(api, post("envoy-a", [key(k, [(start, 4)])], **short))
    inside = sync(api, post("envoy-b", [key(k, [(start + 9, 1)])], **short))
    assert inside[k]["counts"][0] == [[start, 4]]
    outside = sync(api, post("envoy-b", [key(k, [(start + 10, 1)])], **short))
    assert k not in outside
    # Envoys with the default widths count apart from these.
    assert k not in sync(api, post("envoy-c", [key(k, [(now_buckets()[0], 1)])]))


def test_hot_keys_of_several_envoys_reach_envoys_that_never_saw_them(api):
    cool, hot = tag(), tag()
    minute, hour, _ = now_buckets()
    # Half of a limit in any window is hot: 3 of 6 in the hour is; 4 of 10 in the minute is not.
    sync(api, post("envoy-a", [key(cool, [(minute, 4)], limits=(10, None, None)),
                               key(hot, [(minute, 2)], limits=(None, 6, None), hour=[(hour, 2)])]))
    # One Envoy's hot key is not pushed (a newcomer hears of it at its first sync of it).
    assert hot not in sync(api, post("envoy-new", []))
    sync(api, post("envoy-b", [key(hot, [(minute, 1)], limits=(None, 6, None), hour=[(hour, 1)])]))
    answer = sync(api, post("envoy-new", []))
    assert answer[hot]["counts"] == [[[minute, 3]], [[hour, 3]], []]
    assert cool not in answer, "4 of 10 is below half"
    sync(api, post("envoy-b", [key(cool, [(minute, 1)], limits=(10, None, None))]))
    answer = sync(api, post("envoy-new", []))
    assert answer[cool]["counts"][0] == [[minute, 5]]
    # Each Envoy is told only the rest of the fleet's share of the hot key.
    assert sync(api, post("envoy-a", []))[hot]["counts"][1] == [[hour, 1]]


@pytest.mark.parametrize("body, field", [
    ({"bucket_ms": BUCKET_MS, "window_ms": WINDOW_MS, "keys": []}, "proxy_id: is required"),
    (post("", []), "proxy_id"),
    (post("e", [key("XYZ", [])]), "keys[0].key"),
    (post("e", [], bucket_ms=[2_000, 0, 3_600_000]), "bucket_ms[1]"),
    (post("e", [], bucket_ms=[10, 120_000, 3_600_000]), "window_ms[0]"),
    (post("e", [key(uuid.uuid4().hex, [(1, 1)] * 65)]), "keys[0].counts[0]"),
    (post("e", [{"key": uuid.uuid4().hex, "counts": [[[1, -1]], [], []]}]), "keys[0].counts[0]"),
    (post("e", [{"key": uuid.uuid4().hex, "counts": [[], []]}]), "keys[0].counts"),
])
def test_invalid_syncs_name_the_field(api, body, field):
    response = api.request("POST", PATH, token="sync", json=body)
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "VALIDATION_ERROR"
    assert message.startswith(field), message


def test_unknown_fields_are_ignored_and_bad_bodies_refused(api):
    k = tag()
    body = post("envoy-a", [dict(key(k, [(now_buckets()[0], 1)]), later=True)])
    body["from_the_future"] = {"x": 1}
    assert api.request("POST", PATH, token="sync", json=body).status_code == 200
    response = api.request("POST", PATH, token="sync", data=b"{not json",
                           headers={"Content-Type": "application/json"})
    assert error_of(response)[0] == "INVALID_JSON"
    too_big = b'{"proxy_id":"e","pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    response = api.request("POST", PATH, token="sync", data=too_big,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and error_of(response)[0] == "PAYLOAD_TOO_LARGE"


def test_a_full_sync_of_5000_keys_is_answered_capped(api):
    minute = now_buckets()[0]
    keys = [key(tag(), [(minute, 1)]) for _ in range(5_000)]
    sync(api, post("envoy-big-a", keys))
    answer = sync(api, post("envoy-big-b", keys))
    assert len(answer) == 5_000
    assert all(entry["counts"][0] == [[minute, 1]] for entry in answer.values())
    assert set(answer) == {entry["key"] for entry in keys}, "the posted keys come first"


def test_where_the_counts_live_across_a_restart(fresh_service):
    """PostgreSQL keeps them in the database; SQLite in memory, rebuilt by the next syncs."""
    fresh_service.start()
    api = Api(fresh_service.url())
    k = tag()
    minute = now_buckets()[0]
    sync(api, post("envoy-a", [key(k, [(minute, 5)])]))
    fresh_service.stop()
    fresh_service.start()
    api = Api(fresh_service.url())
    answer = sync(api, post("envoy-b", [key(k, [(minute, 1)])]))
    if fresh_service.is_postgres:
        assert answer[k]["counts"][0] == [[minute, 5]]
        assert fresh_service.sql(f"SELECT count FROM fleet_counts WHERE key_tag = '{k}' "
                                 f"AND proxy = 'envoy-a'") == [(5,)]
    else:
        assert k not in answer, "in memory: forgotten with the process"
        assert fresh_service.sql("SELECT COUNT(*) FROM fleet_counts") == [(0,)]
        sync(api, post("envoy-a", [key(k, [(minute, 6)])]))
        assert sync(api, post("envoy-b", [key(k, [(minute, 1)])]))[k]["counts"][0] == [[minute, 6]]


CHANGED_ONLY = {"keygate-sync-buckets": "changed"}


def test_a_post_of_changed_buckets_from_a_proxy_the_service_holds_nothing_of_is_sent_back(
        fresh_service):
    """`keygate-sync-buckets: changed`: counted where the proxy's older buckets are held (the
    database; memory once the proxy posted every bucket), refused 409 by a process that lost
    them, so the Envoy posts every bucket at once."""
    fresh_service.start()
    api = Api(fresh_service.url())
    k = tag()
    minute = now_buckets()[0]

    def changed_only(proxy, count):
        return api.request("POST", PATH, token="sync", headers=CHANGED_ONLY,
                           json=post(proxy, [key(k, [(minute, count)])]))

    if fresh_service.is_postgres:
        assert changed_only("envoy-a", 3).status_code == 200
    else:
        refused = changed_only("envoy-a", 3)
        assert refused.status_code == 409
        assert error_of(refused)[0] == "CONFLICT"
        assert "post every bucket" in error_of(refused)[1]
        sync(api, post("envoy-a", [key(k, [(minute - 1, 2), (minute, 3)])]))
    assert changed_only("envoy-a", 4).status_code == 200
    assert sync(api, post("envoy-b", [key(k, [(minute, 1)])]))[k]["counts"][0][-1] == [minute, 4]
    fresh_service.stop()
    fresh_service.start()
    api = Api(fresh_service.url())
    expected = 200 if fresh_service.is_postgres else 409
    assert changed_only("envoy-a", 5).status_code == expected, "after a restart"


def test_replicas_on_one_database_share_the_counts(postgres_cluster, tmp_path):
    url = postgres_cluster.new_database()
    replicas = [ControlService(url, tmp_path / f"replica-{n}.log", cluster=postgres_cluster).start()
                for n in range(2)]
    try:
        first, second = (Api(replica.url()) for replica in replicas)
        k = tag()
        minute = now_buckets()[0]
        sync(first, post("envoy-a", [key(k, [(minute, 5)], limits=(8, None, None))]))
        answer = sync(second, post("envoy-b", [key(k, [(minute, 1)], limits=(8, None, None))]))
        assert answer[k]["counts"][0] == [[minute, 5]]
        assert sync(first, post("envoy-a", [key(k, [(minute, 5)], limits=(8, None, None))]))[k]["counts"][0] == [[minute, 1]]
        # Hot (6 of 8) through either replica, to an Envoy that never saw the key.
        assert sync(second, post("envoy-c", []))[k]["counts"][0] == [[minute, 6]]
        assert sync(first, post("envoy-c", []))[k]["counts"][0] == [[minute, 6]]
    finally:
        for replica in replicas:
            replica.stop()
