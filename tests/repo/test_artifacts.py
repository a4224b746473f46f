"""The artifacts `make` builds for shipping, checked as files: the OCI image of keygate.wasm
(`make oci`, read back by skopeo), the release artifacts with their sha256 (`make release`), and
the size of keygate.wasm. That Envoy loads the release module is
tests/e2e/test_shipping_runs.py."""
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from keygate_testkit.paths import CONTROL_BIN, NATIVE_DIR, ROOT, WASM
from keygate_testkit.shipped import VERSION, require_tool


# make oci

def read_blob(layout, descriptor):
    algorithm, digest = descriptor["digest"].split(":")
    assert algorithm == "sha256"
    data = (layout / "blobs/sha256" / digest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest, f"blob {digest} does not match its digest"
    assert len(data) == descriptor["size"]
    return data


def build_oci(out):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/oci_image.py"), "--wasm", str(WASM), "--out", str(out), "--tag", VERSION],
        check=True,
        capture_output=True,
        timeout=60,
    )
    index = json.loads((out / "index.json").read_text())
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}


def test_oci_compat_image_holds_plugin_wasm(tmp_path):
    layout = tmp_path / "keygate"
    manifests = build_oci(layout)
    manifest = json.loads(read_blob(layout, manifests[VERSION]))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    compressed = read_blob(layout, layer)
    raw = gzip.decompress(compressed)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.getnames() == ["plugin.wasm"]
        wasm = tar.extractfile("plugin.wasm").read()
    assert wasm == WASM.read_bytes()
    image_config = json.loads(read_blob(layout, manifest["config"]))
    assert image_config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(raw).hexdigest()}"]


def test_oci_spec_image_holds_the_raw_module(tmp_path):
    layout = tmp_path / "keygate"
    manifests = build_oci(layout)
    manifest = json.loads(read_blob(layout, manifests[f"{VERSION}-spec"]))
    assert manifest["config"]["mediaType"] == "application/vnd.module.wasm.config.v1+json"
    runtime_config = json.loads(read_blob(layout, manifest["config"]))
    assert runtime_config["config"]["root_ids"] == ["keygate"]
    # Istio's fetcher takes this variant only with exactly two layers.
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.module.wasm.config.v1+json",
        "application/vnd.module.wasm.content.layer.v1+wasm",
    ]
    assert read_blob(layout, manifest["layers"][1]) == WASM.read_bytes()


def test_oci_image_is_reproducible(tmp_path):
    first = build_oci(tmp_path / "a")
    second = build_oci(tmp_path / "b")
    assert [m["digest"] for m in first.values()] == [m["digest"] for m in second.values()]


def test_skopeo_reads_and_copies_the_oci_images(tmp_path):
    skopeo = require_tool("skopeo")
    layout = tmp_path / "keygate"
    manifests = build_oci(layout)
    inspect = subprocess.run(
        [skopeo, "inspect", f"oci:{layout}:{VERSION}"], capture_output=True, text=True, timeout=60
    )
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Digest"] == manifests[VERSION]["digest"]
    for tag in (VERSION, f"{VERSION}-spec"):
        # A copy re-reads and verifies every blob against its digest.
        copy = subprocess.run(
            [skopeo, "copy", "--quiet", f"oci:{layout}:{tag}", f"oci:{tmp_path / 'copy'}:{tag}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert copy.returncode == 0, copy.stderr


# make release

def test_release_artifacts_carry_their_sha256(tmp_path):
    out = tmp_path / "release"
    result = subprocess.run(
        [str(ROOT / "scripts/release.sh"), str(WASM), str(CONTROL_BIN), str(out), str(NATIVE_DIR / "libkeygate.so")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name, source in (("keygate.wasm", WASM), ("keygate-control", CONTROL_BIN),
                         ("libkeygate.so", NATIVE_DIR / "libkeygate.so")):
        data = (out / name).read_bytes()
        assert data == source.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert (out / f"{name}.sha256").read_text() == f"{digest}  {name}\n"
        assert digest in result.stdout
    assert os.access(out / "keygate-control", os.X_OK)


# make wasm

def test_wasm_is_small():
    size = Path(WASM).stat().st_size
    assert size < 1_500_000, f"keygate.wasm grew to {size} bytes"
