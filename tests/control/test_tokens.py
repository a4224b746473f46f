"""Management tokens, roles, teams and the audit log, against a live service.

`test_access_table_roles_and_teams` walks `control/access.json` (the Rust table every admin
route is built from; a Rust test keeps the file in sync) × roles × teams; that the table covers
every admin operation of control/openapi.json is tests/repo/test_control_api_doc.py."""

import json
import os
import re
import subprocess
import uuid

import pytest

from keygate_testkit.api import Api, call, make_token
from keygate_testkit.paths import ADMIN_TOKEN, SYNC_TOKEN, control_binary
from keygate_testkit.paths import ROOT as REPO_ROOT

ACCESS = json.loads((REPO_ROOT / "control" / "access.json").read_text())
ROLES = ["viewer", "editor", "admin"]
RANK = {role: index for index, role in enumerate(ROLES)}
TEAMS = ["same", "other", "none"]


def expected_status(rule, role, team):
    if RANK[role] < RANK[rule["role"]]:
        return 403
    if team != "none" and rule["path"].startswith(("/v1/proxies", "/v1/enrollment-tokens")):
        return 403  # proxies are the operator's: no team token reaches them
    if team == "same" and rule["path"].startswith("/v1/teams") and rule["method"] != "GET":
        return 403
    if team != "other" or not rule["team_scoped"]:
        return rule["success"]
    if rule["path"] == "/v1/usage":
        return 403
    if rule["path"].startswith("/v1/teams") and rule["method"] != "GET":
        return 403  # a team's plan and quotas are the operator's (a token of no team)
    if "{id}" in rule["path"] or "{name}" in rule["path"] or rule["path"] == "/v1/keys/leaked":
        return 404  # another team's key (a leaked one too) is one the token cannot see
    if rule["method"] == "POST":
        return 400
    return rule["success"]


def prepare(api, rule, home):
    """The request for `rule` on a target of team `home`: (path, json body or None)."""
    path = rule["path"]
    if path == "/v1/keys/leaked":
        leaked = api.create(name="leaked", team=home)
        return path, {"key": leaked["key"], "url": "https://example.com/paste"}
    if path.startswith("/v1/keys"):
        if "{id}" in path:
            key = api.create(name="target", team=home)
            path = path.replace("{id}", key["id"])
        body = {"POST /v1/keys": {"name": "made", "team": home},
                "PATCH /v1/keys/{id}": {"name": "renamed"}}.get(f"{rule['method']} {rule['path']}")
        return path, body
    if path.startswith("/v1/tokens"):
        if "{id}" in path:
            target = make_token(api, "viewer", home)
            path = path.replace("{id}", target["id"])
        body = {"name": "made", "role": "viewer", "team": home} if rule["path"] == "/v1/tokens" \
            and rule["method"] == "POST" else None
        return path, body
    if path == "/v1/usage":
        return f"{path}?team={home}", None
    if path.startswith("/v1/plans"):
        name = f"plan-{uuid.uuid4().hex[:8]}"
        if "{name}" in path:
            assert api.request("POST", "/v1/plans", json={"name": name}).status_code == 201
            path = path.replace("{name}", name)
        body = {"POST /v1/plans": {"name": name, "per_minute": 5},
                "PATCH /v1/plans/{name}": {"per_minute": 6}}.get(f"{rule['method']} {rule['path']}")
        return path, body
    if path.startswith("/v1/teams"):
        if "{name}" in path:
            # 409 when a token of the team, made first, created it already.
            assert api.request("POST", "/v1/teams", json={"name": home}).status_code in (201, 409)
            path = path.replace("{name}", home)
        body = {"POST /v1/teams": {"name": f"{home}-new", "per_day": 5},
                "PATCH /v1/teams/{name}": {"per_day": 6}}.get(f"{rule['method']} {rule['path']}")
        return path, body
    if path.startswith("/v1/webhooks"):
        # Port 9 on loopback: nothing listens, so a test event fails at once and harms nothing.
        made = {"url": "http://127.0.0.1:9/hook", "events": ["key.leaked"], "team": home}
        if "{id}" in path:
            created = api.request("POST", "/v1/webhooks", json=made)
            assert created.status_code == 201, created.text
            path = path.replace("{id}", created.json()["id"])
        body = {"POST /v1/webhooks": made,
                "PATCH /v1/webhooks/{id}": {"description": "changed"}}.get(f"{rule['method']} {rule['path']}")
        return path, body
    if path.startswith("/v1/proxies"):
        if "{id}" in path:
            issued = api.request("POST", "/v1/proxies", json={"name": f"envoy-{uuid.uuid4().hex[:8]}"})
            assert issued.status_code == 201, issued.text
            path = path.replace("{id}", issued.json()["id"])
        body = {"name": f"envoy-{uuid.uuid4().hex[:8]}", "labels": {"zone": "a"}} \
            if rule["method"] == "POST" else None
        return path, body
    if path.startswith("/v1/enrollment-tokens"):
        if "{id}" in path:
            made = api.request("POST", "/v1/enrollment-tokens", json={"name": "fleet"})
            assert made.status_code == 201, made.text
            path = path.replace("{id}", made.json()["id"])
        body = {"name": "fleet"} if rule["method"] == "POST" else None
        return path, body
    return path, None


CASES = [(rule, role, team) for rule in ACCESS for role in ROLES for team in TEAMS]


@pytest.mark.parametrize("rule,role,team", CASES,
                         ids=[f"{r['method']} {r['path']}-{role}-{team}" for r, role, team in CASES])
def test_access_table_roles_and_teams(api, rule, role, team):
    home = f"home-{uuid.uuid4().hex[:8]}"
    token_team = {"same": home, "other": f"away-{uuid.uuid4().hex[:8]}", "none": None}[team]
    caller = make_token(api, role, token_team)
    path, body = prepare(api, rule, home)
    response = call(api, rule["method"], path, caller["token"], json=body)
    expected = expected_status(rule, role, team)
    assert response.status_code == expected, (rule, role, team, response.text)
    if expected == 403:
        assert response.json()["error"]["code"] == "FORBIDDEN"
    if team == "other" and rule["method"] == "GET" and "{id}" not in rule["path"] and expected == 200:
        listed = response.json()
        items = listed.get("keys", listed.get("tokens", listed.get("entries", listed.get("webhooks", []))))
        assert all(item.get("team") != home for item in items), listed
        assert all(team.get("name") != home for team in listed.get("teams", [])), listed


def test_a_token_is_shown_once_and_stored_as_a_digest(api, service):
    created = make_token(api, "editor", expires_at="2099-01-01T00:00:00Z")
    secret = created["token"]
    assert re.fullmatch(r"kgt_[0-9A-Za-z]{32,}", secret), secret
    assert created["last4"] == secret[-4:]
    listed = api.request("GET", "/v1/tokens").json()["tokens"]
    mine = [token for token in listed if token["id"] == created["id"]]
    assert len(mine) == 1 and "token" not in mine[0]
    assert mine[0]["role"] == "editor" and mine[0]["expires_at"] == "2099-01-01T00:00:00Z"
    assert secret not in service.stored_bytes().decode("latin-1")


def test_revoked_tokens_are_refused_at_once(api):
    created = make_token(api, "viewer")
    assert call(api, "GET", "/v1/keys", created["token"]).status_code == 200
    assert api.request("DELETE", f"/v1/tokens/{created['id']}").status_code == 204
    response = call(api, "GET", "/v1/keys", created["token"])
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHORIZED"
    assert api.request("DELETE", f"/v1/tokens/{created['id']}").status_code == 404


def test_rotation_keeps_the_old_token_for_the_grace_period_only(api):
    created = make_token(api, "viewer")
    rotated = api.request("POST", f"/v1/tokens/{created['id']}/rotate", json={"grace_seconds": 3600})
    assert rotated.status_code == 201, rotated.text
    successor = rotated.json()
    assert successor["rotated_from"] == created["id"] and successor["token"] != created["token"]
    assert call(api, "GET", "/v1/keys", created["token"]).status_code == 200
    assert call(api, "GET", "/v1/keys", successor["token"]).status_code == 200
    now = api.request("POST", f"/v1/tokens/{successor['id']}/rotate", json={"grace_seconds": 0})
    assert call(api, "GET", "/v1/keys", successor["token"]).status_code == 401
    assert call(api, "GET", "/v1/keys", now.json()["token"]).status_code == 200
    too_long = api.request("POST", f"/v1/tokens/{created['id']}/rotate", json={"grace_seconds": 10**9})
    assert too_long.status_code == 400


def test_expired_tokens_are_refused(api):
    created = make_token(api, "viewer")
    api.request("POST", f"/v1/tokens/{created['id']}/rotate", json={"grace_seconds": 0})
    assert call(api, "GET", "/v1/keys", created["token"]).status_code == 401
    past = api.request("POST", "/v1/tokens", json={"name": "x", "role": "viewer",
                                                   "expires_at": "2000-01-01T00:00:00Z"})
    assert past.status_code == 400


def test_last_use_is_recorded(api):
    created = make_token(api, "viewer")
    assert created["last_used_at"] is None
    call(api, "GET", "/v1/keys", created["token"])
    listed = {token["id"]: token for token in api.request("GET", "/v1/tokens").json()["tokens"]}
    assert listed[created["id"]]["last_used_at"] is not None


def test_management_and_sync_tokens_do_not_cross(api):
    admin = make_token(api, "admin")
    assert call(api, "GET", "/v1/snapshot", admin["token"]).status_code == 401
    assert call(api, "POST", "/v1/usage", admin["token"], json={}).status_code == 401
    assert call(api, "POST", "/v1/ratelimits/sync", admin["token"], json={}).status_code == 401
    assert call(api, "GET", "/v1/tokens", SYNC_TOKEN).status_code == 401
    assert call(api, "GET", "/v1/audit", SYNC_TOKEN).status_code == 401
    assert call(api, "GET", "/v1/keys", "kgt_" + "0" * 40).status_code == 401


def test_team_tokens_keep_to_their_team(api, team):
    editor = make_token(api, "editor", team)
    own = call(api, "POST", "/v1/keys", editor["token"], json={"name": "mine"})
    assert own.status_code == 201 and own.json()["team"] == team
    other = api.create(name="theirs", team="elsewhere")
    assert call(api, "GET", f"/v1/keys/{other['id']}", editor["token"]).status_code == 404
    assert call(api, "PATCH", f"/v1/keys/{own.json()['id']}", editor["token"],
                json={"team": "elsewhere"}).status_code == 400
    listed = call(api, "GET", "/v1/keys", editor["token"], params={"team": "elsewhere"}).json()
    assert listed["keys"] == []
    listed = call(api, "GET", "/v1/keys", editor["token"], params={"limit": 1000}).json()["keys"]
    assert {key["team"] for key in listed} == {team}
    admin = make_token(api, "admin", team)
    made = call(api, "POST", "/v1/tokens", admin["token"], json={"name": "t", "role": "viewer"})
    assert made.status_code == 201 and made.json()["team"] == team
    tokens = call(api, "GET", "/v1/tokens", admin["token"]).json()["tokens"]
    assert {token["team"] for token in tokens} == {team}


def test_audit_records_every_change_without_secrets(api, team):
    editor = make_token(api, "editor", team)
    key = call(api, "POST", "/v1/keys", editor["token"], json={"name": "audited"}).json()
    call(api, "PATCH", f"/v1/keys/{key['id']}", editor["token"], json={"name": "renamed"})
    rotated = call(api, "POST", f"/v1/keys/{key['id']}/rotate", editor["token"], json={"grace_seconds": 5}).json()
    call(api, "DELETE", f"/v1/keys/{rotated['id']}", editor["token"])
    entries = api.request("GET", "/v1/audit", params={"target": key["id"]}).json()["entries"]
    assert [entry["action"] for entry in entries] == ["key.create", "key.update", "key.rotate"]
    assert all(entry["token_id"] == editor["id"] and entry["token_name"] == editor["name"]
               for entry in entries)
    assert entries[1]["changes"] == {"name": {"from": "audited", "to": "renamed"}}
    assert entries[2]["changes"]["successor"] == rotated["id"]
    deleted = api.request("GET", "/v1/audit", params={"target": rotated["id"]}).json()["entries"]
    assert [entry["action"] for entry in deleted] == ["key.delete"]
    token = make_token(api, "viewer", team)
    api.request("POST", f"/v1/tokens/{token['id']}/rotate", json={})
    api.request("DELETE", f"/v1/tokens/{token['id']}")
    entries = api.request("GET", "/v1/audit", params={"target": token["id"]}).json()["entries"]
    assert [entry["action"] for entry in entries] == ["token.create", "token.rotate", "token.revoke"]
    assert entries[0]["token_id"] == "bootstrap"
    everything = json.dumps(api.request("GET", "/v1/audit", params={"limit": 1000}).json())
    for secret in (key["key"], rotated["key"], token["token"], editor["token"], ADMIN_TOKEN):
        assert secret not in everything


def test_team_admins_read_only_their_teams_audit(api, team):
    api.create(name="elsewhere", team=f"not-{team}")
    admin = make_token(api, "admin", team)
    call(api, "POST", "/v1/keys", admin["token"], json={"name": "ours"})
    entries = call(api, "GET", "/v1/audit", admin["token"], params={"limit": 1000}).json()["entries"]
    assert entries and {entry["team"] for entry in entries} == {team}


def test_audit_pages_and_filters_by_time(api):
    for _ in range(3):
        api.create(name="paged")
    first = api.request("GET", "/v1/audit", params={"limit": 2}).json()
    assert len(first["entries"]) == 2 and first["next_cursor"]
    second = api.request("GET", "/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second["entries"][0]["id"] > first["entries"][-1]["id"]
    future = api.request("GET", "/v1/audit", params={"from": "2999-01-01T00:00:00Z"}).json()
    assert future["entries"] == []
    assert api.request("GET", "/v1/audit", params={"from": "yesterday"}).status_code == 400
    assert api.request("GET", "/v1/audit", params={"limit": 0}).status_code == 400


def control_cli(service, *args, token=ADMIN_TOKEN):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env.update({"KEYGATE_URL": service.url(), "KEYGATE_ADMIN_TOKEN": token})
    return subprocess.run([str(control_binary()), *args], env=env, capture_output=True, text=True,
                          timeout=20)


def test_cli_creates_lists_rotates_and_revokes_tokens(service, team):
    created = control_cli(service, "tokens", "create", "--name", "cli token", "--role", "editor",
                          "--team", team)
    assert created.returncode == 0, created.stderr
    secrets = [line.removeprefix("Secret: ") for line in created.stdout.splitlines()
               if line.startswith("Secret: ")]
    assert len(secrets) == 1 and secrets[0].startswith("kgt_")
    mine = [token for token in json.loads(control_cli(service, "tokens", "list", "--json").stdout)["tokens"]
            if token["name"] == "cli token" and token["team"] == team]
    assert len(mine) == 1 and "token" not in mine[0]
    listed = control_cli(service, "tokens", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(mine[0]["id"]))
    assert f"kgt_…{secrets[0][-4:]}" in line and "editor" in line
    assert secrets[0] not in listed.stdout
    assert all(len(line) <= 80 for line in listed.stdout.splitlines())
    with_token = control_cli(service, "keys", "create", "--name", "by cli token", token=secrets[0])
    assert with_token.returncode == 0, with_token.stderr
    rotated = control_cli(service, "tokens", "rotate", mine[0]["id"], "--grace-seconds", "0", "--json")
    assert rotated.returncode == 0, rotated.stderr
    successor = json.loads(rotated.stdout)
    assert successor["rotated_from"] == mine[0]["id"] and successor["token"].startswith("kgt_")
    refused = control_cli(service, "keys", "list", token=secrets[0])
    assert refused.returncode != 0 and "UNAUTHORIZED" in refused.stderr
    revoked = control_cli(service, "tokens", "revoke", successor["id"])
    assert revoked.returncode == 0, revoked.stderr
    viewer = make_token(Api(service.url()), "viewer")
    forbidden = control_cli(service, "tokens", "list", token=viewer["token"])
    assert forbidden.returncode != 0 and "FORBIDDEN" in forbidden.stderr


def test_cli_reads_the_audit_log(service, team):
    api = Api(service.url())
    key = api.create(name="audited by cli", team=team)
    shown = control_cli(service, "audit", "--target", key["id"])
    assert shown.returncode == 0, shown.stderr
    assert "key.create" in shown.stdout and "bootstrap" in shown.stdout
    entries = json.loads(control_cli(service, "audit", "--target", key["id"], "--json").stdout)["entries"]
    assert [entry["action"] for entry in entries] == ["key.create"]
    assert entries[0]["changes"]["team"] == team
