"""What keygate-control serves matches the documented snapshot contract
(docs/snapshot.schema.json), full and delta, and the schema refuses what the filter refuses."""
import json

import jsonschema
import pytest
import requests

from harness import ROOT, SYNC_TOKEN, ControlService, key_record

SCHEMA = json.loads((ROOT / "docs/snapshot.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def control():
    service = ControlService()
    yield service
    service.stop()


def snapshot(control, query=""):
    response = requests.get(
        control.url(f"/v1/snapshot{query}"), headers={"Authorization": f"Bearer {SYNC_TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_full_and_delta_pages_validate(control):
    control.create_key(name="a", scopes=["submit_job"], allowed_ips=["10.0.0.0/8", "::1"], plan="pro")
    doomed = control.create_key(name="b", expires_at="2099-01-01T00:00:00Z", limits={"per_minute": 5})
    full = snapshot(control)
    VALIDATOR.validate(full)
    assert full["full"] is True and len(full["keys"]) >= 2
    assert control.admin("DELETE", f"/v1/keys/{doomed['id']}").status_code == 204
    delta = snapshot(control, f"?since={full['version']}&epoch={full['epoch']}")
    VALIDATOR.validate(delta)
    assert delta["full"] is False and len(delta["deleted"]) == 1
    for page in (full, delta):
        for key in page["keys"]:
            assert "key" not in key and "secret" not in key


@pytest.mark.parametrize(
    "bad",
    [
        {"full": True},
        {"version": -1, "full": True},
        {"version": 1, "full": True, "keys": [dict(key_record("pk_live_x", "k"), hash="ABC")]},
        {"version": 1, "full": True, "keys": [dict(key_record("pk_live_x", "k"), scopes=["a,b"])]},
        {"version": 1, "full": True, "keys": [dict(key_record("pk_live_x", "k"), limits={"per_minute": -1})]},
        {"version": 1, "full": True, "keys": [{"id": "k", "hash": "0" * 64}]},
        {"version": 1, "full": False, "deleted": ["nothex"]},
    ],
)
def test_schema_rejects_what_the_filter_rejects(bad):
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(bad)
