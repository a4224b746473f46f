"""Every Envoy YAML we ship passes the real Envoy's validation; a bad plugin configuration
makes Envoy refuse it with a log line naming the field."""
import os
import subprocess
import tempfile

import pytest

from keygate_testkit.envoy import envoy_yaml, plugin_config
from keygate_testkit.paths import ENVOY_BIN, NATIVE_DIR, ROOT, WASM
from keygate_testkit.ports import free_port
from keygate_testkit.tls import TestCA

SHIPPED = sorted(p for p in (ROOT / "envoy").glob("*.yaml") if "static_resources" in p.read_text())
# Where the shipped multi-host configurations find the CA of the control replicas' certificates:
# made by scripts/dev-pki.sh (make run-ha) or the compose file's `pki` service, so absent on a
# fresh checkout; a test CA stands in for it.
SHIPPED_CA_PATHS = (".run/ha/pki/ca.pem", "/etc/keygate/tls/ca.pem")


def validate(yaml_text, cwd=ROOT):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(yaml_text)
    env = dict(os.environ, KEYGATE_SYNC_TOKEN="validate-token", KEYGATE_ENROLLMENT_TOKEN="kge_validate-token",
               ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(NATIVE_DIR))
    return subprocess.run(
        [str(ENVOY_BIN), "--mode", "validate", "-c", f.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def test_there_are_shipped_configs():
    assert ROOT / "envoy/envoy.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_envoy_yaml_validates(path, tmp_path):
    text = path.read_text().replace(
        "filename: target/wasm32-wasip1/release/keygate.wasm", f"filename: {WASM}"
    ).replace("filename: /etc/envoy/keygate.wasm", f"filename: {WASM}")
    ca = TestCA(tmp_path / "pki")
    for shipped_ca in SHIPPED_CA_PATHS:
        text = text.replace(f"filename: {shipped_ca}", f"filename: {ca.path}")
    result = validate(text)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK" in result.stdout + result.stderr


BROKEN = [
    (plugin_config(control={"refresh_interval": "5"}), "control.refresh_interval"),
    (plugin_config(fail_mode="sometimes"), "fail_mode"),
    (plugin_config(unexpected=True), "unexpected"),
    (
        plugin_config(routes=[{"exact": "/ok"}, {"template": "/v1/{broken", "scope": "x"}]),
        "routes[1].path",
    ),
    (plugin_config(control={"token": None, "token_env": "KEYGATE_NOT_SET"}), "control.token_env"),
]


@pytest.mark.parametrize("config,field", BROKEN, ids=[field for _, field in BROKEN])
def test_bad_plugin_config_is_refused_naming_the_field(config, field):
    config = dict(config)
    config["control"] = {k: v for k, v in config["control"].items() if v is not None}
    text = envoy_yaml(free_port(), free_port(), free_port(), free_port(), config, "/dev/null")
    result = validate(text)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "invalid plugin configuration" in output
    assert field in output, output[-3000:]


def test_envoy_refuses_to_serve_with_a_bad_plugin_config(tmp_path):
    text = envoy_yaml(free_port(), free_port(), free_port(), free_port(), plugin_config(max_staleness="soon"), "/dev/null")
    config_path = tmp_path / "envoy.yaml"
    config_path.write_text(text)
    result = subprocess.run(
        [str(ENVOY_BIN), "-c", str(config_path), "--base-id", str(free_port()), "--concurrency", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(NATIVE_DIR)),
    )
    assert result.returncode != 0
    assert "keygate: invalid plugin configuration: max_staleness" in result.stdout + result.stderr
