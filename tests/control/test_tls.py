"""The control service over HTTPS (`serve --tls-cert/--tls-key`, issue 24): a client that checks
the certificate's names against a CA made at test time, HTTP/2 by ALPN, the certificate
replaced on a file change or SIGHUP while a broken replacement keeps the old one serving, and
the CLI client over https with --ca-cert."""

import signal
import socket
import ssl

import pytest
import requests

from keygate_testkit.control import ControlService, run_cli
from keygate_testkit.paths import ADMIN_TOKEN
from keygate_testkit.tls import TestCA, served_serial
from keygate_testkit.waiting import wait_until

# The service checks its certificate files every 2 s; a loaded machine gets more.
RELOAD_SECONDS = 15


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "pki")


@pytest.fixture
def service(tmp_path, ca):
    served = ca.issue("served")
    control = ControlService(tmp_path / "keygate.db", tmp_path / "serve.log", tls=served, ca_cert=ca.path)
    control.start()
    control.issued = served
    yield control
    control.stop()


def replace(path, content):
    """Writes `content` to `path` through a rename, as deployment tools do, so no reader ever
    sees half a file."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(content)
    temporary.replace(path)


def serve_instead(service, issued):
    replace(service.issued.key, issued.key.read_bytes())
    replace(service.issued.cert, issued.cert.read_bytes())


def test_https_with_a_verified_name_and_http2_by_alpn(service, ca):
    assert service.url().startswith("https://")
    assert requests.get(service.url("/healthz"), verify=str(ca.path), timeout=5).json() == {"status": "ok"}
    assert served_serial("127.0.0.1", service.port, ca.path) == service.issued.serial
    # A name the certificate does not carry is refused by a verifying client.
    with pytest.raises(ssl.SSLCertVerificationError):
        served_serial("127.0.0.1", service.port, ca.path, server_name="other.keygate.test")
    # A client trusting another CA refuses it too.
    stranger = TestCA(service.issued.cert.parent / "stranger")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(service.url("/healthz"), verify=str(stranger.path), timeout=5)
    context = ssl.create_default_context(cafile=str(ca.path))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "h2"


def test_plain_http_on_the_tls_port_is_not_served(service):
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{service.port}/healthz", timeout=5)


def test_a_changed_certificate_file_is_served_without_a_restart(service, ca):
    renewed = ca.issue("renewed")
    serve_instead(service, renewed)
    wait_until(lambda: served_serial("127.0.0.1", service.port, ca.path) == renewed.serial,
               timeout=RELOAD_SECONDS, interval=0.2, what="the renewed certificate to be served")
    assert "tls: serving the new certificate" in service.log_text()


def test_sighup_reloads_and_a_broken_certificate_keeps_the_old_one(service, ca):
    old_serial = service.issued.serial
    replace(service.issued.cert, b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")

    def refusals():
        return service.log_text().count("tls: keeping the current certificate")

    wait_until(lambda: refusals() >= 1, timeout=RELOAD_SECONDS, what="the broken certificate to be refused")
    assert served_serial("127.0.0.1", service.port, ca.path) == old_serial
    assert requests.get(service.url("/healthz"), verify=str(ca.path), timeout=5).status_code == 200
    # A file check reports a refused content once; SIGHUP tries it again, and says so again.
    seen = refusals()
    service.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: refusals() > seen, timeout=RELOAD_SECONDS, what="SIGHUP to try the files again")
    # A key that is not the certificate's is refused as well.
    other = ca.issue("other")
    replace(service.issued.cert, other.cert.read_bytes())
    wait_until(lambda: "the key does not go with the certificate" in service.log_text(), timeout=RELOAD_SECONDS,
               what="the mismatched pair to be refused")
    assert served_serial("127.0.0.1", service.port, ca.path) == old_serial
    # A good pair then is served: on SIGHUP at the latest.
    serve_instead(service, other)
    service.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: served_serial("127.0.0.1", service.port, ca.path) == other.serial,
               timeout=RELOAD_SECONDS, interval=0.2, what="the good certificate after SIGHUP")
    assert service.proc.poll() is None


def test_a_bad_certificate_at_start_is_refused_with_the_reason(tmp_path, ca):
    issued = ca.issue("start")
    issued.key.write_text("not a key")
    control = ControlService(tmp_path / "keygate.db", tmp_path / "serve.log", tls=issued, ca_cert=ca.path,
                             start_timeout=5)
    with pytest.raises(RuntimeError, match="no usable PEM private key"):
        control.start()


def test_the_cli_talks_https_with_its_ca(service, ca):
    listed = run_cli("keys", "list", "--json", "--ca-cert", str(ca.path), url=service.url(), token=ADMIN_TOKEN)
    assert listed.returncode == 0, listed.stderr
    untrusted = run_cli("keys", "list", url=service.url(), token=ADMIN_TOKEN)
    assert untrusted.returncode != 0
    assert "cannot reach the control service" in untrusted.stderr and "certificate" in untrusted.stderr.lower()
    serve_only = run_cli("serve", "--ca-cert", str(ca.path))
    assert serve_only.returncode != 0 and "--ca-cert is an option of the keys commands" in serve_only.stderr
