"""Every validation rule answers 400 with the error shape and a message naming the field."""

import pytest

from keygate_testkit.api import error_of

CREATE_CASES = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 129}, "name"),
    ({"name": 5}, "name"),
    ({"name": "a", "environment": "prod"}, "environment"),
    ({"name": "a", "team": 7}, "team"),
    ({"name": "a", "team": "t" * 129}, "team"),
    ({"name": "a", "scopes": ["submit_job", "delete_everything"]}, "scopes[1]"),
    ({"name": "a", "scopes": ["submit_job", "submit_job"]}, "scopes[1]"),
    ({"name": "a", "scopes": "submit_job"}, "scopes"),
    ({"name": "a", "allowed_ips": ["10.0.0.1", "10.0.0.0/33"]}, 'allowed_ips[1]: invalid IP or CIDR "10.0.0.0/33"'),
    ({"name": "a", "allowed_ips": ["300.1.1.1"]}, "allowed_ips[0]"),
    ({"name": "a", "allowed_ips": ["2001:db8::/129"]}, "allowed_ips[0]"),
    ({"name": "a", "allowed_ips": [42]}, "allowed_ips[0]"),
    ({"name": "a", "expires_at": "tomorrow"}, "expires_at"),
    ({"name": "a", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at: must be in the future"),
    ({"name": "a", "expires_at": 1893456000}, "expires_at"),
    ({"name": "a", "plan": "gold"}, "plan"),
    ({"name": "a", "limits": {"per_minute": 0}}, "limits.per_minute"),
    ({"name": "a", "limits": {"per_hour": -5}}, "limits.per_hour"),
    ({"name": "a", "limits": {"per_day": 1.5}}, "limits.per_day"),
    ({"name": "a", "limits": {"concurrent": "2"}}, "limits.concurrent"),
    ({"name": "a", "limits": {"per_month": 0}}, "limits.per_month"),
    ({"name": "a", "limits": {"per_month": -1}}, "limits.per_month"),
    ({"name": "a", "limits": {"per_second": 2}}, "per_second"),
    ({"name": "a", "limits": 5}, "limits"),
    ({"name": "a", "secret": "pk_live_mine"}, "secret"),
    ({"name": "a", "active": False}, "active"),
]


@pytest.mark.parametrize("body,field", CREATE_CASES, ids=[str(case[1]) for case in CREATE_CASES])
def test_create_validation(api, body, field):
    response = api.request("POST", "/v1/keys", json=body)
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "VALIDATION_ERROR"
    assert field in message, message


PATCH_CASES = [
    ({"name": ""}, "name"),
    ({"scopes": ["nope"]}, "scopes[0]"),
    ({"allowed_ips": ["10.0.0.0/8", "not-an-ip"]}, "allowed_ips[1]"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"plan": "platinum"}, "plan"),
    ({"limits": {"per_minute": 0}}, "limits.per_minute"),
    ({"active": "yes"}, "active"),
    ({"environment": "test"}, "environment"),
    ({"id": "key_other"}, "id"),
    ({"name": None}, "name: must not be null"),
    ({"team": None}, "team: must not be null"),
    ({"scopes": None}, "scopes: must not be null"),
    ({"allowed_ips": None}, "allowed_ips: must not be null"),
    ({"plan": None}, "plan: must not be null"),
    ({"active": None}, "active: must not be null"),
    ({"limits": {"per_minute": None, "per_day": 0}}, "limits.per_day"),
    ({"limits": {"per_second": None}}, "per_second"),
]


@pytest.mark.parametrize("body,field", PATCH_CASES, ids=[case[1].split(":")[0] + ("-null" if ":" in case[1] else "")
                                                       for case in PATCH_CASES])
def test_patch_validation(api, team, body, field):
    key = api.create(team=team)
    response = api.request("PATCH", f"/v1/keys/{key['id']}", json=body)
    assert response.status_code == 400, response.text
    code, message = error_of(response)
    assert code == "VALIDATION_ERROR" and field in message, message


def test_non_object_bodies_are_rejected(api):
    for body in ['["a"]', "null", "42"]:
        response = api.request("POST", "/v1/keys", data=body)
        assert response.status_code == 400
        assert error_of(response) == ("VALIDATION_ERROR", "body: must be a JSON object")


def test_malformed_json_is_invalid_json(api):
    for body in ['{"name": "a"', "", "not json", '{"name":"a"} extra']:
        response = api.request("POST", "/v1/keys", data=body)
        assert response.status_code == 400, body
        assert error_of(response)[0] == "INVALID_JSON"


def test_oversized_body_is_413_json(api):
    body = '{"name": "' + "x" * (70 * 1024) + '"}'
    response = api.request("POST", "/v1/keys", data=body)
    assert response.status_code == 413
    assert error_of(response)[0] == "PAYLOAD_TOO_LARGE"


def test_unknown_routes_and_methods_are_json(api):
    response = api.request("GET", "/v2/nothing")
    assert response.status_code == 404 and error_of(response)[0] == "NOT_FOUND"
    response = api.request("PUT", "/v1/keys")
    assert response.status_code == 405 and error_of(response)[0] == "METHOD_NOT_ALLOWED"
    response = api.request("POST", "/v1/snapshot", token="sync")
    assert response.status_code == 405 and error_of(response)[0] == "METHOD_NOT_ALLOWED"
