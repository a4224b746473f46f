"""What the repository ships, read the way the repository checks (tests/repo) and the tests
that run it (tests/e2e, tests/control) both need it: the version, the filter configuration in
envoy/envoy.yaml, the compose files as docker-compose resolves them, the Istio and Envoy Gateway
resources, the control service's OpenAPI document and the snapshot schema."""
import json
import os
import shutil
import subprocess
import tomllib

import yaml

from .paths import ROOT

VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
INSTALL_HINT = "run scripts/install-system-deps.sh (or `make system-deps`) to install it"
ENVOY_GATEWAY = ROOT / "envoy/envoy-gateway"


def require_tool(name):
    """The path of the system program `name`; the test fails, saying how to install it, without."""
    path = shutil.which(name)
    if path is None:
        import pytest

        pytest.fail(f"{name} is not installed: {INSTALL_HINT}")
    return path


def shipped_plugin_config():
    """The JSON filter configuration in envoy/envoy.yaml."""
    text = (ROOT / "envoy/envoy.yaml").read_text()
    for document in yaml.safe_load_all(text):
        listener = document["static_resources"]["listeners"][0]
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        keygate = next(f for f in manager["http_filters"] if f["name"] == "keygate")
        return json.loads(keygate["typed_config"]["config"]["configuration"]["value"])
    raise AssertionError("no document in envoy/envoy.yaml")


def compose_config(extra_env=None, path="envoy/docker-compose.yaml"):
    """`docker-compose config` of a compose file, parsed (no engine needed)."""
    binary = require_tool("docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env.update(extra_env or {})
    result = subprocess.run(
        [binary, "-f", str(ROOT / path), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return yaml.safe_load(result.stdout)


def postgres_compose(extra_env=None):
    return compose_config(extra_env, path="envoy/docker-compose.postgres.yaml")


def istio_documents():
    """envoy/istio/*.yaml by (kind, name)."""
    documents = {}
    for path in sorted((ROOT / "envoy/istio").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            assert {"apiVersion", "kind", "metadata"} <= set(document), f"{path.name}: {document}"
            documents[(document["kind"], document["metadata"]["name"])] = document
    return documents


def wasm_plugin():
    return istio_documents()[("WasmPlugin", "keygate")]


def yaml_documents(folder):
    """Every resource in `folder`'s YAML files by (kind, name); each (kind, name) once."""
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            assert {"apiVersion", "kind", "metadata"} <= set(document), f"{path.name}: {document}"
            key = (document["kind"], document["metadata"]["name"])
            assert key not in found, f"{path.name}: {key} twice"
            found[key] = document
    return found


def envoy_gateway():
    return yaml_documents(ENVOY_GATEWAY)


def extension_policy():
    return envoy_gateway()[("EnvoyExtensionPolicy", "keygate")]


def keygate_wasm():
    (wasm,) = extension_policy()["spec"]["wasm"]
    return wasm


def bootstrap_clusters(envoy_proxy):
    bootstrap = envoy_proxy["spec"]["bootstrap"]
    assert bootstrap["type"] == "Merge", "Replace would drop Envoy Gateway's own bootstrap"
    return {cluster["name"]: cluster for cluster in yaml.safe_load(bootstrap["value"])["static_resources"]["clusters"]}


def openapi_document():
    """control/openapi.json, the control service's API description."""
    return json.loads((ROOT / "control" / "openapi.json").read_text())


def openapi_operations(document):
    """The (method, path) pairs of an OpenAPI document."""
    return {(method, path) for path, item in document["paths"].items()
            for method in item if method in ("get", "post", "put", "patch", "delete")}


def snapshot_validator():
    """A validator of docs/snapshot.schema.json, the documented snapshot contract (formats
    checked)."""
    import jsonschema

    schema = json.loads((ROOT / "docs/snapshot.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
