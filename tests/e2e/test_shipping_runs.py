"""What we ship for installing Keygate, run: the control service's image environment (with the
compose and Kubernetes replica settings) serving from PostgreSQL or its SQLite volume, the Istio
WasmPlugin's configuration accepted by the real filter in the real Envoy, the release
keygate.wasm loaded by Envoy through `code.remote`, and the metric names in docs/operations.md
against what the filter exports. The files alone are checked in tests/repo/test_shipping.py and
tests/repo/test_artifacts.py."""
import hashlib
import json
import os
import re
import subprocess
import sys

import requests

from keygate_testkit.envoy import assert_validates as assert_envoy_validates
from keygate_testkit.envoy import envoy_yaml, plugin_config
from keygate_testkit.paths import CONTROL_BIN, ENVOY_BIN, ROOT, WASM
from keygate_testkit.ports import free_port
from keygate_testkit.shipped import istio_documents, postgres_compose, wasm_plugin
from keygate_testkit.tls import TestCA
from keygate_testkit.waiting import wait_until


# The control service's image

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


def start_control_like_the_image(container_env, tmp_path, verify=True):
    """keygate-control serve (the image's ENTRYPOINT and CMD) with the image's ENV under
    `container_env`, on a loopback port; returns the process and its URL once /healthz answers
    (over HTTPS, checked with `verify`, when the environment names a certificate)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_")}
    env.update(image_environment())
    env.update(container_env)
    env["KEYGATE_LISTEN"] = f"127.0.0.1:{port}"
    log = open(tmp_path / "control.log", "wb")
    process = subprocess.Popen([str(CONTROL_BIN), "serve"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    scheme = "https" if "KEYGATE_TLS_CERT" in container_env else "http"
    url = f"{scheme}://127.0.0.1:{port}"

    def healthy():
        assert process.poll() is None, (tmp_path / "control.log").read_text()
        return requests.get(f"{url}/healthz", timeout=1, verify=verify).ok

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
    verify = True
    if "KEYGATE_TLS_CERT" in container_env:
        # The shipped paths are the container's; a certificate made now stands in at the same names.
        ca = TestCA(tmp_path / "pki")
        issued = ca.issue("replica")
        assert container_env["KEYGATE_TLS_KEY"]
        container_env.update(KEYGATE_TLS_CERT=str(issued.cert), KEYGATE_TLS_KEY=str(issued.key))
        verify = str(ca.path)
    started = []
    try:
        for n in range(2):
            folder = tmp_path / f"replica-{n}"
            folder.mkdir()
            started.append(start_control_like_the_image(container_env, folder, verify))
        admin = {"Authorization": f"Bearer {container_env['KEYGATE_ADMIN_TOKEN']}"}
        created = requests.post(f"{started[0][1]}/v1/keys", headers=admin, json={"name": "shipped"}, timeout=10,
                                verify=verify)
        assert created.status_code == 201, created.status_code
        found = requests.get(f"{started[1][1]}/v1/keys/{created.json()['id']}", headers=admin, timeout=10,
                             verify=verify)
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


# Istio

def test_wasm_plugin_config_is_accepted_by_the_filter(tmp_path):
    config = json.loads(json.dumps(wasm_plugin()["spec"]["pluginConfig"]))
    config["control"]["cluster"] = "keygate_control"
    text = envoy_yaml(free_port(), free_port(), free_port(), free_port(), config, "/dev/null")
    config_path = tmp_path / "envoy.yaml"
    config_path.write_text(text)
    assert_envoy_validates(config_path)


# make release

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


# docs/operations.md

def test_documented_metrics_are_exported_by_the_filter(exported_keygate_metrics):
    """docs/operations.md's metrics table lists exactly the keygate_* series a running Envoy
    exports: nothing documented is missing, nothing exported is undocumented."""
    text = (ROOT / "docs/operations.md").read_text()
    start = text.index("## Metrics")
    table = text[start : text.index("\n### ", start)]
    documented = set(re.findall(r"^\| `(keygate_[a-z_]+)`", table, re.MULTILINE))
    assert len(documented) >= 16
    exported = exported_keygate_metrics
    assert documented == exported, (sorted(documented - exported), sorted(exported - documented))
