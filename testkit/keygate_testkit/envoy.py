"""A real Envoy on loopback: `EnvoyProcess` runs any bootstrap configuration, `Envoy` the
shipped envoy/envoy.yaml with the Keygate filter on test ports. `plugin_config` is the shipped
filter configuration with fast refreshes; `envoy_yaml` puts one into envoy/envoy.yaml."""
import json
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from .paths import BUILD, ENVOY_BIN, NATIVE_DIR, ROOT, SYNC_TOKEN, WASM
from .ports import free_port
from .processes import rss_mb, start, stop
from .waiting import wait_until

CONTROL_CLUSTER_START = "  - name: keygate_control\n"
# envoy/envoy-ha.yaml's TLS settings of the keygate_control cluster: from the comment that
# opens them to the load assignment, and the development CA they trust.
CONTROL_TLS_START = "    # The replicas serve HTTPS"
CONTROL_TLS_END = "    load_assignment:\n      cluster_name: keygate_control\n"
SHIPPED_CONTROL_CA = "trusted_ca: { filename: .run/ha/pki/ca.pem }"
REPLICA_ENDPOINT = """        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: %d }
"""


def plugin_config(**overrides):
    """The shipped plugin configuration, with fast refreshes for tests."""
    config = {
        "control": {
            "cluster": "keygate_control",
            "token": SYNC_TOKEN,
            "refresh_interval": "1s",
            "timeout": "1s",
        },
        "fail_mode": "closed",
        "max_staleness": "5m",
        "key_header": "x-api-key",
        "oauth": {"payload_in_metadata": "keygate", "issuer": "http://127.0.0.1:10000"},
        "routes": [
            {"methods": ["POST"], "exact": "/v1/jobs", "scope": "submit_job"},
            {"methods": ["GET"], "template": "/v1/jobs/{id}", "scope": "check_status"},
            {"methods": ["GET"], "exact": "/v1/models", "scope": "list_models"},
        ],
    }
    for name, value in overrides.items():
        if name == "control":
            config["control"].update(value)
        else:
            config[name] = value
    return config


# The shipped Envoy configuration of each build.
SHIPPED_CONFIG = {"wasm": "envoy/envoy.yaml", "native": "envoy/envoy-native.yaml"}


def native_plugin_config(config, control_port):
    """`config` for the native build: its background thread calls the control service itself,
    at `control.url` (every replica's, when several are given: it fails over between them)."""
    ports = control_port if isinstance(control_port, (list, tuple)) else [control_port]
    native = json.loads(json.dumps(config))
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    native["control"].setdefault("url", urls[0] if len(urls) == 1 else urls)
    return native


def replicated_control_cluster(control_ports, control_ca=None):
    """envoy/envoy-ha.yaml's keygate_control cluster (health-checked replicas) with one
    endpoint per port in `control_ports`. With `control_ca` (a CA's PEM file) it keeps the
    shipped TLS to the replicas, trusting that CA and checking the shipped SAN; without, the
    replicas are plain HTTP and the TLS settings are left out."""
    text = (ROOT / "envoy/envoy-ha.yaml").read_text()
    cluster = text[text.index(CONTROL_CLUSTER_START) :]
    shipped = REPLICA_ENDPOINT % 8081 + REPLICA_ENDPOINT % 8091
    assert cluster.endswith(shipped), "envoy/envoy-ha.yaml's keygate_control cluster no longer ends with its two replicas"
    assert CONTROL_TLS_START in cluster and SHIPPED_CONTROL_CA in cluster, "envoy/envoy-ha.yaml's control TLS changed"
    if control_ca is None:
        cluster = cluster[: cluster.index(CONTROL_TLS_START)] + cluster[cluster.index(CONTROL_TLS_END) :]
    else:
        cluster = cluster.replace(SHIPPED_CONTROL_CA, f"trusted_ca: {{ filename: {control_ca} }}")
    return cluster[: -len(shipped)] + "".join(REPLICA_ENDPOINT % port for port in control_ports)


def envoy_yaml(listener_port, admin_port, upstream_port, control_port, config, access_log, ipv6_port=None,
               control_ca=None, build=None):
    """The shipped envoy/envoy.yaml with test ports, the test plugin config and a file
    access log. `control_port` is one port, or a list of control-service replicas' ports: then
    the keygate_control cluster is envoy/envoy-ha.yaml's, listing them all, over TLS trusting
    `control_ca` when given (replicated_control_cluster)."""
    build = build or BUILD
    text = (ROOT / SHIPPED_CONFIG[build]).read_text()
    if build == "native":
        config = native_plugin_config(config, control_port)
    if isinstance(control_port, (list, tuple)):
        assert text.endswith(text[text.index(CONTROL_CLUSTER_START) :]) and text.count(CONTROL_CLUSTER_START) == 1
        text = text[: text.index(CONTROL_CLUSTER_START)] + replicated_control_cluster(control_port, control_ca)
        control_port = None
    else:
        assert control_ca is None, "TLS to the control service is envoy-ha.yaml's: give the port as a list"
    replacements = {
        "port_value: 10000": f"port_value: {listener_port}",
        "port_value: 9901": f"port_value: {admin_port}",
        "port_value: 8082": f"port_value: {upstream_port}",
    }
    if build == "wasm":
        replacements["filename: target/wasm32-wasip1/release/keygate.wasm"] = f"filename: {WASM}"
    if control_port is not None:
        replacements["port_value: 8081"] = f"port_value: {control_port}"
    for old, new in replacements.items():
        assert old in text, f"envoy/envoy.yaml no longer contains {old!r}"
        text = text.replace(old, new)
    value_line = "                value: |\n" if build == "native" else "                  value: |\n"
    start_at = text.index(value_line, text.index("          - name: keygate\n")) + len(value_line)
    end = text.index("          - name: envoy.filters.http.router")
    body = "\n".join("                    " + line for line in json.dumps(config, indent=2).splitlines())
    text = text[:start_at] + body + "\n" + text[end:]
    text = text.replace(
        "- name: envoy.access_loggers.stdout\n"
        "            typed_config:\n"
        '              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n',
        "- name: envoy.access_loggers.file\n"
        "            typed_config:\n"
        '              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n'
        f"              path: {access_log}\n",
    )
    if ipv6_port:
        listener_start = text.index("  - name: api\n")
        listener_end = text.index("  clusters:\n")
        listener = text[listener_start:listener_end]
        v6 = listener.replace("- name: api\n", "- name: api_v6\n", 1).replace(
            f"address: 127.0.0.1, port_value: {listener_port}", f'address: "::1", port_value: {ipv6_port}'
        )
        text = text[:listener_end] + v6 + text[listener_end:]
    return text


def validate(config_path, cwd=None):
    """`envoy --mode validate` of the file at `config_path` (the filter's own configuration
    parser included); the finished process."""
    return subprocess.run(
        [str(ENVOY_BIN), "--mode", "validate", "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=dict(os.environ, KEYGATE_SYNC_TOKEN="validate-token", KEYGATE_ENROLLMENT_TOKEN="kge_validate-token",
                 ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(NATIVE_DIR)),
    )


def assert_validates(config_path):
    """`envoy --mode validate` accepts the config (the filter's own config parser included)."""
    result = validate(config_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "OK" in output


class EnvoyProcess:
    """An Envoy running `bootstrap` (the configuration's text; `config_name` says YAML or JSON)
    whose listener is `port` and admin `admin_port`, returned once /ready answers. Its files
    (configuration, log) are in `directory`, a new temporary folder by default."""

    def __init__(self, bootstrap, port, admin_port, *, concurrency=2, log_level="info", directory=None,
                 config_name="envoy.yaml", env=None, binary=None, extra_args=(), ready_timeout=60):
        self.port = port
        self.admin_port = admin_port
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="keygate-envoy-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / config_name
        self.config_path.write_text(bootstrap)
        self.log_path = self.dir / "envoy.log"
        argv = [binary or ENVOY_BIN, "-c", self.config_path, "--concurrency", concurrency,
                "--base-id", random.randint(1000, 60000), "--log-level", log_level, *extra_args]
        self.started = time.monotonic()
        self.proc = start(argv, self.log_path, env=env)
        try:
            wait_until(self._ready, timeout=ready_timeout, interval=0.05, what="Envoy /ready",
                       retry_on=(requests.RequestException,))
        except AssertionError as error:
            self.close()
            raise AssertionError(f"Envoy did not start ({error}):\n{self.logs()[-4000:]}") from None
        self.ready_s = time.monotonic() - self.started

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"Envoy exited with {self.proc.returncode}")
        return requests.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1).status_code == 200

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path, key=None, headers=None, method="GET", timeout=10, **kwargs):
        """A request to the listener, with `key` as a bearer token when given."""
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        return requests.request(method, self.url(path), headers=all_headers, timeout=timeout, **kwargs)

    def stats(self):
        """Every series of /stats/prometheus: {"name{labels}": value}."""
        text = requests.get(f"http://127.0.0.1:{self.admin_port}/stats/prometheus", timeout=5).text
        values = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
        return values

    def stat(self, suffix):
        """Value of the prometheus series whose name ends with `suffix` (0 when absent)."""
        return sum(v for name, v in self.stats().items() if name.split("{")[0].endswith(suffix))

    def native_stats(self, filter_regex):
        """Envoy's own stats matching `filter_regex`, by their own names
        (`wasmcustom.keygate_keys_loaded`, `cluster.keygate_control.upstream_cx_rx_bytes_total`)."""
        response = requests.get(f"http://127.0.0.1:{self.admin_port}/stats",
                                params={"format": "json", "filter": filter_regex}, timeout=5)
        return {s["name"]: s.get("value", 0) for s in response.json().get("stats", []) if "value" in s}

    def native_stat(self, name):
        """The value of Envoy's own stat `name` (0 when absent)."""
        return self.native_stats(f"^{name}$").get(name, 0)

    def rss_mb(self):
        return rss_mb(self.proc.pid)

    def wait_for_status(self, path, key, status, timeout=15.0, headers=None):
        def answered():
            response = self.get(path, key, headers=headers)
            # A list, because a 4xx Response object is falsy.
            return [response] if response.status_code == status else None

        return wait_until(answered, timeout=timeout, what=f"{path} to answer {status}")[0]

    def wait_for_error(self, path, key, status, code, timeout=5.0):
        """Waits until every worker answers `key` with `status` and error `code`: ten answers in
        a row. After a new *full* snapshot a worker may serve the store view it read last for up
        to 100 ms (src/request.rs, VIEW_TTL_MS), so one worker's answer is not yet all of them."""

        def settled():
            for _ in range(10):
                response = self.get(path, key)
                if response.status_code != status or response.json()["error"]["code"] != code:
                    return None
            return [response]

        return wait_until(settled, timeout=timeout, what=f"every worker to answer {path} {status} {code}")[0]

    def logs(self):
        return self.log_path.read_text(errors="replace")

    def close(self):
        stop(self.proc)


GRPC_CLUSTER = """\
  - name: grpc_upstream
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: grpc_upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"""


class Envoy(EnvoyProcess):
    """A real Envoy with the Keygate filter: the shipped envoy/envoy.yaml on free ports, routing
    to the upstream at `upstream_port`, its keygate_control cluster at `control_port` (or at
    each port of a list: replicas, over TLS trusting the CA file `control_ca=` when given), the
    filter configured with `config`, and a file access log."""

    def __init__(self, upstream_port, control_port, config, concurrency=2, ipv6=False, direct_response=False,
                 build=None, **options):
        build = build or BUILD
        port, admin_port = free_port(), free_port()
        self.ipv6_port = free_port() if ipv6 else None
        directory = Path(options.pop("directory", None) or tempfile.mkdtemp(prefix="keygate-envoy-"))
        self.access_log = directory / "access.log"
        text = envoy_yaml(port, admin_port, upstream_port, control_port, config, self.access_log, self.ipv6_port,
                          control_ca=options.pop("control_ca", None), build=build)
        jwks_cache = options.pop("jwks_cache_duration", None)
        if jwks_cache:
            # How long jwt_authn keeps the control service's key set (tests of key rotation).
            assert "cache_duration: 300s" in text, "envoy/envoy.yaml's JWKS cache changed"
            text = text.replace("cache_duration: 300s", f"cache_duration: {jwks_cache}")
        grpc_upstream_port = options.pop("grpc_upstream_port", None)
        if grpc_upstream_port:
            # gRPC calls (content-type application/grpc) go to an HTTP/2 upstream.
            catch_all = '              - match: { prefix: "/" }\n                route: { cluster: upstream }'
            assert catch_all in text and "  clusters:\n" in text, "envoy/envoy.yaml's routes changed"
            text = text.replace(
                catch_all,
                '              - match: { prefix: "/", grpc: {} }\n                route: { cluster: grpc_upstream }\n'
                + catch_all,
            )
            text = text.replace("  clusters:\n", "  clusters:\n" + GRPC_CLUSTER.format(port=grpc_upstream_port), 1)
        if direct_response:
            # Envoy answers itself instead of the upstream: for measurements where the
            # Python demo upstream would be the bottleneck.
            catch_all = '              - match: { prefix: "/" }\n                route: { cluster: upstream }'
            assert catch_all in text, "envoy/envoy.yaml's catch-all route changed"
            text = text.replace(
                catch_all,
                '              - match: { prefix: "/" }\n                direct_response: { status: 200, body: { inline_string: "ok" } }',
            )
        if build == "native":
            options["env"] = dict(options.get("env") or os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(NATIVE_DIR))
        super().__init__(text, port, admin_port, concurrency=concurrency, directory=directory,
                         extra_args=["--file-flush-interval-msec", "100", *options.pop("extra_args", ())], **options)
