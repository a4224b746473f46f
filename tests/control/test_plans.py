"""Plans as data: CRUD, validation naming fields, keys on unknown plans, deletion while in use,
the seeded plans, the audit log, and a plan change reaching its keys' served limits."""

import json
import uuid

import pytest

from keygate_testkit.api import Api, HeldPoll, error_of
from keygate_testkit.control import run_cli as control
from keygate_testkit.paths import ADMIN_TOKEN

SEEDED = [
    {"name": "free", "per_minute": 60, "per_hour": None, "per_day": 1000, "per_month": None,
     "concurrent": None},
    {"name": "pro", "per_minute": 300, "per_hour": None, "per_day": 10000, "per_month": None,
     "concurrent": None},
    {"name": "business", "per_minute": 1000, "per_hour": None, "per_day": 100000,
     "per_month": None, "concurrent": None},
    {"name": "enterprise", "per_minute": None, "per_hour": None, "per_day": None,
     "per_month": None, "concurrent": None},
]
LIMITS = ["per_minute", "per_hour", "per_day", "per_month", "concurrent"]


def plan_name():
    return f"plan-{uuid.uuid4().hex[:10]}"


def make_plan(api, **body):
    body.setdefault("name", plan_name())
    response = api.request("POST", "/v1/plans", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_new_database_is_seeded_with_the_published_plans(fresh_service):
    fresh_service.start()
    api = Api(fresh_service.url())
    plans = api.request("GET", "/v1/plans").json()["plans"]
    assert [{k: v for k, v in plan.items() if k != "description"} for plan in plans] == SEEDED
    assert all(plan["description"] for plan in plans)


def test_create_show_update_delete(api):
    created = make_plan(api, description="gold", per_minute=5, per_day=100)
    name = created["name"]
    assert created == {"name": name, "description": "gold", "per_minute": 5, "per_hour": None,
                       "per_day": 100, "per_month": None, "concurrent": None}
    assert api.request("GET", f"/v1/plans/{name}").json() == created
    assert created in api.request("GET", "/v1/plans").json()["plans"]
    patched = api.request("PATCH", f"/v1/plans/{name}",
                          json={"per_minute": None, "concurrent": 3, "description": "gold+"})
    assert patched.status_code == 200, patched.text
    assert patched.json() == dict(created, per_minute=None, concurrent=3, description="gold+")
    again = api.request("POST", "/v1/plans", json={"name": name})
    assert again.status_code == 409 and error_of(again)[0] == "CONFLICT"
    assert api.request("DELETE", f"/v1/plans/{name}").status_code == 204
    assert api.request("GET", f"/v1/plans/{name}").status_code == 404
    assert api.request("DELETE", f"/v1/plans/{name}").status_code == 404
    assert api.request("PATCH", f"/v1/plans/{name}", json={"per_minute": 1}).status_code == 404


@pytest.mark.parametrize("body,field", [
    ({"name": "Gold"}, "name"),
    ({"name": ""}, "name"),
    ({"name": "gold plan"}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"name": "ok", "description": "a\nb"}, "description"),
    ({"name": "ok", "description": "d" * 257}, "description"),
    ({"name": "ok", "colour": "red"}, "colour"),
    *[({"name": "ok", limit: 0}, limit) for limit in LIMITS],
    *[({"name": "ok", limit: -1}, limit) for limit in LIMITS],
    *[({"name": "ok", limit: "many"}, limit) for limit in LIMITS],
])
def test_create_validation_names_the_field(api, body, field):
    response = api.request("POST", "/v1/plans", json=body)
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "VALIDATION_ERROR" and field in message, message


@pytest.mark.parametrize("body,field", [
    ({"description": None}, "description"),
    ({"name": "renamed"}, "name"),
    *[({limit: 0}, limit) for limit in LIMITS],
])
def test_update_validation_names_the_field(api, body, field):
    name = make_plan(api)["name"]
    response = api.request("PATCH", f"/v1/plans/{name}", json=body)
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "VALIDATION_ERROR" and field in message, message


def test_keys_on_an_unknown_plan_are_refused(api, team):
    response = api.request("POST", "/v1/keys", json={"name": "k", "team": team, "plan": "no-such"})
    assert response.status_code == 400, response.text
    assert error_of(response)[1].startswith("plan:")
    key = api.create(team=team)
    response = api.request("PATCH", f"/v1/keys/{key['id']}", json={"plan": "no-such"})
    assert response.status_code == 400, response.text
    assert error_of(response)[1].startswith("plan:")
    assert api.request("GET", f"/v1/keys/{key['id']}").json()["plan"] == "free"


def test_a_plan_keys_are_on_cannot_be_deleted(api, team):
    name = make_plan(api, per_minute=7)["name"]
    keys = [api.create(team=team, plan=name) for _ in range(2)]
    assert keys[0]["effective_limits"]["per_minute"] == 7
    response = api.request("DELETE", f"/v1/plans/{name}")
    assert response.status_code == 409, response.text
    code, message = error_of(response)
    assert code == "CONFLICT" and "2 key" in message, message
    moved = api.request("PATCH", f"/v1/keys/{keys[0]['id']}", json={"plan": "pro"})
    assert moved.status_code == 200 and moved.json()["effective_limits"]["per_minute"] == 300
    assert api.request("DELETE", f"/v1/keys/{keys[1]['id']}").status_code == 204
    assert api.request("DELETE", f"/v1/plans/{name}").status_code == 204


def test_a_limit_change_moves_the_version_and_the_served_limits_of_its_keys(api, team):
    name = make_plan(api, per_minute=2)["name"]
    on_plan = api.create(team=team, plan=name)
    other = api.create(team=team, plan="pro")
    base = api.snapshot(limit=1).json()
    poll = HeldPoll(api, 20, since=base["version"], epoch=base["epoch"])
    patched = api.request("PATCH", f"/v1/plans/{name}", json={"per_minute": 100})
    assert patched.status_code == 200, patched.text
    delta = poll.answer(10).json()
    assert delta["version"] == base["version"] + 1
    served = {key["id"]: key for key in delta["keys"]}
    assert served[on_plan["id"]]["limits"]["per_minute"] == 100
    assert other["id"] not in served
    shown = api.request("GET", f"/v1/keys/{on_plan['id']}").json()
    assert shown["plan"] == name and shown["effective_limits"]["per_minute"] == 100
    unchanged = api.snapshot(since=delta["version"], epoch=delta["epoch"])
    api.request("PATCH", f"/v1/plans/{name}", json={"per_minute": 100})
    assert api.snapshot(since=delta["version"], epoch=delta["epoch"]).status_code == \
        unchanged.status_code == 304


def test_plan_changes_are_audited(api):
    name = make_plan(api, per_minute=5)["name"]
    api.request("PATCH", f"/v1/plans/{name}", json={"per_minute": 6, "per_day": 50})
    api.request("DELETE", f"/v1/plans/{name}")
    entries = api.request("GET", "/v1/audit", params={"target": name}).json()["entries"]
    assert [entry["action"] for entry in entries] == ["plan.create", "plan.update", "plan.delete"]
    assert entries[0]["changes"]["per_minute"] == 5
    assert entries[1]["changes"] == {"per_minute": {"from": 5, "to": 6},
                                     "per_day": {"from": None, "to": 50}}
    assert all(entry["team"] is None for entry in entries)


def plans_cli(service, *args):
    return control("plans", *args, url=service.url(), token=ADMIN_TOKEN)


def test_cli_manages_plans(service, api):
    name = plan_name()
    created = plans_cli(service, "create", name, "--description", "for the CLI", "--per-minute", "9")
    assert created.returncode == 0, created.stderr
    assert f"Created plan {name}." in created.stdout
    listed = plans_cli(service, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:6] == ["PLAN", "MINUTE", "HOUR", "DAY", "MONTH", "CONCURRENT"]
    assert all(len(line) <= 80 for line in lines), listed.stdout
    mine = next(line for line in lines if line.startswith(name + " "))
    assert mine.split()[1:6] == ["9", "-", "-", "-", "-"], mine
    updated = plans_cli(service, "update", name, "--per-day", "50", "--clear-limit", "per_minute", "--json")
    assert updated.returncode == 0, updated.stderr
    shown = json.loads(updated.stdout)
    assert shown["per_minute"] is None and shown["per_day"] == 50
    assert json.loads(plans_cli(service, "list", "--json").stdout)["plans"][:1][0]["name"] == "free"
    nothing = plans_cli(service, "update", name)
    assert nothing.returncode != 0 and "nothing to change" in nothing.stderr
    api.create(name="on it", plan=name)
    refused = plans_cli(service, "delete", name)
    assert refused.returncode != 0 and "1 key" in refused.stderr, refused.stderr
    gone = plans_cli(service, "delete", plan_name())
    assert gone.returncode != 0
