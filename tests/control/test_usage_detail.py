"""What a customer sees of its traffic, on both backends: upstream status classes, latency
percentiles and routes in the usage reads (merged across proxies and hours), a key's events
(newest first, filtered, team-confined), and reports of older filters still counted."""

import hashlib
import json
import time
from datetime import timedelta

from keygate_testkit.control import keys_cli as cli
from keygate_testkit.ip_sketch import ip_register
from keygate_testkit.api import key_usage as usage
from keygate_testkit.api import accepted, call, current_hour, error_of, iso, make_token, post_usage, report

# contract/src/latency.rs: 0-15 ms one bucket each; then 8 per doubling.
BUCKET_10_MS = 10
BUCKET_300_MS = 16 + (8 - 4) * 8 + 1  # 300 ms lies in [288, 320): middle 304
BUCKET_1_S = 16 + (9 - 4) * 8 + 7  # 1000 ms lies in [960, 1024): middle 992


def detailed(key_id, hour=None, **fields):
    body = report(key_id, hour, allowed=fields.pop("allowed", 0), **fields.pop("denied", {}))
    body.update(fields)
    return body


def event(outcome, status, at_ms, **fields):
    return {"at_ms": at_ms, "outcome": outcome, "status": status, "method": "GET", "path": "/v1/models",
            "client_ip": "192.0.2.10", **fields}


def events(api, key_id, token=None, **params):
    if token is None:
        return api.request("GET", f"/v1/keys/{key_id}/events", params=params)
    return call(api, "GET", f"/v1/keys/{key_id}/events", token, params=params)


def test_upstream_latency_and_routes_merge_across_proxies_and_hours(api, team):
    key = api.create(team=team)
    hour = current_hour()
    earlier = iso(hour - timedelta(hours=1))
    accepted(api, [detailed(key["id"], allowed=90, upstream={"2xx": 89, "5xx": 1},
                            latency_buckets={str(BUCKET_10_MS): 90},
                            routes={"chat": {"allowed": 90, "denied": {"RATE_LIMIT_EXCEEDED": 2}}},
                            denied={"RATE_LIMIT_EXCEEDED": 2})], proxy_id="proxy-a")
    accepted(api, [detailed(key["id"], earlier, allowed=10, upstream={"2xx": 9, "none": 1},
                            latency_buckets={str(BUCKET_300_MS): 8, str(BUCKET_1_S): 2},
                            routes={"images": {"allowed": 10}})], proxy_id="proxy-b")
    read = usage(api, key["id"], granularity="day", **{"from": iso(hour - timedelta(hours=2))})
    totals = read["totals"]
    assert (totals["allowed"], totals["total"]) == (100, 102)
    assert totals["upstream"] == {"2xx": 98, "3xx": 0, "4xx": 0, "5xx": 1, "none": 1}
    assert totals["latency_ms"]["p50"] == 10
    assert totals["latency_ms"]["p95"] == 304 and totals["latency_ms"]["p99"] == 992
    assert totals["routes"] == {
        "chat": {"allowed": 90, "denied": {"RATE_LIMIT_EXCEEDED": 2}, "total": 92},
        "images": {"allowed": 10, "denied": {}, "total": 10},
    }
    by_hour = usage(api, key["id"], **{"from": iso(hour - timedelta(hours=2))})["buckets"]
    assert [bucket["latency_ms"]["p99"] for bucket in by_hour] == [992, 10]
    team_read = api.request("GET", "/v1/usage", params={"team": team}).json()["totals"]
    assert team_read["upstream"] == totals["upstream"] and team_read["latency_ms"] == totals["latency_ms"]


def test_a_report_of_an_older_filter_still_counts_and_reads_without_latency(api, team):
    key = api.create(team=team)
    old_filter = {"key_id": key["id"], "hour": iso(current_hour()), "allowed": 5,
                  "denied": {"QUOTA_EXCEEDED": 1}}
    assert accepted(api, [old_filter])["accepted"] == 1
    totals = usage(api, key["id"])["totals"]
    assert (totals["allowed"], totals["denied"], totals["total"]) == (5, {"QUOTA_EXCEEDED": 1}, 6)
    assert "latency_ms" not in totals and totals["routes"] == {}
    assert sum(totals["upstream"].values()) == 0


def test_detail_a_service_cannot_use_is_left_out_and_the_counts_kept(api, team):
    key = api.create(team=team)
    now_ms = int(time.time() * 1000)
    body = detailed(key["id"], allowed=3, upstream={"2xx": 3, "7xx": 5}, latency_buckets={"5": 3, "5000": 1},
                    routes={"ok": {"allowed": 3}, "bad/name": {"allowed": 9}},
                    events=[event("5xx", 503, now_ms), event("whatever", 1, now_ms),
                            event("none", 0, now_ms, client_ip="not an address", path="/x\u0001y")])
    assert accepted(api, [body])["accepted"] == 1
    totals = usage(api, key["id"])["totals"]
    assert totals["upstream"]["2xx"] == 3 and "7xx" not in totals["upstream"]
    assert totals["latency_ms"] == {"p50": 5, "p95": 5, "p99": 5}
    assert list(totals["routes"]) == ["ok"]
    listed = events(api, key["id"]).json()["events"]
    assert [(e["outcome"], e["client_ip"], e["path"]) for e in listed] in (
        [("5xx", "192.0.2.10", "/v1/models"), ("none", None, "")],
        [("none", None, ""), ("5xx", "192.0.2.10", "/v1/models")],
    )


def test_events_newest_first_filtered_paged_and_confined_to_the_team(api, team):
    key = api.create(team=team)
    other = api.create(team=f"{team}-other")
    base = int(time.time() * 1000) - 60_000
    sent = [event("RATE_LIMIT_EXCEEDED", 429, base + 1000, request_id="r1"),
            event("5xx", 503, base + 3000, method="POST", path="/v1/jobs", request_id="r3"),
            event("none", 0, base + 2000, request_id="r2")]
    accepted(api, [detailed(key["id"], allowed=2, denied={"RATE_LIMIT_EXCEEDED": 1}, events=sent)],
             proxy_id="edge-7")
    answer = events(api, key["id"])
    assert answer.status_code == 200, answer.text
    listed = answer.json()
    assert listed["key_id"] == key["id"]
    assert [e["request_id"] for e in listed["events"]] == ["r3", "r2", "r1"]
    newest = listed["events"][0]
    assert newest == {"at": newest["at"], "outcome": "5xx", "status": 503, "method": "POST", "path": "/v1/jobs",
                      "client_ip": "192.0.2.10", "request_id": "r3", "proxy_id": "edge-7"}
    assert newest["at"].endswith("Z") and "." in newest["at"]
    assert [e["request_id"] for e in events(api, key["id"], outcome="failed").json()["events"]] == ["r3", "r2"]
    assert [e["request_id"] for e in events(api, key["id"], outcome="denied").json()["events"]] == ["r1"]
    assert [e["request_id"] for e in events(api, key["id"], limit=1).json()["events"]] == ["r3"]
    page = events(api, key["id"], before=newest["at"]).json()["events"]
    assert [e["request_id"] for e in page] == ["r2", "r1"]
    for params, field in [({"limit": "0"}, "limit"), ({"outcome": "4xx"}, "outcome"), ({"before": "soon"}, "before")]:
        refused = events(api, key["id"], **params)
        assert refused.status_code == 400 and error_of(refused)[0] == "VALIDATION_ERROR", refused.text
        assert error_of(refused)[1].startswith(field)
    own = make_token(api, "viewer", team)["token"]
    assert events(api, key["id"], own).status_code == 200
    assert events(api, other["id"], own).status_code == 404
    assert events(api, "key_never_issued").status_code == 404
    assert api.request("GET", f"/v1/keys/{key['id']}/events", token="sync").status_code == 401


def test_a_report_carries_at_most_twenty_events(api, team):
    count = 25
    key = api.create(team=team)
    now_ms = int(time.time() * 1000)
    many = [event("QUOTA_EXCEEDED", 429, now_ms + n) for n in range(count)]
    accepted(api, [detailed(key["id"], denied={"QUOTA_EXCEEDED": count}, events=many, events_dropped=3)])
    assert len(events(api, key["id"], limit=100).json()["events"]) == 20
    assert usage(api, key["id"])["totals"]["events_dropped"] == 3
    assert post_usage(api, [detailed(key["id"], events="not a list")]).status_code == 400


def test_cli_shows_failures_p95_routes_and_events(api, service, team):
    key = api.create(team=team)
    now_ms = int(time.time() * 1000)
    accepted(api, [detailed(key["id"], allowed=20, upstream={"2xx": 18, "5xx": 1, "none": 1},
                            latency_buckets={str(BUCKET_300_MS): 20}, routes={"chat": {"allowed": 20}},
                            events=[event("5xx", 503, now_ms, request_id="cli-1")])])
    shown = cli(service, "usage", key["id"])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[1].split() == ["START", "ALLOWED", "TOTAL", "FAILED", "P95", "MS", "DENIED"]
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert total.split()[:5] == ["TOTAL", "20", "20", "2", "304"], shown.stdout
    assert "By route:" in lines and any(line.split()[:3] == ["chat", "20", "20"] for line in lines)
    assert all(len(line) <= 80 for line in lines)
    listed = cli(service, "events", key["id"], "--outcome", "failed")
    assert listed.returncode == 0, listed.stderr
    assert "5xx" in listed.stdout and "cli-1" in listed.stdout and "/v1/models" in listed.stdout
    assert all(len(line) <= 80 for line in listed.stdout.splitlines())
    as_json = cli(service, "--json", "events", key["id"], "--limit", "1")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["events"][0]["request_id"] == "cli-1"
    refused = cli(service, "events", key["id"], "--outcome", "4xx")
    assert refused.returncode != 0 and "outcome" in refused.stderr


def test_headroom_reads_the_fleet_counts_and_the_quota_use(api, team):
    key = api.create(team=team, plan="free", limits={"per_minute": 60, "per_hour": 500})
    key_tag = hashlib.sha256(key["key"].encode()).hexdigest()[:32]
    now_ms = int(time.time() * 1000)
    minute, hour = now_ms // 2_000, now_ms // 120_000
    for proxy, count in (("edge-a", 5), ("edge-b", 7)):
        body = {"proxy_id": proxy, "bucket_ms": [2_000, 120_000, 3_600_000],
                "window_ms": [60_000, 3_600_000, 86_400_000],
                "keys": [{"key": key_tag, "limits": [60, 500, None],
                          "counts": [[[minute, count]], [[hour, count]], []]}]}
        assert api.request("POST", "/v1/ratelimits/sync", token="sync", json=body).status_code == 200
    accepted(api, [report(key["id"], allowed=230)])
    answer = api.request("GET", f"/v1/keys/{key['id']}/limits")
    assert answer.status_code == 200, answer.text
    read = answer.json()
    by_name = {entry["name"]: entry for entry in read["limits"]}
    assert list(by_name) == ["per_minute", "per_hour", "per_day", "quota_day"], read
    per_minute = by_name["per_minute"]
    assert (per_minute["limit"], per_minute["used"], per_minute["remaining"]) == (60, 12, 48)
    assert per_minute["source"] == "fleet" and per_minute["resets_at"] is not None
    assert by_name["per_hour"]["used"] == 12
    quota = by_name["quota_day"]
    assert (quota["used"], quota["remaining"], quota["source"]) == (230, 770, "usage")
    assert quota["resets_at"].endswith("T00:00:00Z")
    assert read["concurrent"] is None and read["quota_exceeded_until"] is None
    fresh = api.create(team=team, plan="free")
    untouched = {e["name"]: e for e in api.request("GET", f"/v1/keys/{fresh['id']}/limits").json()["limits"]}
    assert untouched["per_minute"]["used"] == 0 and untouched["per_minute"]["resets_at"] is None
    assert api.request("GET", "/v1/keys/key_never_issued/limits").status_code == 404


def test_client_addresses_are_estimated_listed_and_a_burst_flagged(api, team):
    key = api.create(team=team)
    hour = current_hour()

    def sketch(count, offset):
        # contract/src/ip_sketch.rs, as the filter computes it.
        registers = {}
        for n in range(count):
            register, value = ip_register(offset + n)
            registers[str(register)] = max(registers.get(str(register), 0), value)
        return registers

    for back in range(4, 0, -1):
        accepted(api, [detailed(key["id"], iso(hour - timedelta(hours=back)), allowed=10,
                                ip_sketch=sketch(10, back * 1000), top_ips={f"10.0.{back}.1": 4})])
    accepted(api, [detailed(key["id"], allowed=500, ip_sketch=sketch(300, 50_000),
                            top_ips={"203.0.113.9": 90, "::ffff:203.0.113.10": 40, "not-an-ip": 7})],
             proxy_id="proxy-a")
    accepted(api, [detailed(key["id"], allowed=100, ip_sketch=sketch(300, 50_000),
                            top_ips={"203.0.113.9": 10})], proxy_id="proxy-b")
    read = usage(api, key["id"], **{"from": iso(hour - timedelta(hours=5))})
    per_hour = [bucket["client_ips"] for bucket in read["buckets"]]
    # Ten addresses: linear counting over 256 registers is off by a collision or two.
    assert all(abs(ips["distinct"] - 10) <= 2 and not ips["unusual"] for ips in per_hour[:4]), per_hour
    burst = per_hour[4]
    assert burst["unusual"] and abs(burst["distinct"] - 300) <= 39, burst
    assert burst["top"][:2] == [{"ip": "203.0.113.9", "requests": 100}, {"ip": "203.0.113.10", "requests": 40}]
    assert read["totals"]["client_ips"]["unusual"] is True
    assert abs(read["totals"]["client_ips"]["distinct"] - 340) <= 45
