"""Damage bounds on usage reports (docs/security.md, "Implausible usage reports"), on both
backends: the forged report of the shared-token attack (5,000 allowed in an hour for a key limited
to 60 a minute) is not counted and cannot lock the key out, while the rest of its batch is
counted; the answer names the refused entry and an alert goes out once per key and hour."""
import json

import requests

from keygate_testkit.api import accepted, report
from keygate_testkit.api import key_usage as usage


def test_the_forged_report_is_refused_and_the_rest_of_the_batch_counts(api, service, team):
    victim = api.create(team=team, limits={"per_minute": 60, "per_day": 1000})
    honest = api.create(team=team, limits={"per_minute": 60})
    unlimited = api.create(team=team, plan="enterprise")
    answer = accepted(api, [report(victim["id"], allowed=5000), report(honest["id"], allowed=3600),
                            report(unlimited["id"], allowed=90_000)], proxy_id="evil")
    assert answer["accepted"] == 2 and not answer["duplicate"]
    (refused,) = answer["refused"]
    assert refused["key_id"] == victim["id"]
    assert (refused["claimed"], refused["bound"]) == (5000, 3600)
    assert "rate limits" in refused["reason"]
    assert usage(api, victim["id"])["totals"]["allowed"] == 0
    assert usage(api, honest["id"])["totals"]["allowed"] == 3600
    # Not locked out: the quota mark never came.
    key = api.request("GET", f"/v1/keys/{victim['id']}").json()
    assert key.get("quota_exceeded_until") is None, key
    # One alert per key and hour, however many times (or proxy ids) it is tried.
    accepted(api, [report(victim["id"], allowed=4000)], proxy_id="evil-2")
    alerts = [json.loads(body) for (body,) in service.sql(
        "SELECT body FROM alert_events WHERE type = 'proxy.implausible_report'")]
    mine = [alert for alert in alerts if alert["data"]["key_id"] == victim["id"]]
    assert len(mine) == 1
    assert mine[0]["data"]["proxy_id"] == "evil" and mine[0]["data"]["claimed"] == 5000
    metrics = requests.get(service.url("/metrics"), timeout=10).text
    (line,) = [line for line in metrics.splitlines()
               if line.startswith("keygate_control_usage_implausible_entries_total ")]
    assert int(line.split()[1]) >= 2


def test_a_key_without_limits_is_bounded_by_the_plausible_rate(new_service):
    control = new_service({"KEYGATE_MAX_PROXY_RATE": "10"}).start()
    try:
        from keygate_testkit.api import Api
        api = Api(control.url())
        key = api.create(plan="enterprise")
        answer = accepted(api, [report(key["id"], allowed=36_001)])
        assert [entry["bound"] for entry in answer["refused"]] == [36_000]
        assert "--max-proxy-rate" in answer["refused"][0]["reason"]
        assert "refused" not in accepted(api, [report(key["id"], allowed=36_000)])
    finally:
        control.stop()


def test_denials_of_a_refused_entry_raise_no_refusal_alert(api, service, team):
    """What was not counted does not count towards `ratelimit.refusals` either (its threshold is
    100 refusals here)."""
    victim = api.create(team=team, limits={"per_minute": 60})
    answer = accepted(api, [report(victim["id"], allowed=5000, RATE_LIMIT_EXCEEDED=500)], proxy_id="evil-3")
    assert [entry["key_id"] for entry in answer["refused"]] == [victim["id"]]
    rows = service.sql("SELECT body FROM alert_events WHERE type = 'ratelimit.refusals'")
    assert [json.loads(body) for (body,) in rows
            if json.loads(body)["data"]["key_id"] == victim["id"]] == []
