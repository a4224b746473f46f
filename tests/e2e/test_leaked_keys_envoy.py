"""Leaked keys through a real Envoy: a key of the checksummed format with a wrong checksum is
refused before any lookup (counted in `keygate_keys_checksum_failed`) while keys issued before
checksums keep working, and a signed GitHub secret scanning report revokes a live key, which
Envoy then refuses within the long-poll revocation time."""
import time

import pytest

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.key_format import checksum, with_wrong_checksum
from keygate_testkit.secret_scanning import GitHubSigner, post_report, report_body, write_keys
from keygate_testkit.snapshot_server import SnapshotServer, key_record

# Issued before checksums: 40 characters after the prefix, nothing to check.
LEGACY = "pk_live_" + "Legacy0Key0Issued0Before0Checksums000000"
CHECKSUMMED = "pk_live_" + "Checksummed0Key0Of0The0New0Format0000000"
CHECKSUMMED += checksum(CHECKSUMMED)
MISTYPED = with_wrong_checksum(CHECKSUMMED)


@pytest.fixture(scope="module")
def snapshots():
    server = SnapshotServer()
    # The mistyped key has a record of its own: were it looked up, it would be let through.
    server.publish([key_record(LEGACY, "key_legacy"), key_record(CHECKSUMMED, "key_checksummed"),
                    key_record(MISTYPED, "key_mistyped")])
    yield server
    server.close()


def test_the_checksum_is_checked_before_any_lookup_and_old_keys_still_work(upstream, snapshots):
    assert len(LEGACY) == 48 and len(CHECKSUMMED) == 54
    proxy = Envoy(upstream.port, snapshots.port, plugin_config())
    try:
        proxy.wait_for_status("/v1/models", CHECKSUMMED, 200)
        assert proxy.get("/v1/models", LEGACY).status_code == 200
        assert proxy.stat("keygate_keys_checksum_failed") == 0
        for _ in range(3):
            refused = proxy.get("/v1/models", MISTYPED)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "INVALID_API_KEY"
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert proxy.stat("keygate_keys_checksum_failed") == 3
        # Same key, the other environment's prefix: the checksum covers the prefix too.
        other_environment = CHECKSUMMED.replace("pk_live_", "pk_test_", 1)
        assert proxy.get("/v1/models", other_environment).status_code == 401
        assert proxy.stat("keygate_keys_checksum_failed") == 4
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def github():
    return GitHubSigner()


@pytest.fixture(scope="module")
def control(tmp_path_factory, github):
    keys_file = write_keys(tmp_path_factory.mktemp("scanning") / "keys.json", github)
    service = ControlService(extra_env={"KEYGATE_SECRET_SCANNING_KEYS": str(keys_file)}).start()
    yield service
    service.stop()


def test_a_github_report_revokes_a_key_envoy_then_refuses(upstream, control, github):
    config = plugin_config(control={"refresh_interval": "30s", "long_poll_wait": "20s", "timeout": "2s"})
    proxy = Envoy(upstream.port, control.port, config)
    try:
        key = control.create_key(name="about to leak")
        bystander = control.create_key(name="stays")
        proxy.wait_for_status("/v1/models", key["key"], 200, timeout=5)
        proxy.wait_for_status("/v1/models", bystander["key"], 200, timeout=5)
        started = time.monotonic()
        answer = post_report(control.url(), github, report_body(key["key"]))
        assert answer.status_code == 200 and answer.json()[0]["label"] == "true_positive", answer.text
        refused = proxy.wait_for_status("/v1/models", key["key"], 401, timeout=5)
        revocation = time.monotonic() - started
        assert refused.json()["error"]["code"] == "API_KEY_INACTIVE"
        # With a 30 s refresh interval only the long poll brings it this soon (docs: "< 1.5 s").
        print(f"report to Envoy's 401: {revocation:.2f} s")
        assert revocation < 1.5, revocation
        assert proxy.get("/v1/models", bystander["key"]).status_code == 200
    finally:
        proxy.close()
