"""Damage bounds on fleet counts (docs/security.md, "Implausible reports"), on both backends: a
sync claiming more of a key in a window than one Envoy can admit (the key's own limit, whatever
the post declares) is not counted, so it never reaches the other Envoys; the rest of the post is
counted, the JSON answer names the refused key, `/metrics` counts it and an alert goes out."""

import hashlib
import json
import time

import requests

from keygate_testkit.api import current_position
from keygate_testkit.waiting import wait_until

BUCKET_MS = [2_000, 120_000, 3_600_000]
WINDOW_MS = [60_000, 3_600_000, 86_400_000]


def tag_of(secret):
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def metric(service, name):
    text = requests.get(service.url("/metrics"), timeout=10).text
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return int(float(line.split()[1]))


def index_holds_now(api, service):
    """Waits until the limits index has read every change made so far."""
    _, version = current_position(api)
    wait_until(lambda: metric(service, "keygate_control_fleet_bounds_version") >= version,
               timeout=10, what="the limits index to read the newest version")


def sync(api, proxy, keys):
    body = {"proxy_id": proxy, "bucket_ms": BUCKET_MS, "window_ms": WINDOW_MS, "keys": keys}
    response = api.request("POST", "/v1/ratelimits/sync", token="sync", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def minute_counts(key_tag, pairs, declared=(60, None, None)):
    return {"key": key_tag, "limits": list(declared),
            "counts": [[list(pair) for pair in pairs], [], []]}


def rest_of(answer, key_tag):
    return sum(count for entry in answer["keys"] if entry["key"] == key_tag
               for _, count in entry["counts"][0])


def test_a_forged_fleet_count_is_refused_and_never_reaches_other_envoys(api, service, team):
    victim = api.create(team=team, limits={"per_minute": 60, "per_day": 1000})
    other = api.create(team=team, limits={"per_minute": 1000})
    victim_tag, other_tag = tag_of(victim["key"]), tag_of(other["key"])
    index_holds_now(api, service)
    refused_before = metric(service, "keygate_control_fleet_implausible_counts_total")
    minute = int(time.time() * 1000) // BUCKET_MS[0]
    sync(api, "envoy-honest", [minute_counts(victim_tag, [(minute, 20)])])
    # Declaring no limit does not help: the key's own limit decides.
    forged = sync(api, "evil", [minute_counts(victim_tag, [(minute, 5000)], declared=(None,) * 3),
                                minute_counts(other_tag, [(minute, 300)], declared=(1000, None, None))])
    assert forged["refused"] == [{"key": victim_tag, "window": 0, "claimed": 5000, "bound": 60}]
    answer = sync(api, "envoy-b", [minute_counts(victim_tag, [(minute, 1)]),
                                   minute_counts(other_tag, [(minute, 1)], declared=(1000, None, None))])
    assert "refused" not in answer
    assert rest_of(answer, victim_tag) == 20, "only the honest Envoy's count"
    assert rest_of(answer, other_tag) == 300, "the rest of the forged post was counted"
    assert metric(service, "keygate_control_fleet_implausible_counts_total") == refused_before + 1

    def alert():
        rows = service.sql("SELECT body FROM alert_events WHERE type = 'proxy.implausible_report'")
        mine = [json.loads(body) for (body,) in rows]
        return [a for a in mine if a["data"]["key_id"] == victim["id"]]
    wait_until(alert, timeout=10, what="the implausible-report alert")
    (raised,) = alert()
    assert raised["data"]["proxy_id"] == "evil" and raised["data"]["window"] == "minute"
    assert (raised["data"]["claimed"], raised["data"]["bound"]) == (5000, 60)


def test_a_raised_limit_is_read_from_the_feed(api, service, team):
    key = api.create(team=team, limits={"per_minute": 10})
    key_tag = tag_of(key["key"])
    response = api.request("PATCH", f"/v1/keys/{key['id']}", json={"limits": {"per_minute": 500}})
    assert response.status_code == 200, response.text
    index_holds_now(api, service)
    minute = int(time.time() * 1000) // BUCKET_MS[0]
    # Just changed: counts the old limit allowed may still be in the window, and so may ones the
    # new one allows (a proxy with the new snapshot): neither is refused.
    answer = sync(api, "envoy-raised", [minute_counts(key_tag, [(minute, 400)], declared=(500, None, None))])
    assert "refused" not in answer
