"""Usage you can act on: a team's totals (GET /v1/usage), `last_used_at` on keys, the CLI's
`usage`, and the usage retention that rolls old hours into daily totals."""

import json
from datetime import timedelta

from keygate_testkit.api import Api, accepted, outcomes, call, current_hour, current_position, error_of, iso, make_token, report
from keygate_testkit.control import keys_cli as cli
from keygate_testkit.control import run_cli as control
from keygate_testkit.paths import ADMIN_TOKEN
from keygate_testkit.waiting import wait_until

RETENTION_SECONDS = 20


def team_usage(api, token=None, **params):
    if token is None:
        return api.request("GET", "/v1/usage", params=params)
    return call(api, "GET", "/v1/usage", token, params=params)


def seed_team(api, team):
    """Two keys of `team` and one of another team, with usage in two hours."""
    first = api.create(name="first", team=team)
    second = api.create(name="second", team=team)
    outsider = api.create(name="outsider", team=f"{team}-other")
    hour = current_hour()
    earlier = hour - timedelta(hours=2)
    accepted(api, [report(first["id"], iso(hour), allowed=3, RATE_LIMIT_EXCEEDED=1),
                   report(second["id"], iso(earlier), allowed=4, QUOTA_EXCEEDED=2),
                   report(outsider["id"], iso(hour), allowed=100)])
    return first, second, outsider


EXPECTED_TOTALS = {"allowed": 7, "denied": {"QUOTA_EXCEEDED": 2, "RATE_LIMIT_EXCEEDED": 1}, "total": 10}


def test_team_totals_sum_the_team_keys_by_outcome(api, team):
    seed_team(api, team)
    response = team_usage(api, team=team)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["team"] == team and body["granularity"] == "hour"
    assert outcomes(body["totals"]) == EXPECTED_TOTALS
    assert [bucket["total"] for bucket in body["buckets"]] == [6, 4]
    daily = team_usage(api, team=team, granularity="day").json()
    assert daily["granularity"] == "day" and outcomes(daily["totals"]) == EXPECTED_TOTALS
    assert outcomes(team_usage(api, team=f"{team}-nobody").json()["totals"]) == {"allowed": 0, "denied": {}, "total": 0}
    bad = team_usage(api, team=team, granularity="week")
    assert bad.status_code == 400 and error_of(bad)[0] == "VALIDATION_ERROR"


def test_every_key_without_a_team_is_for_unconfined_admins_only(api, team):
    seed_team(api, team)
    everything = team_usage(api)
    assert everything.status_code == 200, everything.text
    assert everything.json()["team"] is None
    assert everything.json()["totals"]["total"] >= 110
    admin = make_token(api, "admin")
    assert team_usage(api, admin["token"]).status_code == 200
    for role in ("viewer", "editor"):
        response = team_usage(api, make_token(api, role)["token"])
        assert response.status_code == 403, response.text
        assert error_of(response)[0] == "FORBIDDEN"
        assert team_usage(api, make_token(api, role)["token"], team=team).status_code == 200


def test_a_team_token_reads_only_its_own_team(api, team):
    seed_team(api, team)
    for role in ("viewer", "admin"):
        token = make_token(api, role, team)["token"]
        own = team_usage(api, token)
        assert own.status_code == 200, own.text
        assert own.json()["team"] == team and outcomes(own.json()["totals"]) == EXPECTED_TOTALS
        assert outcomes(team_usage(api, token, team=team).json()["totals"]) == EXPECTED_TOTALS
        away = team_usage(api, token, team=f"{team}-other")
        assert away.status_code == 403 and error_of(away)[0] == "FORBIDDEN", away.text


def test_last_used_at_follows_usage_reports_without_a_new_snapshot_version(api, service, team):
    key = api.create(name="used", team=team)
    assert key["last_used_at"] is None
    position = current_position(api)
    hour = current_hour()
    accepted(api, [report(key["id"], iso(hour - timedelta(hours=1)), allowed=0, RATE_LIMIT_EXCEEDED=3)])
    assert api.request("GET", f"/v1/keys/{key['id']}").json()["last_used_at"] is None, "denials are not use"
    accepted(api, [report(key["id"], iso(hour - timedelta(hours=3)), allowed=1),
                   report(key["id"], iso(hour), allowed=2)])
    shown = api.request("GET", f"/v1/keys/{key['id']}").json()
    assert shown["last_used_at"] == iso(hour)
    assert shown["updated_at"] == key["updated_at"]
    listed = api.request("GET", "/v1/keys", params={"team": team}).json()["keys"]
    assert [entry["last_used_at"] for entry in listed] == [iso(hour)]
    assert current_position(api) == position, "last_used_at is not part of the snapshot"
    snapshot = api.snapshot().json()
    assert all("last_used_at" not in record for record in snapshot["keys"])
    details = cli(service, "show", key["id"])
    assert details.returncode == 0, details.stderr
    assert f"last_used_at:          {iso(hour)}" in details.stdout
    table = cli(service, "list", "--team", team)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.endswith("USED") and row.split()[-1] in ("0h", "1h"), table.stdout


def test_cli_usage_prints_a_team_table_and_json(service, api, team):
    seed_team(api, team)
    result = control("usage", "--team", team, url=service.url(), token=ADMIN_TOKEN)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Usage of team {team} by hour"
    assert next(line for line in lines if line.startswith("TOTAL")).split()[:3] == ["TOTAL", "7", "10"]
    assert all(len(line) <= 80 for line in lines)
    as_json = control("usage", "--team", team, "--granularity", "day", "--json",
                      url=service.url(), token=ADMIN_TOKEN)
    assert as_json.returncode == 0, as_json.stderr
    assert outcomes(json.loads(as_json.stdout)["totals"]) == EXPECTED_TOTALS


def test_retention_rolls_old_hours_into_daily_totals_with_the_same_sums(new_service):
    service = new_service(extra_env={"KEYGATE_USAGE_RETENTION_DAYS": "1"})
    try:
        service.start()
        api = Api(service.url())
        key = api.create(name="old usage", team="retention")
        midnight = current_hour().replace(hour=0)
        old_day = midnight - timedelta(days=3)
        accepted(api, [report(key["id"], iso(old_day + timedelta(hours=1)), allowed=5, QUOTA_EXCEEDED=1),
                       report(key["id"], iso(old_day + timedelta(hours=7)), allowed=2),
                       report(key["id"], iso(midnight), allowed=4)])
        window = {"from": iso(old_day), "to": iso(midnight + timedelta(hours=1)), "granularity": "day"}
        before = api.request("GET", f"/v1/keys/{key['id']}/usage", params=window).json()
        team_before = api.request("GET", "/v1/usage", params={"team": "retention", **window}).json()
        assert outcomes(before["totals"]) == {"allowed": 11, "denied": {"QUOTA_EXCEEDED": 1}, "total": 12}
        service.stop()
        service.start()

        def rolled_up():
            old_hours = service.sql("SELECT COUNT(*) FROM usage_hourly "
                                    f"WHERE hour_start < {int(midnight.timestamp()) - 86400}")[0][0]
            days = service.sql("SELECT day_start, code, count FROM usage_daily ORDER BY code")
            return old_hours == 0 and days

        wait_until(rolled_up, RETENTION_SECONDS, what="old hours rolled into daily totals at start", retry_on=())
        days = service.sql("SELECT day_start, code, count FROM usage_daily ORDER BY code")
        assert days == [(int(old_day.timestamp()), "ALLOWED", 7), (int(old_day.timestamp()), "QUOTA_EXCEEDED", 1)]
        api = Api(service.url())
        assert api.request("GET", f"/v1/keys/{key['id']}/usage", params=window).json() == before
        assert api.request("GET", "/v1/usage", params={"team": "retention", **window}).json() == team_before
    finally:
        service.stop()
