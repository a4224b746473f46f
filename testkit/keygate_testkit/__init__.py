"""Keygate's test kit: launches the real parts on loopback for the tests (tests/) and the
benchmarks (bench/), and reads the shipped files the checks of both share. Every wait is bounded.

    paths            the checkout, the binaries under test, the test tokens
    ports, waiting   free loopback ports; polling a condition with a deadline
    processes        child processes with a log file, stopped for sure; memory of a process
    envoy            Envoy (the shipped envoy.yaml with the filter, or any bootstrap); validation
    control          keygate-control: the service, `seed`, the command-line client
    api              the control service's HTTP API as tests speak it
    postgres         a throwaway PostgreSQL cluster
    upstream         the demo upstream (scripts/demo_upstream.py)
    snapshot_server  a stand-in control service serving the snapshots a test sets
    compact_snapshot a reader of the compact snapshot encoding, from docs/snapshot.md alone
    console          the web console's service and a headless Chromium
    shipped          the version, envoy.yaml's filter configuration, compose, Istio, Envoy Gateway
    monitoring       the alert rules and the Grafana dashboard, and the metrics PromQL reads

Installed editable into the project venv (`make venv`), so it always reads this checkout."""

from .control import ControlService
from .envoy import Envoy, EnvoyProcess, envoy_yaml, plugin_config
from .paths import ADMIN_TOKEN, CONTROL_BIN, ENVOY_BIN, ROOT, SYNC_TOKEN, WASM
from .ports import free_port
from .postgres import PostgresCluster
from .snapshot_server import SnapshotServer, key_record
from .upstream import Upstream
from .waiting import wait_until

__all__ = [
    "ADMIN_TOKEN",
    "CONTROL_BIN",
    "ENVOY_BIN",
    "ROOT",
    "SYNC_TOKEN",
    "WASM",
    "ControlService",
    "Envoy",
    "EnvoyProcess",
    "PostgresCluster",
    "SnapshotServer",
    "Upstream",
    "envoy_yaml",
    "free_port",
    "key_record",
    "plugin_config",
    "wait_until",
]
