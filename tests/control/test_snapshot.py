"""The snapshot feed: full pages, ETag/304, since-deltas with tombstones, epochs, long polls,
pagination."""

import hashlib
import socket
import time
from urllib.parse import urlparse

from keygate_testkit.api import HOLD_SECONDS as HOLD_DEADLINE_SECONDS
from keygate_testkit.api import HeldPoll, error_of, held_polls
from keygate_testkit.waiting import wait_until

# A woken poll must answer well inside its wait; a poll that is not woken answers 304 at the end.
LONG_POLL_SECONDS = 30
PROMPT_SECONDS = 5


def sha256(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def full_snapshot(api, **params):
    """Every page of a full snapshot; returns (first page, all keys by id)."""
    first, keys, cursor = None, {}, None
    for _ in range(10000):
        page_params = dict(params, **({"cursor": cursor} if cursor else {}))
        response = api.snapshot(**page_params)
        assert response.status_code == 200, response.text
        page = response.json()
        first = first or page
        keys.update({key["id"]: key for key in page["keys"]})
        cursor = page.get("next_cursor")
        if not cursor:
            return first, keys
    raise AssertionError("snapshot paging did not end")


def test_full_snapshot_has_records_and_etag(api, team):
    created = api.create(team=team, scopes=["submit_job"], allowed_ips=["10.0.0.0/8"], plan="pro",
                         limits={"per_minute": 9}, expires_at="2099-01-01T00:00:00+01:00")
    response = api.snapshot()
    page = response.json()
    assert page["full"] is True and page["since"] == 0 and page["deleted"] == []
    assert response.headers["etag"] == f'"{page["epoch"]}-{page["version"]}"'
    _, keys = full_snapshot(api)
    record = keys[created["id"]]
    assert record == {
        "id": created["id"], "hash": sha256(created["key"]), "prefix": "pk_live_",
        "last4": created["key"][-4:], "name": "test key", "team": team, "environment": "live",
        "scopes": ["submit_job"], "allowed_ips": ["10.0.0.0/8"], "expires_at": "2098-12-31T23:00:00Z",
        "active": True, "plan": "pro",
        "limits": {"per_minute": 9, "per_hour": None, "per_day": 10000, "concurrent": None},
        "quota_exceeded_until": None,
    }


def test_if_none_match_gives_304(api, team):
    api.create(team=team)
    response = api.snapshot()
    etag = response.headers["etag"]
    not_modified = api.request("GET", "/v1/snapshot", token="sync", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    api.create(team=team)
    changed = api.request("GET", "/v1/snapshot", token="sync", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_deltas_report_changes_and_tombstones(api, team):
    kept = api.create(team=team)
    doomed = api.create(team=team)
    base = api.snapshot(limit=1).json()
    epoch, version = base["epoch"], base["version"]
    assert api.snapshot(since=version, epoch=epoch).status_code == 304
    added = api.create(team=team)
    api.request("PATCH", f"/v1/keys/{kept['id']}", json={"active": False})
    assert api.request("DELETE", f"/v1/keys/{doomed['id']}").status_code == 204
    response = api.snapshot(since=version, epoch=epoch)
    delta = response.json()
    assert delta["full"] is False and delta["since"] == version and delta["epoch"] == epoch
    assert delta["version"] == version + 3
    assert response.headers["etag"] == f'"{epoch}-{version + 3}"'
    by_id = {key["id"]: key for key in delta["keys"]}
    assert set(by_id) == {added["id"], kept["id"]}
    assert by_id[kept["id"]]["active"] is False
    assert delta["deleted"] == [sha256(doomed["key"])]
    _, keys = full_snapshot(api)
    assert doomed["id"] not in keys and kept["id"] in keys
    later = api.snapshot(since=version + 2, epoch=epoch).json()
    assert later["keys"] == [] and later["deleted"] == [sha256(doomed["key"])]


def test_rotation_puts_both_keys_in_the_delta(api, team):
    old = api.create(team=team, scopes=["list_models"])
    base = api.snapshot(limit=1).json()
    new = api.request("POST", f"/v1/keys/{old['id']}/rotate", json={"grace_seconds": 600}).json()
    delta = api.snapshot(since=base["version"], epoch=base["epoch"]).json()
    assert delta["version"] == base["version"] + 1
    by_id = {key["id"]: key for key in delta["keys"]}
    assert set(by_id) == {old["id"], new["id"]}
    assert by_id[old["id"]]["expires_at"] is not None and by_id[old["id"]]["active"] is True
    assert by_id[new["id"]]["hash"] == sha256(new["key"])
    assert by_id[new["id"]]["scopes"] == ["list_models"]


def test_foreign_epoch_or_future_version_gets_full(api, team):
    api.create(team=team)
    base = api.snapshot(limit=1).json()
    for params in [{"since": base["version"], "epoch": "someone-else"},
                   {"since": base["version"]},
                   {"since": base["version"] + 100, "epoch": base["epoch"]}]:
        page = api.snapshot(limit=1, **params).json()
        assert page["full"] is True and page["since"] == 0, params
        assert page["epoch"] == base["epoch"]


def test_paging_covers_every_key_once(api, team):
    ids = {api.create(team=team)["id"] for _ in range(7)}
    first, keys = full_snapshot(api, limit=3)
    assert ids <= set(keys)
    assert first["next_cursor"]
    page = api.snapshot(limit=3).json()
    second = api.snapshot(limit=3, cursor=page["next_cursor"]).json()
    assert not {key["id"] for key in page["keys"]} & {key["id"] for key in second["keys"]}
    assert second["version"] == page["version"]


def test_delta_pages(api, team):
    base = api.snapshot(limit=1).json()
    ids = {api.create(team=team)["id"] for _ in range(5)}
    seen, cursor = set(), None
    for _ in range(10):
        params = {"since": base["version"], "epoch": base["epoch"], "limit": 2}
        page = api.snapshot(**params, **({"cursor": cursor} if cursor else {})).json()
        assert page["full"] is False and len(page["keys"]) <= 2
        seen |= {key["id"] for key in page["keys"]}
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert seen == ids


def test_bad_parameters(api):
    for params, field in [({"limit": 0}, "limit"), ({"limit": 50001}, "limit"), ({"wait": 0}, "wait"),
                          ({"wait": 61}, "wait"), ({"cursor": "nope"}, "cursor"), ({"since": -1}, "since"),
                          ({"since": "x"}, "since")]:
        response = api.snapshot(**params)
        assert response.status_code == 400, params
        code, message = error_of(response)
        assert code == "VALIDATION_ERROR" and field in message, message


def test_long_poll_answers_when_a_key_changes(api, team):
    base = api.snapshot(limit=1).json()
    poll = HeldPoll(api, LONG_POLL_SECONDS, since=base["version"], epoch=base["epoch"])
    written_at = time.monotonic()
    created = api.create(team=team)
    response = poll.answer(timeout=LONG_POLL_SECONDS + 10)
    assert response.status_code == 200, response.text
    assert poll.answered_at - written_at < PROMPT_SECONDS
    delta = response.json()
    assert delta["full"] is False and created["id"] in {key["id"] for key in delta["keys"]}
    assert held_polls(api) == poll.held_before


def test_a_long_poll_whose_client_goes_away_is_no_longer_held(api):
    base = api.snapshot(limit=1).json()
    before = held_polls(api)
    address = urlparse(api.url)
    query = f"since={base['version']}&epoch={base['epoch']}&wait={LONG_POLL_SECONDS}"
    request = (f"GET /v1/snapshot?{query} HTTP/1.1\r\nHost: {address.netloc}\r\n"
               f"Authorization: {api.sync['Authorization']}\r\n\r\n")
    with socket.create_connection((address.hostname, address.port), timeout=10) as client:
        client.sendall(request.encode())
        wait_until(lambda: held_polls(api) == before + 1, HOLD_DEADLINE_SECONDS, what="the poll to be held", retry_on=())
    wait_until(lambda: held_polls(api) == before, HOLD_DEADLINE_SECONDS, what="the abandoned poll to be released", retry_on=())


def test_held_polls_take_the_sync_token_only(api):
    assert api.request("GET", "/v1/snapshot/polls", token="admin").status_code == 401
    response = api.request("GET", "/v1/snapshot/polls", token=None)
    assert response.status_code == 401 and error_of(response)[0] == "UNAUTHORIZED"


def test_long_poll_times_out_with_304(api):
    before = held_polls(api)
    base = api.snapshot(limit=1).json()
    started = time.monotonic()
    response = api.snapshot(since=base["version"], epoch=base["epoch"], wait=1)
    elapsed = time.monotonic() - started
    assert response.status_code == 304
    assert 0.9 <= elapsed < 1 + PROMPT_SECONDS
    etag = api.snapshot(limit=1).headers["etag"]
    started = time.monotonic()
    response = api.request("GET", "/v1/snapshot", token="sync", params={"wait": 1},
                           headers={"If-None-Match": etag})
    assert response.status_code == 304 and 0.9 <= time.monotonic() - started < 1 + PROMPT_SECONDS
    assert held_polls(api) == before


def test_full_paging_stays_full_when_the_version_passes_since(api, team):
    for _ in range(3):
        api.create(team=team)
    base = api.snapshot(limit=1).json()
    ahead = base["version"] + 1
    first = api.snapshot(limit=1, since=ahead, epoch=base["epoch"]).json()
    assert first["full"] is True and first["next_cursor"]
    api.create(team=team)
    api.create(team=team)
    second = api.snapshot(limit=1, since=ahead, epoch=base["epoch"], cursor=first["next_cursor"]).json()
    assert second["full"] is True and second["since"] == 0
