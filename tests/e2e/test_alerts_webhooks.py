"""Teams, alerts and signed webhooks, end to end: quota alerts at 80 % and 100 % for a key and for a
team counted through a real Envoy, a team of two keys refused together once its shared quota is
used, lifecycle and expiry alerts, retries that keep the `webhook-id`, and the SSRF table. Every
delivery's signature is verified with the Standard Webhooks library from PyPI, not our code.

(A replica killed mid-delivery on PostgreSQL is test_webhooks_replicas.py.)"""

import datetime
import time

import pytest
from standardwebhooks.webhooks import Webhook as Verifier, WebhookVerificationError

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.waiting import wait_until
from keygate_testkit.webhooks import Receiver

LOCAL_WEBHOOKS = ["--webhook-allow-private", "--webhook-retry-base", "1", "--webhook-timeout", "3"]
REFUSALS_ALERTED_ABOVE = 5
QUOTA_EVENTS = ["quota.threshold", "quota.exceeded"]
LIFECYCLE_EVENTS = ["key.created", "key.revoked", "key.rotated", "key.deleted", "key.expiring"]


@pytest.fixture(scope="module")
def control():
    service = ControlService(extra_args=[*LOCAL_WEBHOOKS, "--refusal-alert-count", str(REFUSALS_ALERTED_ABOVE)]).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def proxy(upstream, control):
    config = plugin_config(control={"long_poll_wait": "5s"}, usage={"report_interval": "1s"})
    envoy = Envoy(upstream.port, control.port, config)
    yield envoy
    envoy.close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def subscribe(control, receiver, events, **fields):
    response = control.admin("POST", "/v1/webhooks", json={"url": receiver.url, "events": events, **fields})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["secret"].startswith("whsec_")
    return created


def verified_bodies(receiver, secret):
    """Every delivery so far, each checked with the Standard Webhooks verifier."""
    verifier = Verifier(secret)
    bodies = []
    for delivery in list(receiver.deliveries):
        bodies.append(verifier.verify(delivery["body"], delivery["headers"]))
    return bodies


def send(proxy, secret, count):
    for _ in range(count):
        assert proxy.get("/v1/models", secret).status_code == 200


def allowed_today(control, key_id):
    return control.admin("GET", f"/v1/keys/{key_id}/usage").json()["totals"]["allowed"]


def test_quota_alerts_for_a_key_through_envoy_are_signed_and_fire_once(proxy, control, receiver):
    hook = subscribe(control, receiver, QUOTA_EVENTS)
    key = control.create_key(name="metered", scopes=["list_models"], plan="enterprise", limits={"per_day": 10})
    proxy.wait_for_status("/v1/models", key["key"], 200)
    send(proxy, key["key"], 7)
    wait_until(lambda: allowed_today(control, key["id"]) == 8, timeout=20, what="8 requests counted")
    threshold = receiver.wait_for("quota.threshold", where=lambda event: event["data"].get("key_id") == key["id"])
    assert threshold[0]["data"] == {
        "subject": "key", "key_id": key["id"], "key_name": "metered", "team": None, "period": "day",
        "quota": 10, "used": 8, "threshold_percent": 80, "resets_at": threshold[0]["data"]["resets_at"]}
    send(proxy, key["key"], 2)
    receiver.wait_for("quota.exceeded", where=lambda event: event["data"].get("key_id") == key["id"])
    wait_until(lambda: allowed_today(control, key["id"]) == 10, timeout=20, what="10 requests counted")
    # Later reports raise nothing again: once per period.
    bodies = verified_bodies(receiver, hook["secret"])
    mine = [body for body in bodies if body["data"].get("key_id") == key["id"]]
    assert sorted(body["type"] for body in mine) == ["quota.exceeded", "quota.threshold"]
    for body in mine:
        assert set(body) == {"type", "timestamp", "data"}
        assert key["key"] not in str(body)
    # A tampered body fails the same verifier.
    delivery = receiver.deliveries[0]
    with pytest.raises(WebhookVerificationError):
        Verifier(hook["secret"]).verify(delivery["body"].replace(b"quota", b"QUOTA"), delivery["headers"])


def test_a_team_of_two_keys_shares_its_quota_and_is_alerted(proxy, control, receiver):
    created = control.admin("POST", "/v1/teams", json={"name": "acme", "per_day": 5})
    assert created.status_code == 201, created.text
    hook = subscribe(control, receiver, QUOTA_EVENTS, team="acme")
    first = control.create_key(name="a1", team="acme", scopes=["list_models"], plan="enterprise")
    second = control.create_key(name="a2", team="acme", scopes=["list_models"], plan="enterprise")
    proxy.wait_for_status("/v1/models", first["key"], 200)
    proxy.wait_for_status("/v1/models", second["key"], 200)
    send(proxy, first["key"], 1)
    send(proxy, second["key"], 1)  # 4 of 5: the team's 80 %
    receiver.wait_for("quota.threshold", where=lambda event: event["data"].get("subject") == "team")
    send(proxy, first["key"], 1)  # 5 of 5
    exceeded = receiver.wait_for("quota.exceeded", where=lambda event: event["data"].get("subject") == "team")
    assert exceeded[0]["data"]["team"] == "acme" and exceeded[0]["data"]["used"] == 5
    # Both keys are refused until the next UTC midnight, though neither has a quota of its own.
    for secret in (first["key"], second["key"]):
        refused = proxy.wait_for_status("/v1/models", secret, 429)
        assert refused.json()["error"]["code"] == "QUOTA_EXCEEDED"
        assert 0 < int(refused.headers["retry-after"]) <= 86_400
    team = control.admin("GET", "/v1/teams/acme").json()
    assert team["key_count"] == 2 and team["usage"]["today"] >= 5 and team["usage"]["per_day"] == 5
    assert {key["id"] for key in team["keys"]} == {first["id"], second["id"]}
    # Raising the team's quota lets both through again.
    assert control.admin("PATCH", "/v1/teams/acme", json={"per_day": 1000}).status_code == 200
    for secret in (first["key"], second["key"]):
        proxy.wait_for_status("/v1/models", secret, 200)
    # Only team-acme events reached the team's endpoint, every one signed.
    assert {body["data"]["team"] for body in verified_bodies(receiver, hook["secret"])} == {"acme"}


def test_a_flood_of_rate_limit_refusals_alerts_once(proxy, control, receiver):
    hook = subscribe(control, receiver, ["ratelimit.refusals"])
    started = time.time()
    key = control.create_key(name="hammered", scopes=["list_models"], plan="enterprise", limits={"per_minute": 2})
    proxy.wait_for_status("/v1/models", key["key"], 200)
    codes = [proxy.get("/v1/models", key["key"]) for _ in range(12)]
    refused = [answer for answer in codes if answer.status_code == 429]
    assert len(refused) > REFUSALS_ALERTED_ABOVE
    assert {answer.json()["error"]["code"] for answer in refused} == {"RATE_LIMIT_EXCEEDED"}
    alert = receiver.wait_for("ratelimit.refusals", where=lambda event: event["data"]["key_id"] == key["id"])[0]
    assert alert["data"]["refused"] > REFUSALS_ALERTED_ABOVE and alert["data"]["window_minutes"] == 5
    assert alert["data"]["threshold"] == REFUSALS_ALERTED_ABOVE
    # More refusals in the same window raise nothing more.
    for _ in range(5):
        assert proxy.get("/v1/models", key["key"]).status_code == 429
    wait_until(lambda: control.admin("GET", f"/v1/keys/{key['id']}/usage").json()["totals"]["denied"]
               .get("RATE_LIMIT_EXCEEDED", 0) >= len(refused) + 5, timeout=20, what="the later refusals counted")
    mine = [body for body in verified_bodies(receiver, hook["secret"]) if body["data"]["key_id"] == key["id"]]
    # At most one a 5-minute window: one, or two if the test ran across a window's edge.
    windows = {int(started) // 300, int(time.time()) // 300}
    assert 1 <= len(mine) <= len(windows)


def test_lifecycle_and_expiry_alerts(control, receiver):
    hook = subscribe(control, receiver, LIFECYCLE_EVENTS)
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    key = control.create_key(name="short-lived", expires_at=soon)
    receiver.wait_for("key.created", where=lambda event: event["data"]["key_id"] == key["id"])
    expiring = receiver.wait_for("key.expiring", where=lambda event: event["data"]["key_id"] == key["id"])
    assert expiring[0]["data"]["days_before"] == 7 and expiring[0]["data"]["expires_at"] == soon
    assert control.admin("PATCH", f"/v1/keys/{key['id']}", json={"active": False}).status_code == 200
    receiver.wait_for("key.revoked", where=lambda event: event["data"]["key_id"] == key["id"])
    assert control.admin("PATCH", f"/v1/keys/{key['id']}", json={"active": True}).status_code == 200
    rotated = control.admin("POST", f"/v1/keys/{key['id']}/rotate", json={"grace_seconds": 60})
    assert rotated.status_code == 201, rotated.text
    event = receiver.wait_for("key.rotated")[0]
    assert event["data"]["successor_id"] == rotated.json()["id"]
    assert control.admin("DELETE", f"/v1/keys/{rotated.json()['id']}").status_code == 204
    receiver.wait_for("key.deleted", where=lambda event: event["data"]["key_id"] == rotated.json()["id"])
    for body in verified_bodies(receiver, hook["secret"]):
        assert rotated.json()["key"] not in str(body) and key["key"] not in str(body)
    log = control.admin("GET", f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
    assert {entry["status"] for entry in log} == {"delivered"}


def test_a_failing_endpoint_is_retried_with_the_same_webhook_id_and_old_secrets_sign_during_rotation(control, receiver):
    hook = subscribe(control, receiver, ["key.created"])
    receiver.failures_left = 2
    queued = control.admin("POST", f"/v1/webhooks/{hook['id']}/test")
    assert queued.status_code == 202, queued.text
    event_id = queued.json()["event_id"]
    attempts = wait_until(lambda: (lambda seen: seen if len(seen) == 3 else None)(receiver.with_id(event_id)),
                          timeout=30, what="three attempts of the test event")
    assert {attempt["body"] for attempt in attempts} == {attempts[0]["body"]}
    for attempt in attempts:
        Verifier(hook["secret"]).verify(attempt["body"], attempt["headers"])
    log = wait_until(lambda: [entry for entry in control.admin("GET", f"/v1/webhooks/{hook['id']}/deliveries").json()
                              ["deliveries"] if entry["event_id"] == event_id and entry["status"] == "delivered"],
                     timeout=10, what="the delivery logged as delivered")
    assert log[0]["attempts"] == 3 and log[0]["last_status"] == 204 and log[0]["type"] == "webhook.test"
    # After a rotation both the new and the old secret verify deliveries, until the grace ends.
    rotated = control.admin("POST", f"/v1/webhooks/{hook['id']}/rotate-secret", json={"grace_seconds": 3600})
    assert rotated.status_code == 200 and rotated.json()["secret"] != hook["secret"]
    second = control.admin("POST", f"/v1/webhooks/{hook['id']}/test").json()["event_id"]
    delivered = wait_until(lambda: receiver.with_id(second), timeout=15, what="the test event after rotation")[0]
    for secret in (hook["secret"], rotated.json()["secret"]):
        Verifier(secret).verify(delivered["body"], delivered["headers"])
    listed = control.admin("GET", "/v1/webhooks").json()["webhooks"]
    assert all("secret" not in entry for entry in listed)


def test_webhook_urls_that_reach_inside_are_refused(receiver, tmp_path):
    strict = ControlService(extra_args=["--webhook-retry-base", "1"]).start()
    try:
        refused = [
            "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook", "https://[::ffff:127.0.0.1]/hook", "https://localhost/hook",
            "https://192.168.0.1/hook", "http://hooks.example.com/hook", "ftp://hooks.example.com/",
        ]
        for url in refused:
            answer = strict.admin("POST", "/v1/webhooks", json={"url": url, "events": ["key.created"]})
            assert answer.status_code == 400, (url, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "VALIDATION_ERROR" and error["message"].startswith("url:"), (url, error)
    finally:
        strict.stop()
    # Saved while private addresses were allowed, the endpoint is refused again at delivery time.
    database = tmp_path / "keygate.db"
    local = ControlService(database, tmp_path / "local.log", extra_args=LOCAL_WEBHOOKS).start()
    hook = subscribe(local, receiver, ["key.created"])
    local.stop()
    strict = ControlService(database, tmp_path / "strict.log", extra_args=["--webhook-retry-base", "60"]).start()
    try:
        event_id = strict.admin("POST", f"/v1/webhooks/{hook['id']}/test").json()["event_id"]
        log = wait_until(lambda: [entry for entry in strict.admin("GET", f"/v1/webhooks/{hook['id']}/deliveries")
                                  .json()["deliveries"] if entry["event_id"] == event_id and entry["attempts"] == 1],
                         timeout=15, what="the refused attempt logged")
        assert log[0]["status"] == "pending" and log[0]["last_status"] is None
        assert "http" in log[0]["last_error"] and "allow-private" in log[0]["last_error"]
        assert receiver.with_id(event_id) == []
    finally:
        strict.stop()
