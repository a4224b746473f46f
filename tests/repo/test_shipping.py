"""What we ship for installing Keygate, read as files: the compose files (checked by
docker-compose itself), the Envoy configurations they and `make run-ha` use, the control
service's Dockerfile, and the Istio resources. What of it runs (the image's environment, the
WasmPlugin's configuration in the real filter) is tests/e2e/test_shipping_runs.py."""
import json
import os
import tomllib

import yaml

from keygate_testkit.paths import ROOT
from keygate_testkit.shipped import compose_config, istio_documents, postgres_compose, shipped_plugin_config, wasm_plugin

ISTIO_SERVICE_CLUSTER = "outbound|8081||keygate-control.keygate.svc.cluster.local"


# docker-compose

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
    assert envoy["environment"]["KEYGATE_ENROLLMENT_TOKEN"] == "kge_dev-enrollment-token"
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
    services = compose_config({"KEYGATE_ADMIN_TOKEN": "a-admin", "KEYGATE_SYNC_TOKEN": "a-sync",
                               "KEYGATE_ENROLLMENT_TOKEN": "kge_a-enroll"})["services"]
    assert services["control"]["environment"]["KEYGATE_ADMIN_TOKEN"] == "a-admin"
    assert services["control"]["environment"]["KEYGATE_SYNC_TOKEN"] == "a-sync"
    # The Envoy enrolls for a credential of its own (docs/security.md, "Proxy identity").
    assert services["control"]["environment"]["KEYGATE_ENROLLMENT_TOKEN"] == "kge_a-enroll"
    assert services["envoy"]["environment"] == {"KEYGATE_ENROLLMENT_TOKEN": "kge_a-enroll"}
    assert services["envoy"]["command"][-2:] == ["--service-node", "envoy"]


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


def keygate_filter_of(path):
    """The keygate HTTP filter of a shipped Envoy YAML, and everything else of the file."""
    (config,) = yaml.safe_load_all((ROOT / path).read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (keygate,) = [f for f in hcm["http_filters"] if f["name"] == "keygate"]
    hcm["http_filters"] = [f if f["name"] != "keygate" else "keygate" for f in hcm["http_filters"]]
    return keygate, config


def test_envoy_native_yaml_is_envoy_yaml_with_the_module():
    """envoy-native.yaml differs from envoy.yaml only in how the filter is loaded (the dynamic
    module), the plugin configuration's control.url, and the runtime flag that names the
    module's stats as the Wasm build's in Prometheus (docs/native.md)."""
    wasm_filter, wasm_rest = keygate_filter_of("envoy/envoy.yaml")
    native_filter, native_rest = keygate_filter_of("envoy/envoy-native.yaml")
    runtime = native_rest.pop("layered_runtime")
    assert runtime["layers"][0]["static_layer"] == {
        "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": True}
    assert native_rest == wasm_rest
    module = native_filter["typed_config"]
    assert module["@type"].endswith("DynamicModuleFilter")
    assert module["dynamic_module_config"] == {"name": "keygate", "do_not_close": True}
    native_plugin = json.loads(module["filter_config"]["value"])
    wasm_plugin_config = json.loads(wasm_filter["typed_config"]["config"]["configuration"]["value"])
    assert native_plugin["control"].pop("url") == "http://127.0.0.1:8081"
    assert native_plugin == wasm_plugin_config


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
    # TLS to the replicas, with the CA scripts/dev-pki.sh makes and the name its certificate carries.
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("UpstreamTlsContext")
    assert tls["sni"] == "control.keygate.test"
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": ".run/ha/pki/ca.pem"}
    assert validation["match_typed_subject_alt_names"] == [{"san_type": "DNS", "matcher": {"exact": "control.keygate.test"}}]


def test_postgres_compose_file_validates_with_two_replicas_on_one_database():
    config = postgres_compose()
    services = config["services"]
    assert set(services) == {"envoy", "control-1", "control-2", "postgres", "redis", "upstream", "pki"}
    # The replicas share their fleet counts through the compose file's Redis, once it answers.
    for name in ("control-1", "control-2"):
        assert services[name]["environment"]["KEYGATE_REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in services["redis"], "Redis is not published"

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
        assert environment["KEYGATE_ENROLLMENT_TOKEN"] == "kge_dev-enrollment-token"
        assert control["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert control["depends_on"]["pki"]["condition"] == "service_completed_successfully"
        check = control["healthcheck"]["test"]
        assert "https://localhost:8081" in check and "/etc/keygate/tls/ca.pem" in check
        assert environment["KEYGATE_TLS_CERT"] == "/etc/keygate/tls/control.pem"
        assert environment["KEYGATE_TLS_KEY"] == "/etc/keygate/tls/control.key"
        assert mounts(control) == {("keygate-pki", "/etc/keygate/tls", True)}, "a replica keeps nothing of its own"
        published[name] = published_ports(control)
    assert published == {"control-1": {"127.0.0.1:8081:8081"}, "control-2": {"127.0.0.1:8091:8081"}}

    envoy = services["envoy"]
    assert envoy["image"] == compose_config()["services"]["envoy"]["image"], "the same Envoy as docker-compose.yaml"
    assert published_ports(envoy) == {"127.0.0.1:10000:10000", "127.0.0.1:9901:9901"}
    assert mounts(envoy) == {
        (str(ROOT / "envoy/envoy-compose-postgres.yaml"), "/etc/envoy/envoy.yaml", True),
        (str(ROOT / "target/wasm32-wasip1/release/keygate.wasm"), "/etc/envoy/keygate.wasm", True),
        ("keygate-pki", "/etc/keygate/tls", True),
    }
    pki = services["pki"]
    assert pki["command"] == ["sh", "/scripts/dev-pki.sh", "/tls"]
    assert mounts(pki) == {(str(ROOT / "scripts/dev-pki.sh"), "/scripts/dev-pki.sh", True), ("keygate-pki", "/tls", False)}
    assert "keygate-pki" in config["volumes"]
    assert envoy["depends_on"]["control-1"]["condition"] == envoy["depends_on"]["control-2"]["condition"] == "service_healthy"
    assert services["upstream"] == compose_config()["services"]["upstream"]


def test_postgres_compose_secrets_come_from_the_environment():
    services = postgres_compose(
        {"KEYGATE_ADMIN_TOKEN": "a-admin", "KEYGATE_ENROLLMENT_TOKEN": "kge_a-enroll",
         "KEYGATE_POSTGRES_PASSWORD": "a-password"}
    )["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "a-password"
    for name in ("control-1", "control-2"):
        environment = services[name]["environment"]
        assert environment["KEYGATE_DATABASE_URL"] == "postgres://keygate:a-password@postgres:5432/keygate"
        assert environment["KEYGATE_ADMIN_TOKEN"] == "a-admin"
        # A multi-host deployment: proxies enroll, the shared sync token is refused.
        assert environment["KEYGATE_ENROLLMENT_TOKEN"] == "kge_a-enroll"
        assert environment["KEYGATE_NO_SHARED_SYNC_TOKEN"] == "true" and "KEYGATE_SYNC_TOKEN" not in environment
    assert services["envoy"]["environment"] == {"KEYGATE_ENROLLMENT_TOKEN": "kge_a-enroll"}


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
        ("trusted_ca: { filename: .run/ha/pki/ca.pem }", "trusted_ca: { filename: /etc/keygate/tls/ca.pem }"),
    ]:
        assert old in expected, f"envoy/envoy-ha.yaml no longer contains {old!r}"
        expected = expected.replace(old, new)
    assert envoy_body("envoy/envoy-compose-postgres.yaml") == expected


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
    assert {"name": "KEYGATE_ENROLLMENT_TOKEN", "valueFrom": "HOST"} in spec["vmConfig"]["env"]
    config = spec["pluginConfig"]
    assert config["control"]["cluster"] == ISTIO_SERVICE_CLUSTER
    assert config["control"]["enrollment_token_env"] == "KEYGATE_ENROLLMENT_TOKEN"


def test_wasm_plugin_config_is_the_shipped_filter_config():
    config = json.loads(json.dumps(wasm_plugin()["spec"]["pluginConfig"]))
    config["control"]["cluster"] = "keygate_control"
    del config["control"]["authority"]
    shipped = shipped_plugin_config()
    # OAuth tokens are opt-in under Istio (envoy/istio/oauth.yaml, docs/istio.md): they need the
    # AUTHZ phase after Istio's jwt_authn, which names its metadata `payload`.
    shipped_oauth = shipped.pop("oauth")
    assert config == shipped
    assert shipped_oauth["payload_in_metadata"] == "keygate"


def test_istio_oauth_recipe_matches_the_shipped_issuer_and_the_control_service():
    authentication = istio_documents()[("RequestAuthentication", "keygate-oauth")]
    (rule,) = authentication["spec"]["jwtRules"]
    assert rule["jwksUri"] == "http://keygate-control.keygate.svc.cluster.local:8081/.well-known/jwks.json"
    assert rule.get("forwardOriginalToken", False) is False, "the token must stay at the edge"
    assert rule["audiences"] == [rule["issuer"]]
    doc = (ROOT / "docs/istio.md").read_text()
    assert '"payload_in_metadata": "payload"' in doc and "phase: AUTHZ" in doc
    assert rule["issuer"] in doc


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
    for name in ("KEYGATE_ADMIN_TOKEN", "KEYGATE_ENROLLMENT_TOKEN"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    # A mesh: every proxy enrolls, the shared sync token is refused.
    assert env["KEYGATE_NO_SHARED_SYNC_TOKEN"]["value"] == "true" and "KEYGATE_SYNC_TOKEN" not in env
    assert secret["stringData"]["enrollment-token"].startswith("kge_")


def test_kubernetes_control_service_is_two_replicas_on_postgres():
    documents = istio_documents()
    deployment = documents[("Deployment", "keygate-control")]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    # The replicas keep nothing of their own: the one volume is their TLS certificate's Secret.
    assert pod["volumes"] == [{"name": "tls", "secret": {"secretName": "keygate-control-tls"}}]
    (container,) = pod["containers"]
    tls_env = {e["name"]: e.get("value") for e in container["env"]}
    assert tls_env["KEYGATE_TLS_CERT"] == "/etc/keygate/tls/tls.crt" and tls_env["KEYGATE_TLS_KEY"] == "/etc/keygate/tls/tls.key"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
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
    # TLS from the gateway to the replicas, checking the service's name (SAN) against its CA.
    tls = rule["spec"]["trafficPolicy"]["tls"]
    assert tls["mode"] == "SIMPLE" and tls["credentialName"] == "keygate-control-ca"
    assert tls["sni"] == host and tls["subjectAltNames"] == [host]
