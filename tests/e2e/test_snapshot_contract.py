"""What keygate-control serves matches the documented snapshot contract
(docs/snapshot.schema.json), full and delta. That the schema refuses what the filter refuses is
tests/repo/test_snapshot_schema.py."""
import pytest
import requests

from keygate_testkit.control import ControlService
from keygate_testkit.paths import SYNC_TOKEN
from keygate_testkit.shipped import snapshot_validator

VALIDATOR = snapshot_validator()


@pytest.fixture(scope="module")
def control():
    service = ControlService().start()
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
