"""The documented snapshot contract (docs/snapshot.schema.json) refuses what the filter refuses.
That the control service's pages match it is tests/e2e/test_snapshot_contract.py."""
import jsonschema
import pytest

from keygate_testkit.shipped import snapshot_validator
from keygate_testkit.snapshot_server import key_record

VALIDATOR = snapshot_validator()


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
