"""The admin API under /v1/keys: create, list, show, update, revoke, rotate, delete."""

import hashlib
import re
from datetime import datetime, timedelta, timezone

from keygate_testkit.api import error_of
from keygate_testkit.key_format import is_checksummed_key

KEY_FIELDS = {
    "id", "name", "environment", "team", "prefix", "last4", "scopes", "allowed_ips", "expires_at",
    "active", "plan", "limits", "effective_limits", "created_at", "updated_at", "rotated_from",
    "quota_exceeded_until", "last_used_at", "leak",
}


def future(seconds=86400):
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_create_returns_the_secret_once_with_defaults(api, team):
    created = api.create(name="ci", team=team)
    assert set(created) == KEY_FIELDS | {"key"}
    assert re.fullmatch(r"pk_live_[0-9A-Za-z]{46}", created["key"])
    assert is_checksummed_key(created["key"])
    assert re.fullmatch(r"key_[0-9A-Za-z]{16}", created["id"])
    assert created["prefix"] == "pk_live_" and created["last4"] == created["key"][-4:]
    assert created["environment"] == "live" and created["plan"] == "free"
    assert created["scopes"] == [] and created["allowed_ips"] == [] and created["expires_at"] is None
    assert created["active"] is True and created["rotated_from"] is None
    assert created["limits"] == {"per_minute": None, "per_hour": None, "per_day": None, "concurrent": None,
                                 "per_month": None}
    assert created["effective_limits"] == {"per_minute": 60, "per_hour": None, "per_day": 1000, "concurrent": None,
                                           "per_month": None}
    assert created["quota_exceeded_until"] is None
    shown = api.request("GET", f"/v1/keys/{created['id']}").json()
    assert set(shown) == KEY_FIELDS
    assert created["key"] not in str(shown)
    assert hashlib.sha256(created["key"].encode()).hexdigest() not in str(shown)


def test_create_with_every_field(api, team):
    expires = future()
    created = api.create(
        name="full", environment="test", team=team, scopes=["submit_job", "list_models"],
        allowed_ips=["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"], expires_at=expires,
        plan="pro", limits={"per_minute": 10, "concurrent": 3},
    )
    assert created["key"].startswith("pk_test_") and created["prefix"] == "pk_test_"
    assert created["expires_at"] == expires
    assert created["effective_limits"] == {"per_minute": 10, "per_hour": None, "per_day": 10000, "concurrent": 3,
                                           "per_month": None}
    assert created["limits"]["per_minute"] == 10 and created["limits"]["per_day"] is None


def test_plans_resolve_to_their_limits(api, team):
    expected = {
        "free": (60, 1000), "pro": (300, 10000), "business": (1000, 100000), "enterprise": (None, None),
    }
    for plan, (per_minute, per_day) in expected.items():
        limits = api.create(team=team, plan=plan)["effective_limits"]
        assert (limits["per_minute"], limits["per_day"]) == (per_minute, per_day), plan
        assert limits["per_hour"] is None and limits["concurrent"] is None


def test_list_filters_and_pages(api, team):
    ids = [api.create(name=f"k{i}", team=team, environment="test" if i % 2 else "live")["id"] for i in range(5)]
    api.request("PATCH", f"/v1/keys/{ids[0]}", json={"active": False})
    listed = api.request("GET", "/v1/keys", params={"team": team}).json()
    assert [key["id"] for key in listed["keys"]] == ids and listed["next_cursor"] is None
    assert all("key" not in key for key in listed["keys"])
    test_keys = api.request("GET", "/v1/keys", params={"team": team, "environment": "test"}).json()["keys"]
    assert [key["id"] for key in test_keys] == [ids[1], ids[3]]
    inactive = api.request("GET", "/v1/keys", params={"team": team, "active": "false"}).json()["keys"]
    assert [key["id"] for key in inactive] == [ids[0]]
    active = api.request("GET", "/v1/keys", params={"team": team, "active": "true"}).json()["keys"]
    assert [key["id"] for key in active] == ids[1:]
    seen, cursor = [], None
    for _ in range(10):
        params = {"team": team, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.request("GET", "/v1/keys", params=params).json()
        assert len(page["keys"]) <= 2
        seen += [key["id"] for key in page["keys"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


def test_list_rejects_bad_parameters(api):
    for params, field in [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"cursor": "zzz"}, "cursor"),
                          ({"environment": "prod"}, "environment"), ({"active": "maybe"}, "active"),
                          ({"status": "revoked"}, "status"),
                          ({"limit": "ten"}, "limit")]:
        response = api.request("GET", "/v1/keys", params=params)
        assert response.status_code == 400, params
        code, message = error_of(response)
        assert code == "VALIDATION_ERROR" and field in message, message


def test_patch_changes_only_given_fields(api, team):
    key = api.create(team=team, scopes=["submit_job"], expires_at=future(), limits={"per_day": 5})
    response = api.request("PATCH", f"/v1/keys/{key['id']}", json={
        "name": "renamed", "allowed_ips": ["10.1.0.0/16"], "plan": "business", "limits": {"per_minute": 7},
    })
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["name"] == "renamed" and patched["allowed_ips"] == ["10.1.0.0/16"]
    assert patched["scopes"] == ["submit_job"] and patched["expires_at"] == key["expires_at"]
    assert patched["limits"]["per_minute"] == 7 and patched["limits"]["per_day"] == 5
    assert patched["effective_limits"]["per_day"] == 5
    assert "key" not in patched
    cleared = api.request("PATCH", f"/v1/keys/{key['id']}", json={"expires_at": None, "scopes": []}).json()
    assert cleared["expires_at"] is None and cleared["scopes"] == []


def test_patch_limits_merge_and_null_clears_one_override(api, team):
    key = api.create(team=team, plan="pro", limits={"per_minute": 7, "per_day": 50, "per_month": 900})
    path = f"/v1/keys/{key['id']}"
    response = api.request("PATCH", path, json={"limits": {"per_minute": None}})
    assert response.status_code == 200, response.text
    cleared = response.json()
    assert cleared["limits"] == {"per_minute": None, "per_hour": None, "per_day": 50, "concurrent": None,
                                 "per_month": 900}
    assert cleared["effective_limits"]["per_minute"] == 300  # the plan's value again
    both = api.request("PATCH", path, json={"limits": {"per_day": None, "concurrent": 2}}).json()
    assert both["limits"] == {"per_minute": None, "per_hour": None, "per_day": None, "concurrent": 2,
                              "per_month": 900}
    unchanged = api.request("PATCH", path, json={"limits": {}}).json()
    assert unchanged["limits"] == both["limits"] and unchanged["updated_at"] == both["updated_at"]
    removed = api.request("PATCH", path, json={"limits": None}).json()
    assert removed["limits"] == {field: None for field in key["limits"]}
    assert removed["effective_limits"] == {"per_minute": 300, "per_hour": None, "per_day": 10000,
                                           "concurrent": None, "per_month": None}


def test_patch_null_clears_the_expiry(api, team):
    key = api.create(team=team, expires_at=future())
    cleared = api.request("PATCH", f"/v1/keys/{key['id']}", json={"expires_at": None})
    assert cleared.status_code == 200 and cleared.json()["expires_at"] is None


def test_patch_null_for_a_field_that_cannot_be_empty_is_400_naming_it(api, team):
    key = api.create(team=team, scopes=["submit_job"], allowed_ips=["10.0.0.0/8"], plan="pro")
    path = f"/v1/keys/{key['id']}"
    for field in ["name", "team", "scopes", "allowed_ips", "plan", "active"]:
        response = api.request("PATCH", path, json={field: None})
        assert response.status_code == 400, (field, response.text)
        code, message = error_of(response)
        assert code == "VALIDATION_ERROR" and message.startswith(f"{field}: must not be null"), message
    # Nothing was half-applied alongside a refused null.
    response = api.request("PATCH", path, json={"team": "elsewhere", "name": None})
    assert response.status_code == 400 and error_of(response)[1].startswith("name:")
    assert api.request("GET", path).json() == {k: v for k, v in key.items() if k != "key"}


def test_list_filters_by_status(api, team):
    active = api.create(team=team)
    revoked = api.create(team=team)
    api.request("PATCH", f"/v1/keys/{revoked['id']}", json={"active": False})
    expired = api.create(team=team)
    successor = api.request("POST", f"/v1/keys/{expired['id']}/rotate").json()  # no grace: expires now
    revoked_and_expired = api.create(team=team)
    second_successor = api.request("POST", f"/v1/keys/{revoked_and_expired['id']}/rotate").json()
    api.request("PATCH", f"/v1/keys/{revoked_and_expired['id']}", json={"active": False})
    not_yet = api.create(team=team, expires_at=future(3600))

    def listed(**params):
        response = api.request("GET", "/v1/keys", params={"team": team, **params})
        assert response.status_code == 200, response.text
        return [key["id"] for key in response.json()["keys"]]

    assert listed(status="active") == [active["id"], successor["id"], second_successor["id"], not_yet["id"]]
    assert listed(status="inactive") == [revoked["id"], revoked_and_expired["id"]]
    assert listed(status="expired") == [expired["id"]]
    assert listed(status="active", environment="test") == []
    assert listed(status="expired", limit=1) == [expired["id"]]


def test_revoke_is_patch_active_false(api, team):
    key = api.create(team=team)
    revoked = api.request("PATCH", f"/v1/keys/{key['id']}", json={"active": False}).json()
    assert revoked["active"] is False
    assert api.request("GET", f"/v1/keys/{key['id']}").json()["active"] is False


def test_delete_then_everything_is_404_or_409(api, team):
    key = api.create(team=team)
    assert api.request("DELETE", f"/v1/keys/{key['id']}").status_code == 204
    assert api.request("GET", f"/v1/keys/{key['id']}").status_code == 404
    assert api.request("DELETE", f"/v1/keys/{key['id']}").status_code == 404
    assert error_of(api.request("PATCH", f"/v1/keys/{key['id']}", json={"name": "x"}))[0] == "CONFLICT"
    assert error_of(api.request("POST", f"/v1/keys/{key['id']}/rotate", json={}))[0] == "CONFLICT"
    assert api.request("GET", "/v1/keys", params={"team": team}).json()["keys"] == []


def test_unknown_key_is_404(api):
    for method in ["GET", "PATCH", "DELETE"]:
        response = api.request(method, "/v1/keys/key_doesnotexist000", json={"name": "x"})
        assert response.status_code == 404 and error_of(response)[0] == "NOT_FOUND"
    assert api.request("POST", "/v1/keys/key_doesnotexist000/rotate").status_code == 404


def test_rotation_copies_settings_and_sets_grace(api, team):
    old = api.create(name="rot", team=team, environment="test", scopes=["check_status"],
                     allowed_ips=["10.0.0.1"], plan="pro", limits={"concurrent": 2})
    before = datetime.now(timezone.utc).replace(microsecond=0)
    response = api.request("POST", f"/v1/keys/{old['id']}/rotate", json={"grace_seconds": 3600})
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["key"].startswith("pk_test_") and new["key"] != old["key"]
    assert new["id"] != old["id"] and new["rotated_from"] == old["id"]
    for field in ["name", "team", "environment", "scopes", "allowed_ips", "expires_at", "plan", "limits"]:
        assert new[field] == old[field], field
    old_now = api.request("GET", f"/v1/keys/{old['id']}").json()
    grace_end = parse_time(old_now["expires_at"])
    assert abs((grace_end - before).total_seconds() - 3600) <= 5
    assert old_now["active"] is True and new["active"] is True


def test_rotation_without_body_expires_now_and_keeps_earlier_expiry(api, team):
    key = api.create(team=team)
    response = api.request("POST", f"/v1/keys/{key['id']}/rotate")
    assert response.status_code == 201
    expiry = parse_time(api.request("GET", f"/v1/keys/{key['id']}").json()["expires_at"])
    assert abs((expiry - datetime.now(timezone.utc)).total_seconds()) <= 5
    soon = future(120)
    early = api.create(team=team, expires_at=soon)
    api.request("POST", f"/v1/keys/{early['id']}/rotate", json={"grace_seconds": 86400})
    assert api.request("GET", f"/v1/keys/{early['id']}").json()["expires_at"] == soon


def test_rotation_grace_is_validated(api, team):
    key = api.create(team=team)
    for body, field in [({"grace_seconds": 30 * 86400 + 1}, "grace_seconds"),
                        ({"grace_seconds": -1}, "grace_seconds"), ({"grace": 5}, "grace")]:
        response = api.request("POST", f"/v1/keys/{key['id']}/rotate", json=body)
        assert response.status_code == 400, body
        assert field in error_of(response)[1]


def test_healthz_and_openapi_need_no_token(api):
    assert api.request("GET", "/healthz", token=None).json() == {"status": "ok"}
    document = api.request("GET", "/openapi.json", token=None).json()
    assert document["openapi"].startswith("3.")
