"""Proxy identity on both backends (docs/security.md, "Proxy identity"): enrollment tokens that
may only enroll, a credential per proxy stored hashed, re-enrollment under a name keeping the
identity, revocation refusing the next call, reports recorded under the identity (not the
declared proxy_id) and discarded by an admin, the fleet list, the limits on enrollment, and
`--no-shared-sync-token`."""

import uuid

import pytest
import requests

from keygate_testkit.api import Api, call, report
from keygate_testkit.waiting import wait_until

FORGED = {"proxy_id": "evil", "reports": []}


def enrollment_token(api, name="mesh"):
    made = api.request("POST", "/v1/enrollment-tokens", json={"name": name})
    assert made.status_code == 201, made.text
    return made.json()


def enroll(api, token, name, **extra):
    return requests.post(f"{api.url}/v1/proxies/enroll", headers={"Authorization": f"Bearer {token}"},
                         json={"name": name, **extra}, timeout=10)


def enrolled(api, token, name, **extra):
    answer = enroll(api, token, name, **extra)
    assert answer.status_code == 200, answer.text
    return answer.json()


def post_usage(api, credential, reports, proxy_id="liar"):
    body = {"proxy_id": proxy_id, "batch_id": uuid.uuid4().hex, "reports": reports}
    return call(api, "POST", "/v1/usage", credential, json=body)


def proxy(api, proxy_id):
    answer = api.request("GET", f"/v1/proxies/{proxy_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_enrollment_gives_each_proxy_its_own_credential_shown_once(api, service):
    token = enrollment_token(api)
    assert token["token"].startswith("kge_") and token["last4"] == token["token"][-4:]
    names = [f"sidecar~10.0.0.{n}~web-{uuid.uuid4().hex[:6]}.default" for n in range(3)]
    proxies = [enrolled(api, token["token"], name, labels={"zone": "a"}, version="0.3.0") for name in names]
    assert len({p["proxy_id"] for p in proxies}) == 3
    assert all(p["credential"].startswith("kgp_") for p in proxies)
    stored = service.stored_bytes().decode("latin-1")
    assert token["token"] not in stored and all(p["credential"] not in stored for p in proxies)
    listed = {p["id"]: p for p in api.request("GET", "/v1/proxies").json()["proxies"]}
    mine = listed[proxies[0]["proxy_id"]]
    assert mine["name"] == names[0] and mine["labels"] == {"zone": "a"} and mine["version"] == "0.3.0"
    assert mine["credential"] == "enrollment" and mine["enrolled_with"] == token["id"]
    assert "credential_secret" not in mine and mine["credential_last4"] == proxies[0]["credential"][-4:]
    tokens = api.request("GET", "/v1/enrollment-tokens").json()["enrollment_tokens"]
    assert [t["enrolled"] for t in tokens if t["id"] == token["id"]] == [3]
    assert all("token" not in t for t in tokens)
    # Only enrollment: the enrollment token opens no other door.
    assert call(api, "GET", "/v1/snapshot", token["token"]).status_code == 401
    assert call(api, "GET", "/v1/keys", token["token"]).status_code == 401
    # A credential syncs but does not manage keys.
    assert call(api, "GET", "/v1/snapshot", proxies[0]["credential"]).status_code == 200
    assert call(api, "GET", "/v1/keys", proxies[0]["credential"]).status_code == 401


def test_enrolling_again_under_a_name_keeps_the_identity_and_replaces_the_credential(api, service):
    token = enrollment_token(api)["token"]
    name = f"envoy-{uuid.uuid4().hex[:8]}"
    first = enrolled(api, token, name)
    key = api.create(limits={"per_minute": 60})
    assert post_usage(api, first["credential"], [report(key["id"], allowed=5)]).status_code == 200
    again = enrolled(api, token, name, version="0.3.1")
    assert again["proxy_id"] == first["proxy_id"] and again["credential"] != first["credential"]
    assert call(api, "GET", "/v1/snapshot", first["credential"]).status_code == 401
    assert call(api, "GET", "/v1/snapshot", again["credential"]).status_code == 200
    reports = api.request("GET", f"/v1/proxies/{first['proxy_id']}/reports").json()
    assert reports["allowed"] == 5, "its history stays with the identity"
    assert proxy(api, first["proxy_id"])["version"] == "0.3.1"
    # A third time within a minute: two proxies may share the name (they would take the
    # credential from each other), which the operator is told.
    enrolled(api, token, name)
    wait_until(lambda: f"({name!r}) enrolled 3 times within a minute".replace("'", '"') in service.log_text(),
               timeout=5, what="the shared-name warning")
    metrics = requests.get(service.url("/metrics"), timeout=10).text
    assert any(line.startswith("keygate_control_proxy_name_churn_total ") and int(line.split()[1]) >= 1
               for line in metrics.splitlines())


def test_the_forged_report_is_refused_without_a_credential_with_a_revoked_one_and_when_implausible(api):
    victim = api.create(limits={"per_minute": 60, "per_day": 1000})
    forged = [report(victim["id"], allowed=5000)]
    assert post_usage(api, "not-a-credential", forged).status_code == 401
    assert post_usage(api, "kgp_" + "x" * 40, forged).status_code == 401
    issued = api.request("POST", "/v1/proxies", json={"name": f"edge-{uuid.uuid4().hex[:8]}"})
    assert issued.status_code == 201, issued.text
    credential, proxy_id = issued.json()["credential_secret"], issued.json()["id"]
    answer = post_usage(api, credential, forged)
    assert answer.status_code == 200 and [e["key_id"] for e in answer.json()["refused"]] == [victim["id"]]
    assert api.request("DELETE", f"/v1/proxies/{proxy_id}").status_code == 204
    assert post_usage(api, credential, [report(victim["id"], allowed=1)]).status_code == 401
    assert call(api, "POST", "/v1/ratelimits/sync", credential,
                json={"proxy_id": "p", "bucket_ms": [2000, 120000, 3600000],
                      "window_ms": [60000, 3600000, 86400000], "keys": []}).status_code == 401
    usage = api.request("GET", f"/v1/keys/{victim['id']}/usage").json()
    assert usage["totals"]["allowed"] == 0
    assert proxy(api, proxy_id)["state"] == "revoked"
    assert api.request("DELETE", f"/v1/proxies/{proxy_id}").status_code == 204


def test_reports_are_recorded_under_the_identity_and_can_be_discarded(api):
    token = enrollment_token(api)["token"]
    me = enrolled(api, token, f"envoy-{uuid.uuid4().hex[:8]}")
    key = api.create(limits={"per_minute": 60})
    counted = post_usage(api, me["credential"], [report(key["id"], allowed=40, RATE_LIMIT_EXCEEDED=2)],
                         proxy_id="someone-else")
    assert counted.status_code == 200 and counted.json()["accepted"] == 1
    assert api.request("GET", f"/v1/keys/{key['id']}/usage").json()["totals"]["allowed"] == 40
    listed = api.request("GET", f"/v1/proxies/{me['proxy_id']}/reports").json()
    assert listed["allowed"] == 40
    assert {(row["key_id"], row["code"], row["count"]) for row in listed["rows"]} == {
        (key["id"], "ALLOWED", 40), (key["id"], "RATE_LIMIT_EXCEEDED", 2)}
    discarded = api.request("DELETE", f"/v1/proxies/{me['proxy_id']}/reports")
    assert discarded.status_code == 200 and discarded.json()["allowed"] == 40
    totals = api.request("GET", f"/v1/keys/{key['id']}/usage").json()["totals"]
    assert totals["allowed"] == 0 and totals["total"] == 0
    assert api.request("GET", f"/v1/proxies/{me['proxy_id']}/reports").json()["rows"] == []
    audit = api.request("GET", "/v1/audit", params={"target": me["proxy_id"]}).json()["entries"]
    assert "proxy.discard_reports" in [entry["action"] for entry in audit]


def test_the_fleet_list_shows_what_each_proxy_read_and_posted(api, service):
    token = enrollment_token(api)["token"]
    me = enrolled(api, token, f"envoy-{uuid.uuid4().hex[:8]}")
    silent = enrolled(api, token, f"envoy-{uuid.uuid4().hex[:8]}")
    epoch_version = api.snapshot(limit=1).json()
    position = {"since": epoch_version["version"], "epoch": epoch_version["epoch"]}
    answered = requests.get(f"{api.url}/v1/snapshot", params=position,
                            headers={"Authorization": f"Bearer {me['credential']}"}, timeout=10)
    assert answered.status_code in (200, 304)
    key = api.create()
    assert post_usage(api, me["credential"], [report(key["id"], allowed=1)]).status_code == 200
    seen = wait_until(lambda: (p := proxy(api, me["proxy_id"]))["last_report"]["at"] and p,
                      timeout=10, what="the sighting flushed")
    assert seen["state"] == "live" and seen["snapshot_version"] == position["since"]
    assert seen["lag_versions"] >= 1, "a key was created after its read"
    assert seen["last_report"]["failing_since"] is None
    assert proxy(api, silent["proxy_id"])["state"] == "stale", "never seen"
    metrics = requests.get(service.url("/metrics"), timeout=10).text
    live = [line for line in metrics.splitlines() if line.startswith('keygate_control_proxies{state="live"}')]
    assert live and int(live[0].split()[1]) >= 1
    assert "keygate_control_proxy_snapshot_lag_seconds_max" in metrics
    assert api.request("GET", "/v1/proxies/prx_nothing").status_code == 404


def test_enrollment_is_refused_for_revoked_names_issued_names_and_revoked_tokens(api):
    made = enrollment_token(api)
    issued_name = f"edge-{uuid.uuid4().hex[:8]}"
    issued = api.request("POST", "/v1/proxies", json={"name": issued_name}).json()
    taken = enroll(api, made["token"], issued_name)
    assert taken.status_code == 409 and "issued" in taken.json()["error"]["message"]
    assert call(api, "GET", "/v1/snapshot", issued["credential_secret"]).status_code == 200
    name = f"envoy-{uuid.uuid4().hex[:8]}"
    me = enrolled(api, made["token"], name)
    assert api.request("DELETE", f"/v1/proxies/{me['proxy_id']}").status_code == 204
    again = enroll(api, made["token"], name)
    assert again.status_code == 403 and again.json()["error"]["code"] == "FORBIDDEN"
    bad = enroll(api, made["token"], "a name with spaces")
    assert bad.status_code == 400 and "name" in bad.json()["error"]["message"]
    assert api.request("DELETE", f"/v1/enrollment-tokens/{made['id']}").status_code == 204
    assert enroll(api, made["token"], f"envoy-{uuid.uuid4().hex[:8]}").status_code == 401
    assert api.request("DELETE", f"/v1/enrollment-tokens/{made['id']}").status_code == 404


def test_failed_enrollments_are_limited_per_address_and_a_valid_token_still_enrolls(fresh_service):
    service = fresh_service.start()
    api = Api(service.url())
    token = enrollment_token(api)["token"]
    statuses = [enroll(api, "kge_" + "w" * 40, f"envoy-{n}").status_code for n in range(30)]
    assert statuses == [401] * 30
    throttled = enroll(api, "kge_" + "v" * 40, "envoy-wrong-again")
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert throttled.json()["error"]["code"] == "RATE_LIMITED"
    # Failures from an address never keep a valid token out (a mesh's sidecar or a load
    # balancer is one address for many proxies).
    assert enroll(api, token, "envoy-right-token").status_code == 200


def test_enrollments_per_token_are_limited(new_service):
    service = new_service({"KEYGATE_ENROLLMENTS_PER_MINUTE": "3"}).start()
    try:
        api = Api(service.url())
        token = enrollment_token(api)["token"]
        statuses = [enroll(api, token, f"envoy-{n}").status_code for n in range(4)]
        assert statuses == [200, 200, 200, 429]
    finally:
        service.stop()


def test_the_shared_sync_token_warns_and_can_be_switched_off(service, new_service):
    assert "warning: proxies may sync with the shared KEYGATE_SYNC_TOKEN" in service.log_text()
    strict = new_service({"KEYGATE_NO_SHARED_SYNC_TOKEN": "true"}).start()
    try:
        api = Api(strict.url())
        assert api.snapshot().status_code == 401
        assert api.request("POST", "/v1/usage", token="sync", json=FORGED).status_code == 401
        me = enrolled(api, enrollment_token(api)["token"], "envoy-strict")
        assert call(api, "GET", "/v1/snapshot", me["credential"]).status_code == 200
        assert "the shared sync token is off" in strict.log_text()
    finally:
        strict.stop()


def test_the_cli_issues_lists_and_revokes(api, service):
    from keygate_testkit.control import run_cli
    from keygate_testkit.paths import ADMIN_TOKEN

    def cli(*args):
        result = run_cli(*args, url=service.url(), token=ADMIN_TOKEN)
        assert result.returncode == 0, result.stderr
        return result.stdout

    created = cli("enrollment-tokens", "create", "cli-mesh")
    assert "token: kge_" in created
    name = f"edge-{uuid.uuid4().hex[:8]}"
    issued = cli("proxies", "issue", name, "--label", "zone=eu")
    credential = issued.split("credential: ")[1].split()[0]
    assert call(api, "GET", "/v1/snapshot", credential).status_code == 200
    proxy_id = issued.split("proxy ")[1].split()[0]
    listing = cli("proxies", "list")
    assert proxy_id in listing and "STATE" in listing
    assert max(len(line) for line in listing.splitlines()) <= 80
    assert name in cli("--json", "proxies", "list")
    assert credential not in listing
    assert cli("--json", "proxies", "show", proxy_id).count(proxy_id) >= 1
    assert "Revoked proxy" in cli("proxies", "revoke", proxy_id)
    assert call(api, "GET", "/v1/snapshot", credential).status_code == 401
    assert "revoked" in cli("proxies", "show", proxy_id)
    assert "0 allowed requests" in cli("proxies", "reports", proxy_id)


def test_the_environment_enrollment_token_enrolls_and_must_look_like_one(new_service):
    service = new_service({"KEYGATE_ENROLLMENT_TOKEN": "kge_from-the-secret"}).start()
    try:
        api = Api(service.url())
        me = enrolled(api, "kge_from-the-secret", "envoy-from-env")
        assert proxy(api, me["proxy_id"])["enrolled_with"] == "bootstrap"
        assert "kge_from-the-secret" not in service.log_text()
    finally:
        service.stop()
    wrong = new_service({"KEYGATE_ENROLLMENT_TOKEN": "dev-sync-token"})
    with pytest.raises(RuntimeError, match="KEYGATE_ENROLLMENT_TOKEN must start with kge_"):
        wrong.start()


def test_the_shared_token_cannot_post_as_an_identity(api):
    key = api.create()
    forged = {"proxy_id": "prx_someone", "batch_id": uuid.uuid4().hex, "reports": [report(key["id"], allowed=1)]}
    refused = api.request("POST", "/v1/usage", token="sync", json=forged)
    assert refused.status_code == 400 and "prx_" in refused.json()["error"]["message"]
    sync = {"proxy_id": "prx_someone", "bucket_ms": [2000, 120000, 3600000],
            "window_ms": [60000, 3600000, 86400000], "keys": []}
    assert api.request("POST", "/v1/ratelimits/sync", token="sync", json=sync).status_code == 400
