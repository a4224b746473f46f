"""What we ship for installing Keygate: the compose file (checked by docker-compose itself), the
control service's Dockerfile, the Istio resources (the WasmPlugin's configuration accepted by the
real filter in the real Envoy), the OCI image of keygate.wasm (`make oci`), the release
artifacts (`make release`, loaded by Envoy through `code.remote`), and the metric names in
docs/operations.md."""
import functools
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib

import pytest
import requests
import yaml

from harness import (
    CONTROL_BIN,
    ENVOY_BIN,
    ROOT,
    WASM,
    Envoy,
    SnapshotServer,
    envoy_yaml,
    free_port,
    plugin_config,
    wait_until,
)

INSTALL_HINT = "run scripts/install-system-deps.sh (or `make system-deps`) to install it"
ISTIO_SERVICE_CLUSTER = "outbound|8081||keygate-control.keygate.svc.cluster.local"
VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]


def require_tool(name):
    path = shutil.which(name)
    if path is None:
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


# docker-compose

def compose_config(extra_env=None, path="envoy/docker-compose.yaml"):
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


def published_ports(service):
    """`host_ip:published:target` for short (docker-compose 1.x) and long (Compose v2) syntax."""
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(f"{port.get('host_ip', '')}:{port['published']}:{port['target']}")
        else:
            ports.add(str(port).split("/")[0])
    return ports


def mounts(service):
    """(source, target, read_only) for short and long volume syntax."""
    found = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found.add((volume["source"], volume["target"], bool(volume.get("read_only"))))
        else:
            parts = volume.split(":")
            found.add((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return found


def test_compose_file_validates_with_the_expected_services():
    config = compose_config()
    services = config["services"]
    assert set(services) == {"envoy", "control", "upstream"}

    envoy = services["envoy"]
    assert envoy["image"] in ("envoyproxy/envoy:v1.40.0", "envoyproxy/envoy:v1.40-latest")
    assert published_ports(envoy) == {"127.0.0.1:10000:10000", "127.0.0.1:9901:9901"}
    assert mounts(envoy) == {
        (str(ROOT / "envoy/envoy-compose.yaml"), "/etc/envoy/envoy.yaml", True),
        (str(ROOT / "target/wasm32-wasip1/release/keygate.wasm"), "/etc/envoy/keygate.wasm", True),
    }
    assert envoy["environment"]["KEYGATE_SYNC_TOKEN"] == "dev-sync-token"
    assert set(envoy["depends_on"]) == {"control", "upstream"}

    control = services["control"]
    assert control["build"]["context"] == str(ROOT)
    assert control["build"]["dockerfile"] == "Dockerfile"
    assert published_ports(control) == {"127.0.0.1:8081:8081"}
    assert control["environment"]["KEYGATE_LISTEN"] == "0.0.0.0:8081"
    assert control["environment"]["KEYGATE_ADMIN_TOKEN"] == "dev-admin-token"
    assert control["environment"]["KEYGATE_SYNC_TOKEN"] == "dev-sync-token"
    (data,) = [m for m in mounts(control) if m[1] == os.path.dirname(control["environment"]["KEYGATE_DB"])]
    assert data[0] in config["volumes"], "the SQLite file must be on a named volume"

    upstream = services["upstream"]
    assert upstream["image"] == "python:3.12-slim"
    assert published_ports(upstream) == {"127.0.0.1:8082:8082"}
    assert (str(ROOT / "scripts/demo_upstream.py"), "/app/demo_upstream.py", True) in mounts(upstream)
    command = " ".join(upstream["command"])
    assert "/app/demo_upstream.py --host 0.0.0.0 --port 8082" in command


def test_compose_tokens_come_from_the_environment():
    services = compose_config({"KEYGATE_ADMIN_TOKEN": "a-admin", "KEYGATE_SYNC_TOKEN": "a-sync"})["services"]
    assert services["control"]["environment"]["KEYGATE_ADMIN_TOKEN"] == "a-admin"
    assert services["control"]["environment"]["KEYGATE_SYNC_TOKEN"] == "a-sync"
    assert services["envoy"]["environment"]["KEYGATE_SYNC_TOKEN"] == "a-sync"


def test_compose_envoy_config_is_envoy_yaml_with_container_addresses():
    """envoy-compose.yaml may differ from envoy.yaml only where a container must: listen
    addresses, the wasm path, and the clusters found by DNS. Everything else (filter config,
    connection-manager settings, comments) stays in step."""
    def body(path):
        text = (ROOT / path).read_text()
        return text[text.index("admin:\n") :]

    expected = body("envoy/envoy.yaml")
    for old, new in [
        ("{ address: 127.0.0.1, port_value: 9901 }", "{ address: 0.0.0.0, port_value: 9901 }"),
        ("{ address: 127.0.0.1, port_value: 10000 }", "{ address: 0.0.0.0, port_value: 10000 }"),
        ("filename: target/wasm32-wasip1/release/keygate.wasm", "filename: /etc/envoy/keygate.wasm"),
        ("{ address: 127.0.0.1, port_value: 8082 }", "{ address: upstream, port_value: 8082 }"),
        ("{ address: 127.0.0.1, port_value: 8081 }", "{ address: control, port_value: 8081 }"),
        ("    type: STATIC\n", "    type: STRICT_DNS\n    dns_lookup_family: V4_ONLY\n"),
    ]:
        assert old in expected, f"envoy/envoy.yaml no longer contains {old!r}"
        expected = expected.replace(old, new)
    assert body("envoy/envoy-compose.yaml") == expected


def envoy_body(path):
    """An Envoy YAML we ship, without its header comment."""
    text = (ROOT / path).read_text()
    return text[text.index("admin:\n") :]


def test_envoy_ha_yaml_is_envoy_yaml_with_both_replicas_in_the_control_cluster():
    """envoy-ha.yaml (make run-ha) differs from envoy.yaml only in the keygate_control cluster:
    both replicas, health-checked, outlier detection; the tests' replicated Envoys use it."""
    start = "  - name: keygate_control\n"
    ha, single = envoy_body("envoy/envoy-ha.yaml"), envoy_body("envoy/envoy.yaml")
    assert ha[: ha.index(start)] == single[: single.index(start)]
    (config,) = yaml.safe_load_all((ROOT / "envoy/envoy-ha.yaml").read_text())
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "keygate_control"]
    addresses = [
        e["endpoint"]["address"]["socket_address"] for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert addresses == [{"address": "127.0.0.1", "port_value": 8081}, {"address": "127.0.0.1", "port_value": 8091}]
    (check,) = cluster["health_checks"]
    assert check["http_health_check"] == {"path": "/healthz"}
    assert check["unhealthy_threshold"] == 1 and check["interval"] == "1s"
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 0}
    outlier = cluster["outlier_detection"]
    # Only connection failures eject: a replica's 503 (PostgreSQL down) is not its own fault.
    assert outlier["split_external_local_origin_errors"] is True
    assert outlier["enforcing_consecutive_5xx"] == 0 and outlier["max_ejection_percent"] == 50


def postgres_compose(extra_env=None):
    return compose_config(extra_env, path="envoy/docker-compose.postgres.yaml")


def test_postgres_compose_file_validates_with_two_replicas_on_one_database():
    config = postgres_compose()
    services = config["services"]
    assert set(services) == {"envoy", "control-1", "control-2", "postgres", "upstream"}

    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    assert "ports" not in postgres, "PostgreSQL is for the replicas only"
    assert ("keygate-postgres", "/var/lib/postgresql/data", False) in mounts(postgres)
    assert "keygate-postgres" in config["volumes"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    pg_env = postgres["environment"]
    url = f"postgres://{pg_env['POSTGRES_USER']}:{pg_env['POSTGRES_PASSWORD']}@postgres:5432/{pg_env['POSTGRES_DB']}"

    published = {}
    for name in ("control-1", "control-2"):
        control = services[name]
        assert control["build"]["context"] == str(ROOT) and control["image"] == "keygate-control:dev"
        environment = control["environment"]
        assert environment["KEYGATE_DATABASE_URL"] == url
        assert "KEYGATE_DB" not in environment, "--db and --database-url conflict"
        assert environment["KEYGATE_LISTEN"] == "0.0.0.0:8081"
        assert environment["KEYGATE_ADMIN_TOKEN"] == "dev-admin-token"
        assert environment["KEYGATE_SYNC_TOKEN"] == "dev-sync-token"
        assert control["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/healthz" in " ".join(control["healthcheck"]["test"])
        assert "volumes" not in control, "a replica keeps nothing of its own"
        published[name] = published_ports(control)
    assert published == {"control-1": {"127.0.0.1:8081:8081"}, "control-2": {"127.0.0.1:8091:8081"}}

    envoy = services["envoy"]
    assert envoy["image"] == compose_config()["services"]["envoy"]["image"], "the same Envoy as docker-compose.yaml"
    assert published_ports(envoy) == {"127.0.0.1:10000:10000", "127.0.0.1:9901:9901"}
    assert mounts(envoy) == {
        (str(ROOT / "envoy/envoy-compose-postgres.yaml"), "/etc/envoy/envoy.yaml", True),
        (str(ROOT / "target/wasm32-wasip1/release/keygate.wasm"), "/etc/envoy/keygate.wasm", True),
    }
    assert envoy["depends_on"]["control-1"]["condition"] == envoy["depends_on"]["control-2"]["condition"] == "service_healthy"
    assert services["upstream"] == compose_config()["services"]["upstream"]


def test_postgres_compose_secrets_come_from_the_environment():
    services = postgres_compose(
        {"KEYGATE_ADMIN_TOKEN": "a-admin", "KEYGATE_SYNC_TOKEN": "a-sync", "KEYGATE_POSTGRES_PASSWORD": "a-password"}
    )["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "a-password"
    for name in ("control-1", "control-2"):
        environment = services[name]["environment"]
        assert environment["KEYGATE_DATABASE_URL"] == "postgres://keygate:a-password@postgres:5432/keygate"
        assert environment["KEYGATE_ADMIN_TOKEN"] == "a-admin" and environment["KEYGATE_SYNC_TOKEN"] == "a-sync"
    assert services["envoy"]["environment"]["KEYGATE_SYNC_TOKEN"] == "a-sync"


def test_postgres_compose_envoy_config_is_envoy_ha_yaml_with_container_addresses():
    expected = envoy_body("envoy/envoy-ha.yaml")
    for old, new in [
        ("{ address: 127.0.0.1, port_value: 9901 }", "{ address: 0.0.0.0, port_value: 9901 }"),
        ("{ address: 127.0.0.1, port_value: 10000 }", "{ address: 0.0.0.0, port_value: 10000 }"),
        ("filename: target/wasm32-wasip1/release/keygate.wasm", "filename: /etc/envoy/keygate.wasm"),
        ("{ address: 127.0.0.1, port_value: 8082 }", "{ address: upstream, port_value: 8082 }"),
        ("{ address: 127.0.0.1, port_value: 8081 }", "{ address: control-1, port_value: 8081 }"),
        ("{ address: 127.0.0.1, port_value: 8091 }", "{ address: control-2, port_value: 8081 }"),
        ("    type: STATIC\n", "    type: STRICT_DNS\n    dns_lookup_family: V4_ONLY\n"),
    ]:
        assert old in expected, f"envoy/envoy-ha.yaml no longer contains {old!r}"
        expected = expected.replace(old, new)
    assert envoy_body("envoy/envoy-compose-postgres.yaml") == expected


def image_environment():
    """The ENV of the Dockerfile's final stage, as the container starts with it."""
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :].replace("\\\n", " ")
    env = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            for pair in line[len("ENV ") :].split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def start_control_like_the_image(container_env, tmp_path):
    """keygate-control serve (the image's ENTRYPOINT and CMD) with the image's ENV under
    `container_env`, on a loopback port; returns the process and its URL once /healthz answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env.update(image_environment())
    env.update(container_env)
    env["KEYGATE_LISTEN"] = f"127.0.0.1:{port}"
    log = open(tmp_path / "control.log", "wb")
    process = subprocess.Popen([str(CONTROL_BIN), "serve"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"

    def healthy():
        assert process.poll() is None, (tmp_path / "control.log").read_text()
        return requests.get(f"{url}/healthz", timeout=1).ok

    try:
        wait_until(healthy, timeout=20, what="the control service with the container's environment")
    except AssertionError:
        process.kill()
        process.wait(timeout=10)
        raise
    return process, url


def assert_replica_environment_serves_from_postgres(container_env, postgres_cluster, tmp_path):
    """Two replicas with this environment (the database URL pointed at a throwaway cluster)
    start on one database, and a key written through one is read through the other."""
    database = postgres_cluster.new_database()
    container_env = dict(container_env, KEYGATE_DATABASE_URL=database)
    started = []
    try:
        for n in range(2):
            folder = tmp_path / f"replica-{n}"
            folder.mkdir()
            started.append(start_control_like_the_image(container_env, folder))
        admin = {"Authorization": f"Bearer {container_env['KEYGATE_ADMIN_TOKEN']}"}
        created = requests.post(f"{started[0][1]}/v1/keys", headers=admin, json={"name": "shipped"}, timeout=10)
        assert created.status_code == 201, created.status_code
        found = requests.get(f"{started[1][1]}/v1/keys/{created.json()['id']}", headers=admin, timeout=10)
        assert found.status_code == 200 and found.json()["name"] == "shipped"
        assert not list(tmp_path.rglob("*.db")), "a replica on PostgreSQL wrote an SQLite file"
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(timeout=15)


def test_postgres_compose_replicas_start_with_the_image_environment(postgres_cluster, tmp_path):
    """The image's ENV plus a replica's compose environment make a working PostgreSQL replica
    (an image ENV KEYGATE_DB would make it refuse --database-url)."""
    environment = postgres_compose()["services"]["control-1"]["environment"]
    assert_replica_environment_serves_from_postgres(environment, postgres_cluster, tmp_path)


def test_sqlite_image_default_is_the_file_on_the_volume(tmp_path):
    """Without KEYGATE_DB, the image keeps keygate.db in its working directory, the volume."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "WORKDIR /var/lib/keygate" in dockerfile and "VOLUME /var/lib/keygate" in dockerfile
    assert "KEYGATE_DB" not in image_environment()
    process, url = start_control_like_the_image({"KEYGATE_ADMIN_TOKEN": "a-admin", "KEYGATE_SYNC_TOKEN": "a-sync"}, tmp_path)
    try:
        assert (tmp_path / "keygate.db").exists()
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_dockerfile_builds_the_control_service_from_the_whole_workspace():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM rust:1.95-bookworm AS build" in dockerfile
    assert "FROM debian:bookworm-slim" in dockerfile
    assert "cargo build --release --locked -p keygate-control" in dockerfile
    assert "COPY . ." in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"target/", ".venv/", ".run/"} <= set(ignored)
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]
    for member in workspace["members"]:
        top = member.split("/")[0]
        assert f"{top}/" not in ignored and top not in ignored, f"workspace member {member} is left out of the build context"


# Istio

def istio_documents():
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


def test_istio_resources_parse():
    kinds = {kind for kind, _ in istio_documents()}
    assert {"WasmPlugin", "Namespace", "Deployment", "Service", "Secret", "ServiceEntry"} <= kinds


def test_wasm_plugin_resource():
    plugin = wasm_plugin()
    assert plugin["apiVersion"] == "extensions.istio.io/v1alpha1"
    spec = plugin["spec"]
    assert spec["url"].startswith("oci://")
    assert spec["imagePullPolicy"] == "IfNotPresent"
    assert spec["phase"] == "AUTHN"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["selector"]["matchLabels"]
    assert {"name": "KEYGATE_SYNC_TOKEN", "valueFrom": "HOST"} in spec["vmConfig"]["env"]
    config = spec["pluginConfig"]
    assert config["control"]["cluster"] == ISTIO_SERVICE_CLUSTER
    assert config["control"]["token_env"] == "KEYGATE_SYNC_TOKEN"


def test_wasm_plugin_config_is_the_shipped_filter_config():
    config = json.loads(json.dumps(wasm_plugin()["spec"]["pluginConfig"]))
    config["control"]["cluster"] = "keygate_control"
    del config["control"]["authority"]
    assert config == shipped_plugin_config()


def test_wasm_plugin_cluster_is_the_control_service():
    documents = istio_documents()
    service = documents[("Service", "keygate-control")]
    _, port, _, host = ISTIO_SERVICE_CLUSTER.split("|")
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    deployment = documents[("Deployment", "keygate-control")]
    secret = documents[("Secret", "keygate-tokens")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KEYGATE_LISTEN"]["value"].endswith(":8081")
    for name in ("KEYGATE_ADMIN_TOKEN", "KEYGATE_SYNC_TOKEN"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_kubernetes_control_service_is_two_replicas_on_postgres():
    documents = istio_documents()
    deployment = documents[("Deployment", "keygate-control")]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    assert "volumes" not in pod, "the replicas keep nothing of their own"
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "KEYGATE_DB" not in env, "--db and --database-url conflict"
    ref = env["KEYGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    url = documents[("Secret", ref["name"])]["stringData"][ref["key"]]
    assert url.startswith("postgres://")
    budget = documents[("PodDisruptionBudget", "keygate-control")]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert ("PersistentVolumeClaim", "keygate-data") not in documents
    # The mesh's proxies leave a dead replica out at once.
    rule = documents[("DestinationRule", "keygate-control")]
    _, _, _, host = ISTIO_SERVICE_CLUSTER.split("|")
    assert rule["spec"]["host"] == host
    outlier = rule["spec"]["trafficPolicy"]["outlierDetection"]
    assert outlier["splitExternalLocalOriginErrors"] is True and outlier["consecutiveLocalOriginFailures"] == 1
    assert outlier["consecutive5xxErrors"] == 0 and outlier["maxEjectionPercent"] == 50


def test_kubernetes_replica_environment_serves_from_postgres(postgres_cluster, tmp_path):
    """The Deployment's environment (Secrets resolved) with the image's ENV makes working
    PostgreSQL replicas."""
    documents = istio_documents()
    (container,) = documents[("Deployment", "keygate-control")]["spec"]["template"]["spec"]["containers"]
    environment = {}
    for entry in container["env"]:
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            environment[entry["name"]] = documents[("Secret", ref["name"])]["stringData"][ref["key"]]
    assert container["args"] == ["serve"]
    assert_replica_environment_serves_from_postgres(environment, postgres_cluster, tmp_path)


def test_wasm_plugin_config_is_accepted_by_the_filter(tmp_path):
    config = json.loads(json.dumps(wasm_plugin()["spec"]["pluginConfig"]))
    config["control"]["cluster"] = "keygate_control"
    text = envoy_yaml(free_port(), free_port(), free_port(), free_port(), config, "/dev/null")
    config_path = tmp_path / "envoy.yaml"
    config_path.write_text(text)
    assert_envoy_validates(config_path)


def assert_envoy_validates(config_path):
    """`envoy --mode validate` accepts the config (the filter's own config parser included)."""
    result = subprocess.run(
        [str(ENVOY_BIN), "--mode", "validate", "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, KEYGATE_SYNC_TOKEN="validate-token"),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "OK" in output


# make oci

def read_blob(layout, descriptor):
    algorithm, digest = descriptor["digest"].split(":")
    assert algorithm == "sha256"
    data = (layout / "blobs/sha256" / digest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest, f"blob {digest} does not match its digest"
    assert len(data) == descriptor["size"]
    return data


def build_oci(out):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/oci_image.py"), "--wasm", str(WASM), "--out", str(out), "--tag", VERSION],
        check=True,
        capture_output=True,
        timeout=60,
    )
    index = json.loads((out / "index.json").read_text())
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}


def test_oci_compat_image_holds_plugin_wasm(tmp_path):
    layout = tmp_path / "keygate"
    manifests = build_oci(layout)
    manifest = json.loads(read_blob(layout, manifests[VERSION]))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    compressed = read_blob(layout, layer)
    raw = gzip.decompress(compressed)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.getnames() == ["plugin.wasm"]
        wasm = tar.extractfile("plugin.wasm").read()
    assert wasm == WASM.read_bytes()
    image_config = json.loads(read_blob(layout, manifest["config"]))
    assert image_config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(raw).hexdigest()}"]


def test_oci_spec_image_holds_the_raw_module(tmp_path):
    layout = tmp_path / "keygate"
    manifests = build_oci(layout)
    manifest = json.loads(read_blob(layout, manifests[f"{VERSION}-spec"]))
    assert manifest["config"]["mediaType"] == "application/vnd.module.wasm.config.v1+json"
    runtime_config = json.loads(read_blob(layout, manifest["config"]))
    assert runtime_config["config"]["root_ids"] == ["keygate"]
    # Istio's fetcher takes this variant only with exactly two layers.
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.module.wasm.config.v1+json",
        "application/vnd.module.wasm.content.layer.v1+wasm",
    ]
    assert read_blob(layout, manifest["layers"][1]) == WASM.read_bytes()


def test_oci_image_is_reproducible(tmp_path):
    first = build_oci(tmp_path / "a")
    second = build_oci(tmp_path / "b")
    assert [m["digest"] for m in first.values()] == [m["digest"] for m in second.values()]


def test_skopeo_reads_and_copies_the_oci_images(tmp_path):
    skopeo = require_tool("skopeo")
    layout = tmp_path / "keygate"
    manifests = build_oci(layout)
    inspect = subprocess.run(
        [skopeo, "inspect", f"oci:{layout}:{VERSION}"], capture_output=True, text=True, timeout=60
    )
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Digest"] == manifests[VERSION]["digest"]
    for tag in (VERSION, f"{VERSION}-spec"):
        # A copy re-reads and verifies every blob against its digest.
        copy = subprocess.run(
            [skopeo, "copy", "--quiet", f"oci:{layout}:{tag}", f"oci:{tmp_path / 'copy'}:{tag}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert copy.returncode == 0, copy.stderr


# make release

def test_release_artifacts_carry_their_sha256(tmp_path):
    out = tmp_path / "release"
    result = subprocess.run(
        [str(ROOT / "scripts/release.sh"), str(WASM), str(CONTROL_BIN), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name, source in (("keygate.wasm", WASM), ("keygate-control", CONTROL_BIN)):
        data = (out / name).read_bytes()
        assert data == source.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert (out / f"{name}.sha256").read_text() == f"{digest}  {name}\n"
        assert digest in result.stdout
    assert os.access(out / "keygate-control", os.X_OK)


def test_release_wasm_loads_from_code_remote_with_its_sha256(tmp_path):
    """docs/operations.md: Envoy downloads the release keygate.wasm (`code.remote`) and checks it
    against keygate.wasm.sha256; a wrong sha256 makes it refuse the module."""
    out = tmp_path / "release"
    subprocess.run([str(ROOT / "scripts/release.sh"), str(WASM), str(CONTROL_BIN), str(out)], check=True, capture_output=True)
    digest = (out / "keygate.wasm.sha256").read_text().split()[0]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(out), str(download_port := free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{download_port}/keygate.wasm.sha256", timeout=1).ok, what="download server")
        for sha256, loads in ((digest, True), (hashlib.sha256(b"another module").hexdigest(), False)):
            listener, admin = free_port(), free_port()
            text = envoy_yaml(listener, admin, free_port(), free_port(), plugin_config(), "/dev/null")
            local = f"local: {{ filename: {WASM} }}"
            assert local in text
            remote = (
                "remote:\n"
                "                      http_uri:\n"
                f"                        uri: http://127.0.0.1:{download_port}/keygate.wasm\n"
                "                        cluster: keygate_downloads\n"
                "                        timeout: 10s\n"
                f'                      sha256: "{sha256}"\n'
                "                      retry_policy: { num_retries: 3 }"
            )
            text = text.replace(local, remote) + (
                "  - name: keygate_downloads\n"
                "    type: STATIC\n"
                "    connect_timeout: 1s\n"
                "    load_assignment:\n"
                "      cluster_name: keygate_downloads\n"
                "      endpoints:\n"
                "      - lb_endpoints:\n"
                "        - endpoint:\n"
                f"            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {download_port} }} }}\n"
            )
            config_path = tmp_path / f"envoy-{loads}.yaml"
            config_path.write_text(text)
            log = tmp_path / f"envoy-{loads}.log"
            with open(log, "wb") as log_file:
                envoy = subprocess.Popen(
                    [str(ENVOY_BIN), "-c", str(config_path), "--base-id", str(free_port()), "--concurrency", "1"],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            try:
                if loads:
                    wait_until(lambda: requests.get(f"http://127.0.0.1:{admin}/ready", timeout=1).ok, timeout=60, what="Envoy ready")
                    # Loaded and running: no snapshot (nothing listens on the control port) is 503.
                    response = requests.get(f"http://127.0.0.1:{listener}/v1/models", timeout=5)
                    assert response.status_code == 503, response.text
                    assert response.json()["error"]["code"] == "AUTH_UNAVAILABLE"
                else:
                    # The download does not match: Envoy retries, gives up, and with `fail_open:
                    # false` refuses requests instead of passing them unchecked.
                    wait_until(lambda: "failed to load" in log.read_text(errors="replace"), timeout=60, what="Envoy to refuse the module")
                    wait_until(lambda: requests.get(f"http://127.0.0.1:{admin}/ready", timeout=1).ok, timeout=30, what="Envoy ready")
                    response = requests.get(f"http://127.0.0.1:{listener}/v1/models", timeout=5)
                    assert response.status_code >= 500, (response.status_code, response.text)
            finally:
                if envoy.poll() is None:
                    envoy.terminate()
                    envoy.wait(timeout=15)
    finally:
        server.terminate()
        server.wait(timeout=10)


@functools.cache
def exported_keygate_metrics():
    """The keygate_* series a running Envoy with the filter exports, by name. Read once per test
    run: docs/operations.md, the Grafana dashboard and the alert rules
    (test_operations_assets.py) are checked against it."""
    snapshots = SnapshotServer()
    envoy = Envoy(free_port(), snapshots.port, plugin_config())
    try:
        return frozenset(name.split("{")[0] for name in envoy.stats() if name.startswith("keygate_"))
    finally:
        envoy.close()
        snapshots.close()


def test_documented_metrics_are_exported_by_the_filter():
    """docs/operations.md's metrics table lists exactly the keygate_* series a running Envoy
    exports: nothing documented is missing, nothing exported is undocumented."""
    text = (ROOT / "docs/operations.md").read_text()
    start = text.index("## Metrics")
    table = text[start : text.index("\n### ", start)]
    documented = set(re.findall(r"^\| `(keygate_[a-z_]+)`", table, re.MULTILINE))
    assert len(documented) >= 16
    exported = exported_keygate_metrics()
    assert documented == exported, (sorted(documented - exported), sorted(exported - documented))
