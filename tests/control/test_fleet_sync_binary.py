"""POST /v1/ratelimits/sync in the compact binary encoding (docs/rate-limits.md, "The sync's
encodings"): posts built by keygate_testkit.fleet_binary, written from the documented layout (the
same encoder bench/fleet_sync.py uses), are accepted and answered like their JSON, in the encoding
`Accept` asks for; anything else is refused in the documented error shape. On both backends."""

import time
import uuid

import pytest

from keygate_testkit import fleet_binary
from keygate_testkit.api import error_of

BUCKET_MS = [2_000, 120_000, 3_600_000]
WINDOW_MS = [60_000, 3_600_000, 86_400_000]
PATH = "/v1/ratelimits/sync"
BINARY = {"Content-Type": fleet_binary.MEDIA_TYPE}
BINARY_BOTH_WAYS = {**BINARY, "Accept": fleet_binary.FILTER_ACCEPT}


def minute_bucket():
    return int(time.time() * 1000) // BUCKET_MS[0]


def post(proxy, keys, bucket_ms=BUCKET_MS):
    return {"proxy_id": proxy, "bucket_ms": bucket_ms, "window_ms": WINDOW_MS, "keys": keys}


def key(tag, minute_pairs, limits=(1000, None, None)):
    return {"key": tag, "limits": list(limits), "counts": [[list(p) for p in minute_pairs], [], []]}


def entries_for(reply, tag):
    """The answer's entries for `tag`: other keys at their limits (other tests' keys on the same
    service) are pushed to every Envoy and may ride along."""
    return [entry for entry in reply["keys"] if entry["key"] == tag]


def send(api, body, headers):
    return api.request("POST", PATH, token="sync", data=body, headers=headers)


def test_a_binary_post_is_counted_like_json_and_answered_as_accept_asks(api):
    k, minute = uuid.uuid4().hex, minute_bucket()
    first = send(api, fleet_binary.encode_post(post("envoy-bin-a", [key(k, [(minute - 1, 2), (minute, 3)])])),
                 BINARY)
    assert first.status_code == 200, first.text
    # No Accept: JSON, as for every client that does not ask.
    assert first.headers["content-type"].startswith("application/json")
    assert first.headers["vary"].lower() == "accept"
    assert entries_for(first.json(), k) == []
    # The other Envoy, in JSON, sees what the binary post counted; asked for binary, it gets it.
    body = post("envoy-bin-b", [key(k, [(minute, 1)], limits=(1000, 50, None))])
    as_json = api.request("POST", PATH, token="sync", json=body)
    as_binary = api.request("POST", PATH, token="sync", json=body,
                            headers={"Accept": fleet_binary.FILTER_ACCEPT})
    assert as_binary.status_code == 200, as_binary.text
    assert as_binary.headers["content-type"] == fleet_binary.MEDIA_TYPE
    assert as_binary.headers["vary"].lower() == "accept"
    assert fleet_binary.decode_reply(as_binary.content) == as_json.json()
    answer = {entry["key"]: entry for entry in as_json.json()["keys"]}
    assert answer[k]["counts"] == [[[minute - 1, 2], [minute, 3]], [], []]
    # Binary both ways, as the filter syncs: envoy-bin-a hears of envoy-bin-b's one.
    again = send(api, fleet_binary.encode_post(post("envoy-bin-a", [key(k, [(minute, 3)])])),
                 BINARY_BOTH_WAYS)
    reply = fleet_binary.decode_reply(again.content)
    # The answer carries the key's latest limits: those of this very post.
    assert entries_for(reply, k) == [{"key": k, "limits": [1000, None, None],
                                      "counts": [[[minute, 1]], [], []]}]


def test_json_is_answered_when_json_is_preferred(api):
    body = fleet_binary.encode_post(post("envoy-bin-c", []))
    for accept in ["application/json", "*/*",
                   f"application/json, {fleet_binary.MEDIA_TYPE};q=0.5",
                   "application/vnd.keygate.snapshot+binary"]:
        response = send(api, body, {**BINARY, "Accept": accept})
        assert response.status_code == 200, (accept, response.text)
        assert response.headers["content-type"].startswith("application/json"), accept


def test_a_full_binary_sync_of_5000_keys_round_trips(api):
    minute = minute_bucket()
    keys = [key(uuid.uuid4().hex, [(minute - 2, 1), (minute, 2)]) for _ in range(5_000)]
    assert send(api, fleet_binary.encode_post(post("envoy-bin-big-a", keys)), BINARY).status_code == 200
    response = send(api, fleet_binary.encode_post(post("envoy-bin-big-b", keys)), BINARY_BOTH_WAYS)
    assert response.status_code == 200, response.text
    reply = fleet_binary.decode_reply(response.content)
    assert fleet_binary.count_reply_keys(response.content) == 5_000
    assert [entry["key"] for entry in reply["keys"]] == [entry["key"] for entry in keys]
    assert all(entry["counts"][0] == [[minute - 2, 1], [minute, 2]] for entry in reply["keys"])


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain",
                                          "application/vnd.keygate.snapshot+binary"])
def test_other_body_types_are_415_naming_both(api, content_type):
    response = send(api, fleet_binary.encode_post(post("envoy-bin-d", [])),
                    {"Content-Type": content_type})
    assert response.status_code == 415, response.text
    code, message = error_of(response)
    assert code == "UNSUPPORTED_MEDIA_TYPE"
    assert "application/json" in message and fleet_binary.MEDIA_TYPE in message, message


def test_damaged_binary_bodies_are_400_naming_what_was_read(api):
    minute = minute_bucket()
    good = fleet_binary.encode_post(post("envoy-bin-e", [key(uuid.uuid4().hex, [(minute, 4)])]))
    assert send(api, good, BINARY).status_code == 200
    damaged = {
        "cut in the key": good[:-3],
        "cut in the head": good[:9],
        "trailing byte": good + b"\x00",
        "JSON body": b'{"proxy_id":"e"}',
        "a reply": fleet_binary.REPLY + b"\x00",
        "version 2": b"KGFS\x02P",
        "keys over 5,000": fleet_binary.post_head("e", BUCKET_MS, WINDOW_MS, 5_001),
    }
    for what, body in damaged.items():
        response = send(api, body, BINARY)
        assert response.status_code == 400, (what, response.text)
        code, message = error_of(response)
        assert code == "VALIDATION_ERROR" and message.startswith("body: "), (what, message)
    assert "keys[0]" in error_of(send(api, good[:-3], BINARY))[1]


def test_a_binary_post_is_validated_as_its_json_is(api):
    response = send(api, fleet_binary.encode_post(
        post("envoy-bin-f", [], bucket_ms=[2_000, 0, 3_600_000])), BINARY)
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "VALIDATION_ERROR" and message.startswith("bucket_ms[1]"), message
    response = send(api, fleet_binary.encode_post(post("", [])), BINARY)
    assert error_of(response)[1].startswith("proxy_id"), response.text
