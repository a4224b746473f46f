"""The compact snapshot encoding: content negotiation, hash order across pages, the cached full
snapshot, and cursors that outlive the version they started at or move to another replica."""

import hashlib

import pytest
from keygate_testkit.api import Api
from keygate_testkit.compact_snapshot import FILTER_ACCEPT, MEDIA_TYPE, as_compact, compact_snapshot
from keygate_testkit.control import ControlService


def sha256(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


@pytest.fixture
def own(fresh_service):
    """A service of its own, whose cached full snapshot no other test has built."""
    return fresh_service.start()


def json_full_snapshot(api):
    """Every key of a JSON full snapshot, by id, instants in Unix seconds."""
    keys, cursor = {}, None
    for _ in range(10000):
        page = api.snapshot(limit=500, **({"cursor": cursor} if cursor else {})).json()
        keys.update({key["id"]: as_compact(key) for key in page["keys"]})
        cursor = page.get("next_cursor")
        if not cursor:
            return keys
    raise AssertionError("snapshot paging did not end")


def compact_pages(api, limit, first=None, cursor=None, on_page=None):
    """Pages a compact full snapshot to its end; returns the decoded pages."""
    pages = [first] if first else []
    cursor = cursor or (first or {}).get("next_cursor")
    if not first:
        _, page = compact_snapshot(api, limit=limit)
        pages.append(page)
        cursor = page.get("next_cursor")
    for _ in range(10000):
        if not cursor:
            return pages
        if on_page:
            on_page(len(pages))
        _, page = compact_snapshot(api, limit=limit, cursor=cursor)
        pages.append(page)
        cursor = page.get("next_cursor")
    raise AssertionError("snapshot paging did not end")


def test_the_encoding_follows_accept_and_says_it_varies(api, team):
    api.create(team=team)
    cases = [({}, "application/json"),
             ({"Accept": "application/json"}, "application/json"),
             ({"Accept": "*/*"}, "application/json"),
             ({"Accept": f"{MEDIA_TYPE};q=0.4, application/json"}, "application/json"),
             ({"Accept": MEDIA_TYPE}, MEDIA_TYPE),
             ({"Accept": FILTER_ACCEPT}, MEDIA_TYPE)]
    for headers, expected in cases:
        response = api.request("GET", "/v1/snapshot", token="sync", params={"limit": 1},
                               headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == expected, headers
        assert response.headers["vary"].lower() == "accept"
        if expected == MEDIA_TYPE:
            assert response.content.startswith(b"KGSNAP\x00\x01")
        else:
            assert response.json()["full"] is True
    etag = response.headers["etag"]
    not_modified = api.request("GET", "/v1/snapshot", token="sync",
                               headers={"Accept": FILTER_ACCEPT, "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.headers["vary"].lower() == "accept"


def test_a_compact_full_snapshot_is_the_json_one_in_hash_order(own, team):
    api = Api(own.url())
    created = api.create(team=team, scopes=["submit_job"], allowed_ips=["10.0.0.0/8", "::1"],
                         plan="pro", limits={"per_minute": 9},
                         expires_at="2099-01-01T00:00:00+01:00")
    for _ in range(6):
        api.create(team=team)
    pages = compact_pages(api, limit=3)
    keys = [key for page in pages for key in page["keys"]]
    hashes = [key["hash"] for key in keys]
    assert hashes == sorted(hashes) and len(set(hashes)) == len(hashes)
    assert len(pages) >= 3 and all(len(page["keys"]) <= 3 for page in pages)
    assert all(page["full"] and page["since"] == 0 and page["deleted"] == [] for page in pages)
    assert pages[0]["total_keys"] == len(keys)
    compact = {key["id"]: key for key in keys}
    assert compact == json_full_snapshot(api)
    assert compact[created["id"]]["hash"] == sha256(created["key"])
    assert compact[created["id"]]["expires_at"] == 4070905200
    assert compact[created["id"]]["limits"]["per_minute"] == 9


def test_the_full_snapshot_is_built_once_and_served_from_the_cache(own, team):
    api = Api(own.url())
    api.create(team=team)
    _, first = compact_snapshot(api, limit=2)
    api.create(team=team)
    # Within its freshness window the cached snapshot starts every load, at its own version;
    # the delta since that version brings the new key.
    _, again = compact_snapshot(api, limit=2)
    assert again["version"] == first["version"] and again["keys"] == first["keys"]
    assert again["total_keys"] == first["total_keys"]
    _, delta = compact_snapshot(api, since=first["version"], epoch=first["epoch"])
    assert delta["full"] is False and len(delta["keys"]) == 1
    assert first["total_keys"] == 1


def load(api, limit, on_page=None):
    """What the filter ends up with: a full snapshot's pages, then the deltas since the first
    page's version, applied in order. Returns keys by hash."""
    pages = compact_pages(api, limit, on_page=on_page)
    keys = {key["hash"]: key for page in pages for key in page["keys"]}
    since, epoch = pages[0]["version"], pages[0]["epoch"]
    cursor = None
    for _ in range(10000):
        params = {"since": since, "epoch": epoch, **({"cursor": cursor} if cursor else {})}
        response = api.request("GET", "/v1/snapshot", token="sync", params=params,
                               headers={"Accept": FILTER_ACCEPT})
        if response.status_code == 304:
            return keys
        _, delta = compact_snapshot(api, **params)
        assert delta["full"] is False
        keys.update({key["hash"]: key for key in delta["keys"]})
        for hash_ in delta["deleted"]:
            keys.pop(hash_, None)
        cursor = delta.get("next_cursor")
        if not cursor:
            since = delta["version"]
    raise AssertionError("deltas did not end")


def current_keys(api):
    return {key["hash"]: key for key in json_full_snapshot(api).values()}


def test_a_cursor_used_after_the_version_moved_still_loads_everything(api, team):
    keys = [api.create(team=team) for _ in range(12)]

    def change_between_pages(page_number):
        # Between pages: keys created, changed and deleted, on both sides of the cursor. The
        # service also holds other tests' keys, so a load has more pages than these 12 keys
        # make: the first five page turns change things.
        if not 1 <= page_number <= 5:
            return
        api.create(team=team)
        changed = keys[page_number]
        api.request("PATCH", f"/v1/keys/{changed['id']}", json={"active": False})
        assert api.request("DELETE", f"/v1/keys/{keys[-page_number]['id']}").status_code == 204

    loaded = load(api, limit=4, on_page=change_between_pages)
    assert loaded == current_keys(api)


def test_a_cursor_continues_on_a_replica_without_the_cache(own, team, tmp_path):
    api = Api(own.url())
    for _ in range(9):
        api.create(team=team)
    _, first = compact_snapshot(api, limit=4)
    api.create(team=team)
    other = ControlService(own.database, tmp_path / "other.log", cluster=own.cluster)
    try:
        other.start()
        other_api = Api(other.url())
        pages = compact_pages(other_api, limit=4, first=first)
        _, second = compact_snapshot(other_api, limit=4, cursor=first["next_cursor"])
        assert second["version"] >= first["version"]
        hashes = [key["hash"] for page in pages for key in page["keys"]]
        assert hashes == sorted(hashes) and len(set(hashes)) == len(hashes)
        # The first page came from the first replica's cache, the rest from the database of a
        # later version: the new key shows wherever its hash falls after the first page.
        assert len(hashes) in (9, 10) and pages[1]["total_keys"] == 0
        # A JSON client may take the same cursor: the same keys, as JSON.
        as_json = other_api.snapshot(limit=4, cursor=first["next_cursor"]).json()
        assert [key["hash"] for key in as_json["keys"]] == [key["hash"] for key in second["keys"]]
        assert as_json["full"] is True
    finally:
        other.stop()


def test_compact_deltas_carry_changes_and_deletions(api, team):
    kept = api.create(team=team)
    doomed = api.create(team=team)
    _, base = compact_snapshot(api, limit=1)
    # The cached snapshot may be older than the keys above: take the version from the feed.
    version = api.snapshot(limit=1).json()["version"]
    api.request("PATCH", f"/v1/keys/{kept['id']}", json={"active": False})
    assert api.request("DELETE", f"/v1/keys/{doomed['id']}").status_code == 204
    _, delta = compact_snapshot(api, since=version, epoch=base["epoch"])
    assert delta["full"] is False and delta["since"] == version
    assert delta["version"] == version + 2 and delta["total_keys"] == 0
    assert [key["id"] for key in delta["keys"]] == [kept["id"]]
    assert delta["keys"][0]["active"] is False
    assert delta["deleted"] == [sha256(doomed["key"])]


def test_a_foreign_hash_cursor_is_refused(api):
    for cursor in ["h1.zz", "h1." + "A" * 64, "x"]:
        response = api.request("GET", "/v1/snapshot", token="sync", params={"cursor": cursor},
                               headers={"Accept": FILTER_ACCEPT})
        assert response.status_code == 400, cursor
