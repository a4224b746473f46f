"""A real Envoy syncing from the control service over TLS (issue 24): envoy/envoy-ha.yaml's
keygate_control cluster (UpstreamTlsContext with `sni` and SAN verification) against
`keygate-control serve --tls-cert/--tls-key` with a CA made at test time. With the right name
the filter fetches its snapshot and authorizes; a certificate without the expected name fails
every sync (counted, and Envoy's TLS stats say why) and the filter answers as its fail mode
documents, until the service is given a certificate with the name, which it serves without a
restart."""

import pytest

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.tls import CONTROL_SANS, TestCA
from keygate_testkit.waiting import wait_until

# The name envoy/envoy-ha.yaml's cluster checks, left out of a certificate to make it wrong.
CHECKED_NAME = "control.keygate.test"
WRONG_SANS = tuple(name for name in CONTROL_SANS if name != CHECKED_NAME) + ("other.keygate.test",)


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "pki")


def tls_control(tmp_path, ca, sans):
    issued = ca.issue("control", sans)
    return ControlService(tmp_path / "keygate.db", tmp_path / "control.log", tls=issued, ca_cert=ca.path).start()


def test_envoy_fetches_its_snapshot_over_tls_and_authorizes(tmp_path, upstream, ca):
    control = tls_control(tmp_path, ca, CONTROL_SANS)
    proxy = None
    try:
        created = control.create_key(name="over-tls", scopes=["list_models"])
        proxy = Envoy(upstream.port, [control.port], plugin_config(), control_ca=ca.path)
        seen = proxy.wait_for_status("/v1/models", created["key"], 200, timeout=15).json()
        assert seen["headers"]["x-keygate-key-id"] == created["id"]
        assert proxy.native_stat("cluster.keygate_control.ssl.handshake") >= 1
        assert proxy.native_stat("cluster.keygate_control.ssl.fail_verify_san") == 0
        # A key made now arrives through the same TLS channel.
        later = control.create_key(name="later", scopes=["list_models"])
        proxy.wait_for_status("/v1/models", later["key"], 200, timeout=15)
    finally:
        if proxy:
            proxy.close()
        control.stop()


def test_a_wrong_name_fails_the_sync_and_the_filter_fails_closed_until_the_certificate_is_fixed(
        tmp_path, upstream, ca):
    control = tls_control(tmp_path, ca, WRONG_SANS)
    proxy = None
    try:
        created = control.create_key(name="wrong-san", scopes=["list_models"])
        proxy = Envoy(upstream.port, [control.port], plugin_config(), control_ca=ca.path)
        wait_until(lambda: proxy.native_stat("cluster.keygate_control.ssl.fail_verify_san") >= 1, timeout=15,
                   what="Envoy to refuse the certificate's names")
        wait_until(lambda: proxy.stat("keygate_snapshot_refresh_failed") >= 1, timeout=15,
                   what="the failed sync to be counted")
        # No snapshot ever arrived: fail_mode closed answers 503 AUTH_UNAVAILABLE (docs/operations.md).
        refused = proxy.get("/v1/models", created["key"])
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "AUTH_UNAVAILABLE"
        # The right certificate, swapped in without a restart, heals the sync.
        fixed = ca.issue("fixed", CONTROL_SANS)
        control.tls.key.write_bytes(fixed.key.read_bytes())
        control.tls.cert.write_bytes(fixed.cert.read_bytes())
        proxy.wait_for_status("/v1/models", created["key"], 200, timeout=30)
    finally:
        if proxy:
            proxy.close()
        control.stop()
