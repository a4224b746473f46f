#!/usr/bin/env python3
"""Writes keygate.wasm as an OCI image layout that Istio's WasmPlugin (`url: oci://…`) can pull,
without a container engine. Two images, one layout:

  TAG        compat variant: one `application/vnd.oci.image.layer.v1.tar+gzip` layer holding
             `plugin.wasm`, a standard image config. Any registry and any OCI tool accept it;
             Istio extracts `plugin.wasm` from the layer. The one to use.
  TAG-spec   spec ("oci") variant of the Wasm image spec: config
             `application/vnd.module.wasm.config.v1+json` and the raw module as an
             `application/vnd.module.wasm.content.layer.v1+wasm` layer. Istio's fetcher wants
             exactly two layers for this variant, so the runtime config is also the first layer.

The output is byte-for-byte reproducible (fixed tar metadata, gzip without a timestamp), so the
same keygate.wasm always gives the same digests.

Usage: oci_image.py --wasm target/wasm32-wasip1/release/keygate.wasm --out target/oci/keygate --tag 0.1.0
Then: skopeo inspect oci:target/oci/keygate:0.1.0
      skopeo copy oci:target/oci/keygate:0.1.0 docker://registry.example.com/keygate:0.1.0
"""
import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
REF_NAME = "org.opencontainers.image.ref.name"
TITLE = "org.opencontainers.image.title"


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """An OCI image layout directory: `oci-layout`, `index.json`, `blobs/sha256/…`."""

    def __init__(self, root):
        self.root = Path(root)
        self.manifests = []

    def blob(self, media_type, data, annotations=None):
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / "sha256" / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        descriptor = {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor

    def add_image(self, tag, config, layers, annotations):
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
            "annotations": annotations,
        }
        descriptor = self.blob(OCI_MANIFEST, canonical_json(manifest))
        descriptor["annotations"] = {REF_NAME: tag}
        self.manifests.append(descriptor)
        return descriptor

    def write_index(self):
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.manifests}
        (self.root / "index.json").write_bytes(canonical_json(index))


def plugin_layer(wasm):
    """tar+gzip with one file, `plugin.wasm`, and no timestamps or owners that vary."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    raw = tar_bytes.getvalue()
    return raw, gzip.compress(raw, compresslevel=9, mtime=0)


def build(wasm_path, out, tag, source=None):
    wasm = Path(wasm_path).read_bytes()
    if wasm[:4] != b"\0asm":
        raise SystemExit(f"{wasm_path} is not a Wasm module")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    layout = Layout(out)
    annotations = {
        TITLE: "keygate",
        "org.opencontainers.image.description": "Keygate API-key authentication, proxy-wasm filter for Envoy/Istio",
        "org.opencontainers.image.version": tag,
    }
    if source:
        annotations["org.opencontainers.image.source"] = source

    tar_raw, tar_gz = plugin_layer(wasm)
    layer = layout.blob(OCI_LAYER_GZIP, tar_gz, {TITLE: "plugin.wasm"})
    image_config = {
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar_raw).hexdigest()}"]},
    }
    config = layout.blob(OCI_CONFIG, canonical_json(image_config))
    layout.add_image(tag, config, [layer], annotations)

    runtime_config = canonical_json({"type": "envoy_proxy", "abiVersions": ["v0.2.1"], "config": {"root_ids": ["keygate"]}})
    spec_config = layout.blob(WASM_CONFIG, runtime_config, {TITLE: "runtime-config.json"})
    spec_layers = [
        layout.blob(WASM_CONFIG, runtime_config, {TITLE: "runtime-config.json"}),
        layout.blob(WASM_LAYER, wasm, {TITLE: "plugin.wasm"}),
    ]
    layout.add_image(f"{tag}-spec", spec_config, spec_layers, annotations)
    layout.write_index()
    return layout.manifests


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wasm", required=True, help="the keygate.wasm to package")
    parser.add_argument("--out", required=True, help="OCI layout directory to (re)create")
    parser.add_argument("--tag", required=True, help="image tag, e.g. 0.1.0 (the spec variant gets TAG-spec)")
    parser.add_argument("--source", help="org.opencontainers.image.source annotation (repository URL)")
    args = parser.parse_args()
    for descriptor in build(args.wasm, args.out, args.tag, args.source):
        print(f"oci:{args.out}:{descriptor['annotations'][REF_NAME]}  manifest {descriptor['digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
