"""Where things are: the checkout the kit belongs to, the binaries under test (the `make build`
outputs and the venv's Envoy unless KEYGATE_WASM, KEYGATE_CONTROL_BIN or KEYGATE_ENVOY say
otherwise), and the tokens every launched control service takes."""
import os
from pathlib import Path

# testkit/keygate_testkit/paths.py: the kit is installed editable, so this is the checkout.
ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "Cargo.toml").is_file():
    raise ImportError(f"keygate_testkit must be installed editable from a Keygate checkout (found none at {ROOT}): "
                      "make venv")


def _binary(variable, default):
    return Path(os.environ.get(variable, ROOT / default)).resolve()


WASM = _binary("KEYGATE_WASM", "target/wasm32-wasip1/release/keygate.wasm")
# Which build of the filter `Envoy` loads: "wasm" (keygate.wasm, envoy/envoy.yaml) or "native"
# (the dynamic module libkeygate.so in NATIVE_DIR, envoy/envoy-native.yaml).
BUILD = os.environ.get("KEYGATE_BUILD", "wasm")
if BUILD not in ("wasm", "native"):
    raise ImportError(f"KEYGATE_BUILD must be wasm or native, not {BUILD!r}")
NATIVE_DIR = _binary("KEYGATE_NATIVE_DIR", "target/native")
CONTROL_BIN = _binary("KEYGATE_CONTROL_BIN", "target/release/keygate-control")
ENVOY_BIN = _binary("KEYGATE_ENVOY", ".venv/bin/envoy")

ADMIN_TOKEN = "test-admin-token"
SYNC_TOKEN = "test-sync-token"


def control_binary() -> Path:
    """CONTROL_BIN, or an error that says how to get it."""
    if not CONTROL_BIN.is_file():
        raise FileNotFoundError(f"keygate-control binary not found at {CONTROL_BIN}; build it or set KEYGATE_CONTROL_BIN")
    return CONTROL_BIN
