#!/bin/sh
# Builds the filter as it was at git revision REV into OUT (a .wasm), in a worktree of its own
# (its own target directory, so this tree's build is untouched): the baseline of an A/B bench.
# Usage: build-baseline-wasm.sh REV OUT
set -eu
rev=$1
out=$2
root=$(git rev-parse --show-toplevel)
tree="$root/target/bench/baseline-tree"
rm -rf "$tree"
git -C "$root" worktree prune
git -C "$root" worktree add --detach "$tree" "$rev" >/dev/null
trap 'git -C "$root" worktree remove --force "$tree"' EXIT
(cd "$tree" && CARGO_TARGET_DIR="$root/target/bench/baseline-target" \
    cargo build --release --target wasm32-wasip1 -p keygate --config profile.release.lto=true)
mkdir -p "$(dirname "$out")"
cp "$root/target/bench/baseline-target/wasm32-wasip1/release/keygate.wasm" "$out"
echo "baseline $(git -C "$root" rev-parse --short "$rev") → $out"
