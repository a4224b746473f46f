"""Keygate's test kit: launches the real parts on loopback for the tests (tests/) and the
benchmarks (bench/), and reads the shipped files that checks in several test folders compare.
Every wait is bounded.

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
    shipped          the version, envoy.yaml's filter configuration, compose, Istio, Envoy
                     Gateway, control/openapi.json, docs/snapshot.schema.json
    monitoring       the alert rules and the Grafana dashboard, and the metrics PromQL reads

Installed editable into the project venv (`make venv`), so it always reads this checkout.
Import what you use from its modules: `from keygate_testkit.envoy import Envoy`."""
