"""Usage reporting (POST /v1/usage), the usage read (GET /v1/keys/{id}/usage) and the fleet-wide
quota marks they drive in the snapshot."""

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from keygate_testkit.api import HeldPoll, accepted, current_hour, error_of, iso, post_usage, report
from keygate_testkit.api import current_position, outcomes
from keygate_testkit.api import key_usage as usage
from keygate_testkit.control import keys_cli as cli

# A woken poll must answer well inside its wait; a poll that is not woken answers 304 at the end.
LONG_POLL_SECONDS = 30
PROMPT_SECONDS = 5


def next_midnight():
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return iso(today + timedelta(days=1))


def next_month_start():
    now = datetime.now(timezone.utc)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return iso(datetime(year, month, 1, tzinfo=timezone.utc))


def delta_keys(api, epoch, since):
    response = api.snapshot(epoch=epoch, since=since)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["full"] is False
    return page["version"], {key["id"]: key for key in page["keys"]}


def test_usage_takes_the_sync_token_only(api, team):
    key = api.create(team=team)
    reports = [report(key["id"], allowed=1)]
    assert post_usage(api, reports, token="admin").status_code == 401
    response = post_usage(api, reports, token=None)
    assert response.status_code == 401 and error_of(response)[0] == "UNAUTHORIZED"
    assert post_usage(api, reports).json() == {"accepted": 1, "unknown_keys": 0, "duplicate": False}
    assert api.request("GET", f"/v1/keys/{key['id']}/usage", token="sync").status_code == 401


def late_hour(hours):
    return iso(current_hour() + timedelta(hours=hours))


INVALID_REPORTS = [
    ({"hour": "yesterday"}, "reports[0].hour"),
    ({"hour": "2026-01-01T10:30:00Z"}, "reports[0].hour"),
    ({"hour": "2026-01-01T10:00:05Z"}, "reports[0].hour"),
    ({"hour": late_hour(3)}, "reports[0].hour"),
    ({"allowed": -1}, "reports[0].allowed"),
    ({"allowed": 1.5}, "reports[0].allowed"),
    ({"denied": {"RATE_LIMIT_EXCEEDED": -2}}, "reports[0].denied.RATE_LIMIT_EXCEEDED"),
    ({"denied": {"rate_limit_exceeded": 2}}, "reports[0].denied"),
    ({"denied": {"A" * 65: 1}}, "reports[0].denied"),
    ({"denied": {"ALLOWED": 1}}, "reports[0].denied.ALLOWED"),
]


@pytest.mark.parametrize("change,field", INVALID_REPORTS, ids=[case[1] for case in INVALID_REPORTS])
def test_bad_reports_name_the_field(api, change, field):
    body = dict(report("key_any", allowed=1), **change)
    response = post_usage(api, [body])
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "VALIDATION_ERROR" and message.startswith(field), message


def test_unknown_fields_are_ignored(api, team):
    """Wire messages are read tolerantly: a filter newer than this service may send fields it
    does not know, and its usage must still count (a refusal would drop it, and with it quota
    enforcement)."""
    key = api.create(team=team)
    body = {"proxy_id": "proxy-new", "batch_id": f"b-{uuid.uuid4().hex}", "region": "eu-west-1",
            "reports": [dict(report(key["id"], allowed=3), colour="red", latency_ms={"p99": 4})]}
    response = api.request("POST", "/v1/usage", token="sync", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "unknown_keys": 0, "duplicate": False}


@pytest.mark.parametrize("body,field", [
    ({"proxy_id": "", "batch_id": "b", "reports": []}, "proxy_id"),
    ({"proxy_id": "p" * 129, "batch_id": "b", "reports": []}, "proxy_id"),
    ({"proxy_id": "p", "batch_id": "", "reports": []}, "batch_id"),
    ({"proxy_id": "p", "reports": []}, "batch_id"),
    ({"proxy_id": "p", "batch_id": "b"}, "reports"),
], ids=["empty proxy_id", "long proxy_id", "empty batch_id", "no batch_id", "no reports"])
def test_bad_batches_name_the_field(api, body, field):
    response = api.request("POST", "/v1/usage", token="sync", json=body)
    assert response.status_code == 400, response.text
    assert error_of(response)[1].startswith(f"{field}:")


def test_ten_thousand_reports_fit_and_one_more_does_not(api, team):
    key = api.create(team=team)
    full = report(key["id"], allowed=1, RATE_LIMIT_EXCEEDED=1, CONCURRENCY_LIMIT_EXCEEDED=1,
                  QUOTA_EXCEEDED=1, OPERATION_NOT_ALLOWED=1, IP_NOT_WHITELISTED=1,
                  API_KEY_INACTIVE=1, API_KEY_EXPIRED=1)
    result = accepted(api, [full] * 10_000)
    assert result == {"accepted": 10_000, "unknown_keys": 0, "duplicate": False}
    assert usage(api, key["id"])["totals"]["total"] == 80_000
    response = post_usage(api, [full] * 10_001)
    assert response.status_code == 400
    assert error_of(response)[1].startswith("reports: must hold at most 10000")
    huge = api.request("POST", "/v1/usage", token="sync", data=b'{"x":"' + b"y" * (5 << 20) + b'"}',
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "4 MiB" in error_of(huge)[1]


def test_a_retried_batch_is_counted_once(api, team):
    key = api.create(team=team)
    reports = [report(key["id"], allowed=3, RATE_LIMIT_EXCEEDED=1), report("key_missing", allowed=1)]
    first = accepted(api, reports, batch_id="retry-batch-1")
    assert first == {"accepted": 1, "unknown_keys": 1, "duplicate": False}
    again = accepted(api, reports, batch_id="retry-batch-1")
    assert again == {"accepted": 1, "unknown_keys": 1, "duplicate": True}
    totals = usage(api, key["id"])["totals"]
    assert outcomes(totals) == {"allowed": 3, "denied": {"RATE_LIMIT_EXCEEDED": 1}, "total": 4}
    accepted(api, reports, batch_id="retry-batch-2")
    assert usage(api, key["id"])["totals"]["allowed"] == 6


def test_unknown_and_deleted_keys_are_dropped_and_counted(api, team):
    kept, deleted = api.create(team=team), api.create(team=team)
    assert api.request("DELETE", f"/v1/keys/{deleted['id']}").status_code == 204
    result = accepted(api, [report(kept["id"], allowed=1), report(deleted["id"], allowed=1),
                            report("key_neverissued0000", allowed=1)])
    assert result == {"accepted": 1, "unknown_keys": 2, "duplicate": False}


def test_usage_by_hour_and_by_day(api, team):
    key = api.create(team=team)
    accepted(api, [
        report(key["id"], "2025-03-10T22:00:00Z", allowed=5, RATE_LIMIT_EXCEEDED=1),
        report(key["id"], "2025-03-10T23:00:00Z", allowed=2),
        report(key["id"], "2025-03-11T01:00:00+01:00", allowed=4, QUOTA_EXCEEDED=3),
        report(key["id"], "2025-03-11T09:00:00Z", allowed=1, SOMETHING_NEW=2),
        report(key["id"], "2025-03-11T10:00:00Z"),
        report(key["id"], "2025-03-13T00:00:00Z", allowed=100),
    ])
    hourly = usage(api, key["id"], **{"from": "2025-03-10T22:30:00Z", "to": "2025-03-12T00:00:00+00:00"})
    assert hourly["key_id"] == key["id"] and hourly["granularity"] == "hour"
    assert (hourly["from"], hourly["to"]) == ("2025-03-10T22:30:00Z", "2025-03-12T00:00:00Z")
    assert [dict(outcomes(b), start=b["start"]) for b in hourly["buckets"]] == [
        {"start": "2025-03-10T22:00:00Z", "allowed": 5, "denied": {"RATE_LIMIT_EXCEEDED": 1}, "total": 6},
        {"start": "2025-03-10T23:00:00Z", "allowed": 2, "denied": {}, "total": 2},
        {"start": "2025-03-11T00:00:00Z", "allowed": 4, "denied": {"QUOTA_EXCEEDED": 3}, "total": 7},
        {"start": "2025-03-11T09:00:00Z", "allowed": 1, "denied": {"SOMETHING_NEW": 2}, "total": 3},
    ]
    totals = {"allowed": 12, "denied": {"QUOTA_EXCEEDED": 3, "RATE_LIMIT_EXCEEDED": 1, "SOMETHING_NEW": 2},
              "total": 18}
    assert outcomes(hourly["totals"]) == totals
    daily = usage(api, key["id"], granularity="day", **{"from": "2025-03-10T00:00:00Z",
                                                          "to": "2025-03-12T00:00:00Z"})
    assert daily["granularity"] == "day"
    assert [(b["start"], b["allowed"], b["total"]) for b in daily["buckets"]] == [
        ("2025-03-10T00:00:00Z", 7, 8), ("2025-03-11T00:00:00Z", 5, 10)]
    assert outcomes(daily["totals"]) == totals
    recent = usage(api, key["id"])
    assert recent["buckets"] == [] and outcomes(recent["totals"]) == {"allowed": 0, "denied": {}, "total": 0}


@pytest.mark.parametrize("params,field", [
    ({"from": "2025-03-12T00:00:00Z", "to": "2025-03-11T00:00:00Z"}, "from"),
    ({"from": "2025-03-11T00:00:00Z", "to": "2025-03-11T00:00:00Z"}, "from"),
    ({"from": "2024-01-01T00:00:00Z", "to": "2025-01-02T00:00:00Z"}, "to"),
    ({"from": "last tuesday"}, "from"),
    ({"to": "2025-02-30T00:00:00Z"}, "to"),
    ({"granularity": "week"}, "granularity"),
], ids=["from after to", "empty range", "over 366 days", "bad from", "bad to", "bad granularity"])
def test_usage_query_validation(api, team, params, field):
    key = api.create(team=team)
    response = api.request("GET", f"/v1/keys/{key['id']}/usage", params=params)
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "VALIDATION_ERROR" and message.startswith(f"{field}:"), message


def test_usage_of_unknown_and_deleted_keys(api, team):
    response = api.request("GET", "/v1/keys/key_neverissued0000/usage")
    assert response.status_code == 404 and error_of(response)[0] == "NOT_FOUND"
    key = api.create(team=team)
    accepted(api, [report(key["id"], allowed=2)])
    assert api.request("DELETE", f"/v1/keys/{key['id']}").status_code == 204
    assert usage(api, key["id"])["totals"]["allowed"] == 2


def test_reaching_the_daily_quota_marks_the_key_until_midnight(api, team):
    key = api.create(team=team, limits={"per_day": 5})
    epoch, before = current_position(api)
    accepted(api, [report(key["id"], allowed=4, RATE_LIMIT_EXCEEDED=9)])
    assert api.request("GET", f"/v1/keys/{key['id']}").json()["quota_exceeded_until"] is None
    assert current_position(api) == (epoch, before), "usage below the quota changes no key"
    accepted(api, [report(key["id"], allowed=1)])
    version, changed = delta_keys(api, epoch, before)
    assert version > before
    assert changed[key["id"]]["quota_exceeded_until"] == next_midnight()
    shown = api.request("GET", f"/v1/keys/{key['id']}").json()
    assert shown["quota_exceeded_until"] == next_midnight()
    accepted(api, [report(key["id"], allowed=1)])
    assert current_position(api) == (epoch, version), "an unchanged mark is not a new version"


def test_reaching_the_monthly_quota_marks_the_key_until_next_month(api, team):
    key = api.create(team=team, limits={"per_month": 3})
    assert key["limits"]["per_month"] == 3 and key["effective_limits"]["per_month"] == 3
    epoch, before = current_position(api)
    accepted(api, [report(key["id"], allowed=2)])
    assert current_position(api) == (epoch, before)
    accepted(api, [report(key["id"], allowed=1)])
    _, changed = delta_keys(api, epoch, before)
    assert changed[key["id"]]["quota_exceeded_until"] == next_month_start()
    assert "per_month" not in changed[key["id"]]["limits"]


def test_both_quotas_reached_take_the_later_end(api, team):
    key = api.create(team=team, limits={"per_day": 2, "per_month": 2})
    accepted(api, [report(key["id"], allowed=2)])
    shown = api.request("GET", f"/v1/keys/{key['id']}").json()
    assert shown["quota_exceeded_until"] == next_month_start()


def test_raising_the_limit_lifts_the_mark(api, team):
    key = api.create(team=team, limits={"per_day": 5})
    accepted(api, [report(key["id"], allowed=5)])
    epoch, marked = current_position(api)
    patched = api.request("PATCH", f"/v1/keys/{key['id']}", json={"limits": {"per_day": 100}}).json()
    assert patched["quota_exceeded_until"] is None
    version, changed = delta_keys(api, epoch, marked)
    assert version > marked and changed[key["id"]]["quota_exceeded_until"] is None
    lowered = api.request("PATCH", f"/v1/keys/{key['id']}", json={"limits": {"per_day": 5}}).json()
    assert lowered["quota_exceeded_until"] == next_midnight()


def test_a_new_mark_wakes_long_polls(api, team):
    key = api.create(team=team, limits={"per_day": 1})
    epoch, version = current_position(api)
    poll = HeldPoll(api, LONG_POLL_SECONDS, epoch=epoch, since=version)
    written_at = time.monotonic()
    accepted(api, [report(key["id"], allowed=1)])
    response = poll.answer(timeout=LONG_POLL_SECONDS + 10)
    assert response.status_code == 200, response.text
    assert poll.answered_at - written_at < PROMPT_SECONDS
    marked = {record["id"]: record for record in response.json()["keys"]}[key["id"]]
    assert marked["quota_exceeded_until"] == next_midnight()


def test_cli_usage_table_and_json(service, api, team):
    key = api.create(team=team, limits={"per_month": 1000})
    accepted(api, [report(key["id"], "2025-04-01T10:00:00Z", allowed=8, RATE_LIMIT_EXCEEDED=2),
                   report(key["id"], "2025-04-02T11:00:00Z", allowed=1)])
    window = ["--from", "2025-04-01T00:00:00Z", "--to", "2025-04-03T00:00:00Z"]
    table = cli(service, "usage", key["id"], *window, "--granularity", "day")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"Usage of {key['id']} by day")
    assert lines[1].split() == ["START", "ALLOWED", "TOTAL", "FAILED", "P95", "MS", "DENIED"]
    assert lines[2].split() == ["2025-04-01T00:00:00Z", "8", "10", "0", "-", "RATE_LIMIT_EXCEEDED=2"]
    assert lines[3].split() == ["2025-04-02T00:00:00Z", "1", "1", "0", "-", "-"]
    assert lines[4].split() == ["TOTAL", "9", "11", "0", "-", "RATE_LIMIT_EXCEEDED=2"]
    as_json = cli(service, "usage", key["id"], *window, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == usage(api, key["id"], **{"from": window[1], "to": window[3]})
    shown = cli(service, "show", key["id"])
    assert "per_month=1000" in shown.stdout and "quota_exceeded_until:" in shown.stdout
    updated = cli(service, "update", key["id"], "--per-month", "5", "--json")
    assert json.loads(updated.stdout)["limits"]["per_month"] == 5
    missing = cli(service, "usage", "key_neverissued0000")
    assert missing.returncode != 0 and "NOT_FOUND" in missing.stderr


@pytest.mark.parametrize("to", ["2040-01-01T00:00:00Z", "0601-12-21T13:23:05Z", "9999-12-31T00:00:00Z"])
def test_usage_reads_any_instant_past_2038_or_before_1901(api, to):
    """Instants outside the 32-bit range of Unix seconds are read like any other (PostgreSQL once
    took `from - 86400` for a 32-bit integer and answered 503)."""
    key = api.create(name="far")
    for path, params in ((f"/v1/keys/{key['id']}/usage", {"to": to}),
                         ("/v1/usage", {"to": to, "granularity": "day"})):
        response = api.request("GET", path, params=params)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["totals"]["allowed"] == 0
