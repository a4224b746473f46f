"""Admin endpoints take only the admin token; the snapshot feed takes only the sync token."""

import pytest

from keygate_testkit.api import error_of
from keygate_testkit.paths import ADMIN_TOKEN, SYNC_TOKEN

ADMIN_ROUTES = [
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("GET", "/v1/keys/key_x"),
    ("PATCH", "/v1/keys/key_x"),
    ("DELETE", "/v1/keys/key_x"),
    ("POST", "/v1/keys/key_x/rotate"),
]

WRONG_HEADERS = {
    "missing": {},
    "wrong token": {"Authorization": "Bearer nope"},
    "sync token": {"Authorization": f"Bearer {SYNC_TOKEN}"},
    "admin token as basic": {"Authorization": f"Basic {ADMIN_TOKEN}"},
    "admin token prefix": {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
}


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
@pytest.mark.parametrize("case", list(WRONG_HEADERS))
def test_admin_routes_reject_other_tokens(api, method, path, case):
    response = api.request(method, path, token=None, headers=WRONG_HEADERS[case], json={"name": "x"})
    assert response.status_code == 401
    assert error_of(response)[0] == "UNAUTHORIZED"
    assert response.headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": f"Bearer {ADMIN_TOKEN}"}])
def test_snapshot_rejects_everything_but_the_sync_token(api, headers):
    response = api.request("GET", "/v1/snapshot", token=None, headers=headers)
    assert response.status_code == 401
    assert error_of(response)[0] == "UNAUTHORIZED"


def test_right_tokens_work(api):
    assert api.request("GET", "/v1/keys").status_code == 200
    assert api.snapshot().status_code == 200
    lowercase = {"Authorization": f"bearer {ADMIN_TOKEN}"}
    assert api.request("GET", "/v1/keys", token=None, headers=lowercase).status_code == 200
