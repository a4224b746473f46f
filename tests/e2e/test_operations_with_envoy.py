"""What operators run beside the filter, against a real Envoy with the filter: every metric the
Grafana dashboard (envoy/grafana/keygate.json) and the Prometheus alert rules
(envoy/prometheus/keygate-rules.yaml) read is one it exports; a real Prometheus scraping it
answers every dashboard query and evaluates every rule; and the filter configuration the Envoy
Gateway example (envoy/envoy-gateway/) hands to Envoy is accepted by the real filter. The files
alone are checked in tests/repo/test_operations_assets.py."""
import json
import subprocess

import pytest
import requests
import yaml

from keygate_testkit.envoy import Envoy, envoy_yaml, plugin_config
from keygate_testkit.envoy import assert_validates as assert_envoy_validates
from keygate_testkit.monitoring import (
    RULES,
    dashboard_queries,
    dashboard_variables,
    fill_grafana_variables,
    promql_metrics,
    query_panels,
    rules,
)
from keygate_testkit.paths import WASM
from keygate_testkit.tls import TestCA
from keygate_testkit.ports import free_port
from keygate_testkit.shipped import bootstrap_clusters, envoy_gateway, extension_policy, keygate_wasm, require_tool
from keygate_testkit.snapshot_server import SnapshotServer, key_record
from keygate_testkit.waiting import wait_until


# What the dashboard and the rules read

def test_rules_read_only_metrics_envoy_exports(exported_keygate_metrics, exported_control_metrics):
    """The `keygate` group reads an Envoy's series, the `keygate-control` group a control
    service's."""
    assert any(name.startswith("keygate_control_proxy") for name in exported_control_metrics)
    for rule in rules():
        exported = exported_control_metrics if "keygate_control_" in rule["expr"] else exported_keygate_metrics
        read = promql_metrics(rule["expr"], exported)
        assert read, rule
        assert read <= exported, (rule["alert"], sorted(read - exported))


def test_dashboard_queries_read_only_metrics_envoy_exports(exported_keygate_metrics):
    exported = exported_keygate_metrics
    variables = dashboard_variables()
    read = set()
    for where, expr in dashboard_queries():
        fill_grafana_variables(expr, variables)
        metrics = promql_metrics(expr, exported)
        assert metrics, where
        assert metrics <= exported, (where, sorted(metrics - exported))
        read |= metrics
    denied = {name for name in exported if name.startswith("keygate_requests_denied_")}
    assert len(denied) >= 10
    wanted = denied | {
        "keygate_requests_allowed",
        "keygate_requests_fail_open",
        "keygate_snapshot_age_seconds",
        "keygate_snapshot_version",
        "keygate_keys_loaded",
        "keygate_snapshot_refresh_failed",
        "keygate_snapshot_rejected",
        "keygate_snapshot_records_quarantined",
        "keygate_usage_reports_failed",
        "keygate_usage_reports_dropped",
        "keygate_ratelimit_uncounted",
    }
    assert wanted <= read, sorted(wanted - read)


def test_dashboard_shows_every_deny_code(exported_keygate_metrics):
    """The "Denied by code" panel has one series per code Envoy exports a counter for."""
    exported = exported_keygate_metrics
    (panel,) = [panel for panel in query_panels() if panel["title"] == "Denied by code"]
    shown = {}
    for target in panel["targets"]:
        (metric,) = promql_metrics(target["expr"], exported)
        shown[metric] = target["legendFormat"]
    denied = {name for name in exported if name.startswith("keygate_requests_denied_")}
    assert set(shown) == denied
    for metric, legend in shown.items():
        assert metric == "keygate_requests_denied_" + legend.lower()


# A real Prometheus over a real Envoy

class Prometheus:
    """Prometheus scraping one Envoy's /stats/prometheus every second and evaluating the rules."""

    def __init__(self, directory, envoy_admin_port):
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "envoy",
                    "metrics_path": "/stats/prometheus",
                    "static_configs": [{"targets": [f"127.0.0.1:{envoy_admin_port}"]}],
                }
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(directory / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [
                require_tool("prometheus"),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = directory / "prometheus.log"
        try:
            wait_until(self._ready, timeout=60, what="Prometheus /-/ready")
        except AssertionError:
            self.close()
            raise AssertionError(f"Prometheus did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"Prometheus exited with {self.proc.returncode}")
        return requests.get(self.url("/-/ready"), timeout=1).ok

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def api(self, path, **params):
        response = requests.get(self.url(f"/api/v1/{path}"), params=params, timeout=10)
        body = response.json()
        assert response.ok and body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A real Prometheus scraping a real Envoy whose filter has applied a one-key snapshot."""
    require_tool("prometheus")
    snapshots = SnapshotServer()
    snapshots.publish([key_record("pk_live_operationsassets0000000001", "key_ops")])
    envoy = Envoy(free_port(), snapshots.port, plugin_config())
    server = None
    try:
        server = Prometheus(tmp_path_factory.mktemp("prometheus"), envoy.admin_port)
        wait_until(lambda: envoy.stat("keygate_keys_loaded") == 1, what="the snapshot in Envoy")
        wait_until(
            lambda: server.query(
                "min_over_time(keygate_keys_loaded[10s]) == 1 and count_over_time(keygate_keys_loaded[10s]) >= 3"
            ),
            timeout=30,
            what="three scrapes of the loaded snapshot",
        )
        # Healthy means the fleet sync works too: the rules look at its counters.
        wait_until(
            lambda: server.query("keygate_ratelimit_sync_ok > 0 and keygate_ratelimit_sync_failed == 0"),
            timeout=30,
            what="a scraped successful fleet sync",
        )
        yield server
    finally:
        if server is not None:
            server.close()
        envoy.close()
        snapshots.close()


def test_prometheus_answers_every_dashboard_query(prometheus):
    variables = dashboard_variables()
    empty = []
    for where, expr in dashboard_queries():
        if not prometheus.query(fill_grafana_variables(expr, variables)):
            empty.append((where, expr))
    assert not empty, empty


def test_prometheus_evaluates_every_rule_and_none_fires_on_a_healthy_proxy(prometheus):
    def evaluated():
        loaded = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        return loaded if loaded and all(rule["health"] != "unknown" for rule in loaded) else None

    loaded = wait_until(evaluated, timeout=30, what="Prometheus to evaluate every rule")
    assert [rule["name"] for rule in loaded] == [rule["alert"] for rule in rules()]
    for rule in loaded:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    assert prometheus.api("alerts")["alerts"] == []


# Envoy Gateway

def test_envoy_gateway_plugin_config_is_accepted_by_the_filter(tmp_path):
    """The filter configuration as Envoy Gateway hands it to Envoy (its wasm translation: one VM
    per policy, the policy's root id, `hostKeys` as host_env_keys, `config` as JSON), with the
    EnvoyProxy's bootstrap cluster, passes the real filter in the real Envoy
    (`envoy --mode validate`)."""
    policy = extension_policy()
    wasm = keygate_wasm()
    config = yaml.safe_load(envoy_yaml(free_port(), free_port(), free_port(), free_port(), plugin_config(), "/dev/null"))
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    keygate = next(f for f in manager["http_filters"] if f["name"] == "keygate")["typed_config"]["config"]
    keygate["name"] = wasm["name"]
    keygate["root_id"] = wasm["rootID"]
    keygate["fail_open"] = wasm["failOpen"]
    metadata = policy["metadata"]
    keygate["vm_config"]["vm_id"] = f"envoyextensionpolicy/{metadata['namespace']}/{metadata['name']}/wasm/0"
    keygate["vm_config"]["environment_variables"] = {"host_env_keys": wasm["env"]["hostKeys"]}
    keygate["configuration"]["value"] = json.dumps(wasm["config"])
    assert keygate["vm_config"]["code"]["local"]["filename"] == str(WASM)
    clusters = bootstrap_clusters(envoy_gateway()[("EnvoyProxy", "keygate")])
    # The control service's CA is a Secret mounted in the Envoys; a CA made now stands in for it.
    validation = clusters["keygate_control"]["transport_socket"]["typed_config"]["common_tls_context"][
        "validation_context"]
    assert validation["trusted_ca"] == {"filename": "/etc/keygate/control-ca/ca.crt"}
    validation["trusted_ca"] = {"filename": str(TestCA(tmp_path / "pki").path)}
    config["static_resources"]["clusters"] = [
        clusters.get(cluster["name"], cluster) for cluster in config["static_resources"]["clusters"]
    ]
    assert wasm["config"]["control"]["cluster"] in [c["name"] for c in config["static_resources"]["clusters"]]
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    assert_envoy_validates(path)
