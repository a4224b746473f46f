#!/usr/bin/env bash
# `make release`: copies the release builds into one directory with their SHA-256 sums.
#   keygate.wasm (+ .sha256)     the filter; Envoy's vm_config.code.remote.sha256 takes the hex
#   keygate-control (+ .sha256)  the control service and CLI (Linux x86_64, glibc)
#   libkeygate.so (+ .sha256)    the filter as an Envoy dynamic module (Linux x86_64, glibc;
#                                docs/native.md)
# Usage: release.sh [WASM] [CONTROL_BIN] [OUT_DIR] [NATIVE_SO]
set -euo pipefail
cd "$(dirname "$0")/.."
wasm=${1:-target/wasm32-wasip1/release/keygate.wasm}
control=${2:-target/release/keygate-control}
out=${3:-target/release-artifacts}
native=${4:-target/native/libkeygate.so}

for file in "$wasm" "$control" "$native"; do
  [ -f "$file" ] || { echo "missing $file: run 'make build' first" >&2; exit 1; }
done
mkdir -p "$out"
install -m 0644 "$wasm" "$out/keygate.wasm"
install -m 0755 "$control" "$out/keygate-control"
install -m 0755 "$native" "$out/libkeygate.so"
(
  cd "$out"
  for name in keygate.wasm keygate-control libkeygate.so; do
    sha256sum "$name" > "$name.sha256"
  done
)
echo "release artifacts in $out:"
for name in keygate.wasm keygate-control libkeygate.so; do
  printf '  %-16s %9s bytes  sha256 %s\n' "$name" "$(stat -c %s "$out/$name")" "$(cut -d' ' -f1 "$out/$name.sha256")"
done
