"""The per-replica delta cache (`control/src/feed/delta_cache.rs`): polls that wake for the same
version share one page read and encoding, get the bytes the uncached path sends, and a proxy
further behind still gets the whole delta since its version. And the size of the cached full
snapshot (`control/src/feed/full_snapshot.rs`) that `GET /v1/snapshot/polls` reports."""

import struct

from keygate_testkit.api import Api, HeldPoll
from keygate_testkit.compact_snapshot import MEDIA_TYPE, compact_snapshot, decode_page

LONG_POLL_SECONDS = 30
WOKEN_POLLS = 12


def feed_counters(api):
    response = api.request("GET", "/v1/snapshot/polls", token="sync")
    assert response.status_code == 200, response.text
    return response.json()


def snapshot(api, accept, **params):
    return api.request("GET", "/v1/snapshot", token="sync", params=params, headers={"Accept": accept})


def revoke(api, key):
    response = api.request("PATCH", f"/v1/keys/{key['id']}", json={"active": False})
    assert response.status_code == 200, response.text


def test_polls_woken_by_one_change_share_one_page_build(api, team):
    key = api.create(team=team)
    base = api.snapshot(limit=1).json()
    built_before = feed_counters(api)["delta_pages_built"]
    polls = [HeldPoll(api, LONG_POLL_SECONDS, since=base["version"], epoch=base["epoch"])
             for _ in range(WOKEN_POLLS)]
    revoke(api, key)
    answers = [poll.answer(timeout=LONG_POLL_SECONDS + 10) for poll in polls]
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.content for answer in answers}) == 1
    assert len({answer.headers["etag"] for answer in answers}) == 1
    counters = feed_counters(api)
    assert counters["delta_pages_built"] - built_before == 1, counters
    assert counters["delta_cache_bytes"] >= len(answers[0].content)
    delta = answers[0].json()
    assert delta["full"] is False and delta["since"] == base["version"]
    assert [(record["id"], record["active"]) for record in delta["keys"]] == [(key["id"], False)]


def test_shared_bytes_and_headers_equal_a_fresh_build_in_both_encodings(api, team):
    key = api.create(team=team)
    base = api.snapshot(limit=1).json()
    revoke(api, key)
    for accept in ("application/json", MEDIA_TYPE):
        params = {"since": base["version"], "epoch": base["epoch"]}
        shared = [snapshot(api, accept, **params) for _ in range(3)]
        # Another page size is another cache entry, so this one is read and encoded afresh; with
        # fewer changed keys than either size the page is the same.
        fresh = snapshot(api, accept, limit=9999, **params)
        for response in shared + [fresh]:
            assert response.status_code == 200, response.text
            assert response.content == fresh.content
            for header in ("content-type", "etag", "cache-control", "vary"):
                assert response.headers[header] == fresh.headers[header], header
    page = decode_page(fresh.content)
    assert page["full"] is False and page["since"] == base["version"]
    assert [record["id"] for record in page["keys"]] == [key["id"]]


def test_a_proxy_further_behind_gets_every_change_since_its_version(api, team):
    first, second = api.create(team=team), api.create(team=team)
    behind = api.snapshot(limit=1).json()
    revoke(api, first)
    current = api.snapshot(limit=1).json()
    poll = HeldPoll(api, LONG_POLL_SECONDS, since=current["version"], epoch=current["epoch"])
    revoke(api, second)
    latest = poll.answer(timeout=LONG_POLL_SECONDS + 10).json()
    assert [record["id"] for record in latest["keys"]] == [second["id"]]
    further = api.snapshot(since=behind["version"], epoch=behind["epoch"]).json()
    assert further["since"] == behind["version"] and further["version"] == latest["version"]
    assert sorted(record["id"] for record in further["keys"]) == sorted([first["id"], second["id"]])
    assert all(record["active"] is False for record in further["keys"])


def test_the_cached_full_snapshot_reports_its_bytes(fresh_service, team):
    api = Api(fresh_service.start().url())
    # A small key set is not built at start: nothing is cached before the first full load.
    assert feed_counters(api)["full_snapshot_bytes"] == 0
    for _ in range(3):
        api.create(team=team)
    response, page = compact_snapshot(api, limit=50_000)
    assert page["full"] is True and "next_cursor" not in page and page["total_keys"] == len(page["keys"])
    # The cache holds exactly the page's framed records, and one 8-byte index entry per key.
    header_bytes = struct.unpack_from("<I", response.content, 8)[0]
    records = len(response.content) - 12 - header_bytes
    assert feed_counters(api)["full_snapshot_bytes"] == records + 8 * page["total_keys"]
