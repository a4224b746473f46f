"""What operators run beside the filter, read as files: the Prometheus alert rules
(envoy/prometheus/keygate-rules.yaml, checked and unit-tested by promtool), the Grafana dashboard
(envoy/grafana/keygate.json) and the Envoy Gateway example (envoy/envoy-gateway/), whose
resources use only fields of Envoy Gateway's API. That every metric they read is one a real
Envoy with the filter exports, that a real Prometheus answers every dashboard query and evaluates
every rule, and that the real filter accepts the configuration Envoy Gateway hands it, is
tests/e2e/test_operations_with_envoy.py."""
import json
import re
import subprocess

import jsonschema
import pytest
import yaml

from keygate_testkit.monitoring import RULE_TESTS, RULES, all_panels, dashboard, promql_metrics, rules, variable_query
from keygate_testkit.paths import ROOT
from keygate_testkit.shipped import (
    ENVOY_GATEWAY,
    VERSION,
    bootstrap_clusters,
    envoy_gateway,
    extension_policy,
    keygate_wasm,
    require_tool,
    shipped_plugin_config,
)
from keygate_testkit.shipped import yaml_documents as documents

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


# PromQL: which metrics an expression reads (keygate_testkit.monitoring)

@pytest.mark.parametrize(
    "expr,expected",
    [
        ("keygate_snapshot_age_seconds > 120", {"keygate_snapshot_age_seconds"}),
        ('sum by (instance) (rate(a_total{job=~"$job", le="0.5"}[5m])) > 0.2 * b', {"a_total", "b"}),
        ("increase(x[10m]) > 0 and increase(y[5m]) + increase(z[5m]) == 0", {"x", "y", "z"}),
        ('max(v offset 5m) - min(v) > 1e3 unless on (instance) w', {"v", "w"}),
        ('sum(rate({__name__=~"keygate_requests_denied_.+"}[1m]))', {"keygate_requests_denied_unauthorized"}),
    ],
)
def test_promql_metric_names_are_read_correctly(expr, expected):
    assert promql_metrics(expr, {"keygate_requests_denied_unauthorized", "keygate_requests_allowed"}) == expected


# Alert rules

def test_rules_file_passes_promtool():
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_rules_fire_when_their_unit_tests_say():
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, timeout=60, cwd=RULE_TESTS.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_unit_tests_where_it_fires_and_where_it_stays_quiet():
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    alerts = {rule["alert"] for rule in rules()}
    assert firing == alerts, sorted(alerts - firing)
    assert quiet == alerts, sorted(alerts - quiet)


def test_rules_are_alerts_with_a_severity_and_a_summary():
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["alert"].startswith("Keygate"), rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        assert {"summary", "description"} <= set(rule["annotations"]), rule


def test_operations_md_describes_the_rules_in_the_file():
    """docs/operations.md's alert table names exactly the file's alerts, in its order, with their
    severity; the expressions live in the file only."""
    text = (ROOT / "docs/operations.md").read_text()
    start = text.index("### Alerts (Prometheus)")
    section = text[start : text.index("\n## ", start)]
    assert "](../envoy/prometheus/keygate-rules.yaml)" in section
    assert "](../envoy/grafana/keygate.json)" in text
    documented = re.findall(r"^\| `(Keygate\w+)` \| (\w+) \|", section, re.MULTILINE)
    assert documented == [(rule["alert"], rule["labels"]["severity"]) for rule in rules()]
    assert "expr:" not in section, "the rule expressions belong in envoy/prometheus/keygate-rules.yaml"


# Grafana dashboard

def test_dashboard_is_an_importable_grafana_dashboard():
    board = dashboard()
    # 39 is what Grafana 10.4 and 11 write; newer versions migrate it on load.
    assert board["schemaVersion"] == 39
    assert board["title"] == "Keygate"
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert board["id"] is None, "an exported dashboard carries no database id"
    assert isinstance(board["version"], int)

    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, variable in variables.items():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, name
            assert "label_values(" in variable_query(variable), name

    panels = list(all_panels(board["panels"]))
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), ids
    occupied = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and all(isinstance(v, int) for v in grid.values()), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']!r} overlaps {occupied[(x, y)]!r}"
                occupied[(x, y)] = panel["title"]
        assert panel["title"]
        if panel["type"] == "row":
            assert grid["w"] == 24 and grid["h"] == 1 and "targets" not in panel
            continue
        assert panel["type"] in ("stat", "timeseries"), panel["type"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, (panel["title"], target["refId"])
            assert target["expr"].strip(), (panel["title"], target["refId"])
    required = {entry["id"] for entry in board["__requires"]}
    assert {"grafana", "prometheus"} | {panel["type"] for panel in panels if panel["type"] != "row"} <= required


# Envoy Gateway

ANY = {}
STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}


def obj(*unchecked, required=(), **fields):
    """A JSON Schema object with exactly these fields: an unknown one (misspelt, or newer than the
    API) fails, as `kubectl apply --validate=strict` would. Fields named in `unchecked` exist in
    the API but the example does not use them, so nothing below them is spelt out."""
    properties = dict.fromkeys(unchecked, ANY) | fields
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def array(items):
    return {"type": "array", "items": items}


def enum(*values):
    return {"enum": list(values)}


def resource(api_version, kind, spec, namespaced=True):
    names = ("name", "namespace") if namespaced else ("name",)
    metadata = obj("labels", "annotations", name=STRING, namespace=STRING, required=names)
    return obj(
        apiVersion={"const": api_version},
        kind={"const": kind},
        metadata=metadata,
        spec=spec,
        required=("apiVersion", "kind", "metadata", "spec"),
    )


# The fields of Envoy Gateway v1.9's API (gateway.envoyproxy.io/v1alpha1, Gateway API v1) for
# the kinds the example uses, from Envoy Gateway's CRDs.
EG = "gateway.envoyproxy.io/v1alpha1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
POLICY_TARGETS = ("targetRef", "targetSelectors")
TARGET_REFS = array(obj("sectionName", group=STRING, kind=STRING, name=STRING, required=("group", "kind", "name")))
WASM_EXTENSION = obj(
    name=STRING,
    rootID=STRING,
    code=obj(
        type=enum("HTTP", "Image"),
        http=obj("tls", url=STRING, sha256=STRING, required=("url",)),
        image=obj(
            "tls",
            url=STRING,
            sha256=STRING,
            pullSecretRef=obj("group", "kind", "namespace", name=STRING, required=("name",)),
            required=("url",),
        ),
        pullPolicy=enum("IfNotPresent", "Always"),
        required=("type",),
    ),
    config={"type": "object"},
    failOpen=BOOLEAN,
    env=obj(hostKeys=array(STRING)),
    required=("code",),
)
ENVOY_CONTAINER = obj(
    "image", "imageRepository", "resources", "securityContext", "volumeMounts",
    env=array(obj(name=STRING, value=STRING, valueFrom=ANY, required=("name",))),
)
ENVOY_PROXY = obj(
    "backendTLS", "concurrency", "dynamicModules", "extraArgs", "filterOrder", "geoIP", "ipFamily", "logging",
    "luaValidation", "mergeBackends", "mergeGateways", "mergeType", "preserveRouteOrder", "routingType",
    "shutdown", "telemetry",
    provider=obj(
        "host",
        type=enum("Kubernetes", "Host"),
        kubernetes=obj(
            "envoyDaemonSet", "envoyHpa", "envoyPDB", "envoyService", "envoyServiceAccount",
            "useListenerPortAsContainerPort",
            envoyDeployment=obj("initContainers", "name", "patch", "pod", "replicas", "strategy", container=ENVOY_CONTAINER),
        ),
        required=("type",),
    ),
    bootstrap=obj("jsonPatches", type=enum("Merge", "Replace", "JSONPatch"), value=STRING),
)
CLIENT_TRAFFIC_POLICY = obj(
    *POLICY_TARGETS,
    "connection", "enableProxyProtocol", "grpc", "healthCheck", "http1", "http2", "http3", "proxyProtocol",
    "scheme", "tcpKeepalive", "timeout", "tls",
    targetRefs=TARGET_REFS,
    path=obj(
        escapedSlashesAction=enum("KeepUnchanged", "RejectRequest", "UnescapeAndForward", "UnescapeAndRedirect"),
        disableMergeSlashes=BOOLEAN,
    ),
    headers=obj(
        "disableRateLimitHeaders", "earlyRequestHeaders", "enableEnvoyHeaders", "host", "lateResponseHeaders",
        "preserveXRequestID", "withUnderscoresAction", "xForwardedClientCert",
        requestID=enum("PreserveOrGenerate", "Preserve", "Generate", "Disable"),
    ),
    clientIPDetection=obj(
        "customHeader", "directSourceIP",
        xForwardedFor=obj("trustedCIDRs", "disableXForwardedForAppend", numTrustedHops=INTEGER),
    ),
)
GATEWAY = obj(
    "addresses", "allowedListeners", "defaultScope", "tls",
    gatewayClassName=STRING,
    listeners=array(
        obj("hostname", "allowedRoutes", "tls", name=STRING, protocol=STRING, port=INTEGER, required=("name", "port", "protocol"))
    ),
    infrastructure=obj(
        "labels", "annotations",
        parametersRef=obj(group=STRING, kind=STRING, name=STRING, required=("group", "kind", "name")),
    ),
    required=("gatewayClassName", "listeners"),
)
HTTP_ROUTE = obj(
    "hostnames", "useDefaultGateways",
    parentRefs=array(obj("group", "kind", "namespace", "port", "sectionName", name=STRING, required=("name",))),
    rules=array(
        obj(
            "filters", "name", "retry", "sessionPersistence", "timeouts",
            matches=array(
                obj(
                    "headers", "method", "queryParams",
                    path=obj(type=enum("Exact", "PathPrefix", "RegularExpression"), value=STRING),
                )
            ),
            backendRefs=array(
                obj("filters", "group", "kind", "namespace", "weight", name=STRING, port=INTEGER, required=("name",))
            ),
        )
    ),
)
ENVOY_GATEWAY_SCHEMAS = {
    "EnvoyExtensionPolicy": resource(
        EG,
        "EnvoyExtensionPolicy",
        obj(
            *POLICY_TARGETS, "mergeType", "extProc", "lua", "dynamicModule",
            targetRefs=TARGET_REFS,
            wasm=array(WASM_EXTENSION),
        ),
    ),
    "EnvoyProxy": resource(EG, "EnvoyProxy", ENVOY_PROXY),
    "ClientTrafficPolicy": resource(EG, "ClientTrafficPolicy", CLIENT_TRAFFIC_POLICY),
    "GatewayClass": resource(
        GATEWAY_API,
        "GatewayClass",
        obj("description", "parametersRef", controllerName=STRING, required=("controllerName",)),
        namespaced=False,
    ),
    "Gateway": resource(GATEWAY_API, "Gateway", GATEWAY),
    "HTTPRoute": resource(GATEWAY_API, "HTTPRoute", HTTP_ROUTE),
}
CORE_KINDS = {"Namespace", "Secret", "Deployment", "PodDisruptionBudget", "Service"}


def test_envoy_gateway_resources_use_only_fields_of_its_api():
    found = envoy_gateway()
    kinds = {kind for kind, _ in found}
    expected = {"EnvoyExtensionPolicy", "EnvoyProxy", "Gateway", "GatewayClass", "HTTPRoute", "Deployment", "Service", "Secret"}
    assert expected <= kinds
    assert kinds <= set(ENVOY_GATEWAY_SCHEMAS) | CORE_KINDS, kinds
    for (kind, name), document in found.items():
        if kind in ENVOY_GATEWAY_SCHEMAS:
            try:
                jsonschema.validate(document, ENVOY_GATEWAY_SCHEMAS[kind])
            except jsonschema.ValidationError as error:
                raise AssertionError(f"{kind} {name}: {'.'.join(map(str, error.absolute_path))}: {error.message}") from None


def test_field_schemas_refuse_what_envoy_gateway_refuses():
    """The schemas above are strict: a misspelt field, a missing required one and a value
    outside an enum all fail."""
    policy = extension_policy()
    for path, change in [
        (("wasm", 0, "code", "image"), lambda image: image.update(digest="sha256:0")),
        (("wasm", 0), lambda wasm: wasm.update(rootId="keygate")),
        (("wasm", 0, "code"), lambda code: code.update(type="OCI")),
        (("wasm", 0, "code"), lambda code: code.pop("type")),
        (("targetRefs", 0), lambda ref: ref.pop("group")),
    ]:
        broken = json.loads(json.dumps(policy))
        node = broken["spec"]
        for step in path:
            node = node[step]
        change(node)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, ENVOY_GATEWAY_SCHEMAS["EnvoyExtensionPolicy"])


def test_envoy_gateway_policy_loads_the_oci_image_on_the_route():
    found = envoy_gateway()
    policy = extension_policy()
    namespace = policy["metadata"]["namespace"]
    for ref in policy["spec"]["targetRefs"]:
        assert ref["group"] == "gateway.networking.k8s.io"
        target = found[(ref["kind"], ref["name"])]
        assert target["metadata"]["namespace"] == namespace, "a policy applies to targets in its own namespace"
    wasm = keygate_wasm()
    code = wasm["code"]
    assert code["type"] == "Image" and "http" not in code
    # `make oci`'s compat image, pushed under the version it is built with.
    assert code["image"]["url"].endswith(f"/keygate:{VERSION}"), code["image"]["url"]
    assert not code["image"]["url"].startswith(("oci://", "http"))
    assert code["pullPolicy"] == "IfNotPresent"
    # The root id the OCI spec image declares (scripts/oci_image.py).
    assert wasm["rootID"] == "keygate"
    assert wasm["failOpen"] is False


def test_envoy_gateway_policy_config_is_the_shipped_filter_config():
    config = json.loads(json.dumps(keygate_wasm()["config"]))
    del config["control"]["authority"]
    shipped = shipped_plugin_config()
    # OAuth tokens are shipped for plain Envoy and Istio only (docs/security.md, "OAuth 2.0").
    shipped.pop("oauth")
    assert config == shipped


def test_envoy_gateway_envoys_reach_the_control_service():
    found = envoy_gateway()
    control = keygate_wasm()["config"]["control"]
    (gateway,) = [document for (kind, _), document in found.items() if kind == "Gateway"]
    gateway_class = found[("GatewayClass", gateway["spec"]["gatewayClassName"])]
    assert gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    parameters = gateway["spec"]["infrastructure"]["parametersRef"]
    assert (parameters["group"], parameters["kind"]) == ("gateway.envoyproxy.io", "EnvoyProxy")
    envoy_proxy = found[("EnvoyProxy", parameters["name"])]
    assert envoy_proxy["metadata"]["namespace"] == gateway["metadata"]["namespace"]
    cluster = bootstrap_clusters(envoy_proxy)[control["cluster"]]
    assert cluster["load_assignment"]["cluster_name"] == cluster["name"]
    (endpoint,) = [e["endpoint"] for group in cluster["load_assignment"]["endpoints"] for e in group["lb_endpoints"]]
    address = endpoint["address"]["socket_address"]
    service = found[("Service", "keygate-control")]
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert address["address"] == host and control["authority"] == host
    assert address["port_value"] in [port["port"] for port in service["spec"]["ports"]]
    route = found[("HTTPRoute", "api")]
    assert {ref["name"] for ref in route["spec"]["parentRefs"]} == {gateway["metadata"]["name"]}


def test_envoy_gateway_enrollment_token_reaches_the_filter_vm():
    """The token goes Secret → Envoy container environment (EnvoyProxy) → VM (`env.hostKeys`)
    → `control.enrollment_token_env`, and is the control service's enrollment token."""
    found = envoy_gateway()
    wasm = keygate_wasm()
    token_env = wasm["config"]["control"]["enrollment_token_env"]
    assert not {"token", "enrollment_token"} & set(wasm["config"]["control"]), "no token in the policy"
    assert token_env in wasm["env"]["hostKeys"]
    envoy_proxy = found[("EnvoyProxy", "keygate")]
    container = envoy_proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]
    container_env = {e["name"]: e for e in container["env"]}
    ref = container_env[token_env]["valueFrom"]["secretKeyRef"]
    proxy_secret = found[("Secret", ref["name"])]
    # Envoy Gateway runs the Envoys in its own namespace by default.
    assert proxy_secret["metadata"]["namespace"] == "envoy-gateway-system"
    assert set(proxy_secret["stringData"]) == {ref["key"]}, "the Envoys get the enrollment token only"
    (control,) = found[("Deployment", "keygate-control")]["spec"]["template"]["spec"]["containers"]
    control_env = {e["name"]: e for e in control["env"]}
    control_ref = control_env["KEYGATE_ENROLLMENT_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert control_env["KEYGATE_NO_SHARED_SYNC_TOKEN"]["value"] == "true"
    control_secret = found[("Secret", control_ref["name"])]
    assert proxy_secret["stringData"][ref["key"]] == control_secret["stringData"][control_ref["key"]]


def test_envoy_gateway_control_service_is_the_istio_one():
    found = envoy_gateway()
    istio = documents(ROOT / "envoy/istio")
    for key in [
        ("Secret", "keygate-tokens"),
        ("Secret", "keygate-database"),
        ("Deployment", "keygate-control"),
        ("PodDisruptionBudget", "keygate-control"),
        ("Service", "keygate-control"),
        ("Deployment", "keygate-redis"),
        ("Service", "keygate-redis"),
    ]:
        assert found[key] == istio[key], key
    assert found[("Namespace", "keygate")]["metadata"] == {"name": "keygate"}


def test_envoy_gateway_doc_links_every_file():
    text = (ROOT / "docs/envoy-gateway.md").read_text()
    for path in sorted(ENVOY_GATEWAY.glob("*.yaml")):
        assert f"](../envoy/envoy-gateway/{path.name})" in text, path.name
