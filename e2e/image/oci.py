"""Write OCI image layers and OCI image archives without a container daemon (stdlib only).

Used by e2e/image/build.sh; the archives are what `ctr -n k8s.io images import` (containerd
1.6) reads.

    oci.py layer ROOT OUT.tar.gz [--skip-contents dev --skip-contents proc ...]
        A gzip layer of the directory ROOT (an overlayfs upper directory or a whole rootfs):
        numeric owners, sorted entries, the files' own mtimes (so the .pyc files stay valid),
        overlayfs whiteouts turned into OCI whiteouts. Writes OUT.tar.gz.json with the
        layer's digest, diff_id (sha256 of the uncompressed tar) and size.
    oci.py image --ref REF --out ARCHIVE --layer OUT.tar.gz [--layer ...] [--entrypoint JSON]
                 [--cmd JSON] [--env K=V ...] [--user U] [--workdir D] [--label K=V ...]
        An OCI image layout (oci-layout, index.json, blobs/sha256/...) as one tar: one
        linux/amd64 manifest, its config, the layers. index.json names the image twice:
        `io.containerd.image.name` (the full reference, what `ctr images import` uses) and
        `org.opencontainers.image.ref.name` (the tag, per the OCI image layout spec).
    oci.py tree-hash PATH [PATH ...]
        A sha256 over the names, modes and contents of the files under PATHs (caches' keys).
    oci.py show ARCHIVE
        The archive's index, manifest and config as JSON (for tests and for looking).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 1 << 20


class _HashingWriter:
    """A write-only file that hashes what passes through it on the way to `target`."""

    def __init__(self, target: BinaryIO | gzip.GzipFile) -> None:
        self.target = target
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.target.write(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()


def _walk(root: Path, skip_contents: set[str]) -> Iterator[str]:
    """Relative paths under root, parents before children, names sorted."""

    def walk(rel: str) -> Iterator[str]:
        for name in sorted(os.listdir(root / rel if rel else root)):
            path = f"{rel}/{name}" if rel else name
            yield path
            if stat.S_ISDIR(os.lstat(root / path).st_mode) and path not in skip_contents:
                yield from walk(path)

    return walk("")


def _is_opaque(path: Path) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


def write_layer(root: Path, out: Path, skip_contents: set[str]) -> dict[str, Any]:
    tmp = out.with_name(out.name + ".part")
    with tmp.open("wb") as raw_file:
        compressed = _HashingWriter(raw_file)
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6)  # type: ignore[arg-type]
        with gz:
            uncompressed = _HashingWriter(gz)
            with tarfile.open(
                fileobj=uncompressed,  # type: ignore[arg-type]
                mode="w|",
                format=tarfile.PAX_FORMAT,
            ) as tar:
                for rel in _walk(root, skip_contents):
                    _add(tar, root, rel)
    size = tmp.stat().st_size
    tmp.rename(out)
    meta = {
        "digest": "sha256:" + compressed.sha.hexdigest(),
        "diff_id": "sha256:" + uncompressed.sha.hexdigest(),
        "size": size,
    }
    Path(str(out) + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _add(tar: tarfile.TarFile, root: Path, rel: str) -> None:
    path = root / rel
    st = os.lstat(path)
    parent, _, name = rel.rpartition("/")
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        # An overlayfs whiteout (a 0/0 character device): the OCI form is an empty file.
        info = tarfile.TarInfo(f"{parent}/.wh.{name}" if parent else f".wh.{name}")
        info.mtime = int(st.st_mtime)
        tar.addfile(info)
        return
    info = tar.gettarinfo(str(path), arcname=rel)
    if info is None:  # a socket: not part of an image
        return
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    if info.isreg():
        with path.open("rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)
    if info.isdir() and _is_opaque(path):
        opaque = tarfile.TarInfo(f"{rel}/.wh..wh..opq")
        opaque.mtime = int(st.st_mtime)
        tar.addfile(opaque)


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_image(
    ref: str,
    out: Path,
    layers: list[Path],
    config: dict[str, Any],
    created: str,
    history: list[str],
) -> dict[str, Any]:
    metas = [json.loads(Path(str(layer) + ".json").read_text()) for layer in layers]
    image_config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [m["diff_id"] for m in metas]},
        "history": [
            {"created": created, "created_by": history[i] if i < len(history) else "layer"}
            for i in range(len(layers))
        ],
    }
    config_digest, config_bytes = _blob(_json_bytes(image_config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [
            {"mediaType": MEDIA_LAYER, "digest": m["digest"], "size": m["size"]} for m in metas
        ],
    }
    manifest_digest, manifest_bytes = _blob(_json_bytes(manifest))
    tag = ref.rpartition(":")[2] if ":" in ref.rpartition("/")[2] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:

        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))

        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)

        add_bytes("oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}))
        add_bytes("index.json", _json_bytes(index))
        add_dir("blobs")
        add_dir("blobs/sha256")
        add_bytes("blobs/sha256/" + config_digest[7:], config_bytes)
        add_bytes("blobs/sha256/" + manifest_digest[7:], manifest_bytes)
        seen: set[str] = set()
        for layer, meta in zip(layers, metas, strict=True):
            if meta["digest"] in seen:
                continue
            seen.add(meta["digest"])
            info = tarfile.TarInfo("blobs/sha256/" + meta["digest"][7:])
            info.size, info.mode, info.mtime = meta["size"], 0o644, 0
            with layer.open("rb") as f:
                tar.addfile(info, f)
    tmp.rename(out)
    return {"ref": ref, "archive": str(out), "manifest": manifest_digest, "config": config_digest}


def read_archive(archive: Path) -> dict[str, Any]:
    """index.json, the first manifest and its config of an OCI archive."""
    with tarfile.open(archive) as tar:

        def read(name: str) -> Any:
            f = tar.extractfile(name)
            if f is None:
                raise ValueError(f"{archive}: {name} is not a file")
            return json.loads(f.read())

        index = read("index.json")
        manifest = read("blobs/sha256/" + index["manifests"][0]["digest"][7:])
        config = read("blobs/sha256/" + manifest["config"]["digest"][7:])
        return {
            "oci-layout": read("oci-layout"),
            "index": index,
            "manifest": manifest,
            "config": config,
            "blobs": sorted(n for n in tar.getnames() if n.startswith("blobs/sha256/")),
        }


def tree_hash(paths: list[Path]) -> str:
    sha = hashlib.sha256()
    skip = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    for top in paths:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for f in files:
            if skip.intersection(f.parts) or f.suffix == ".pyc" or ".egg-info" in str(f):
                continue
            sha.update(f"{f}\0{os.stat(f).st_mode & 0o777:o}\0".encode())
            sha.update(hashlib.sha256(f.read_bytes()).digest())
    return sha.hexdigest()


def _pairs(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {value!r}")
        out[key] = val
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    p_layer = sub.add_parser("layer")
    p_layer.add_argument("root", type=Path)
    p_layer.add_argument("out", type=Path)
    p_layer.add_argument("--skip-contents", action="append", default=[])

    p_image = sub.add_parser("image")
    p_image.add_argument("--ref", required=True)
    p_image.add_argument("--out", type=Path, required=True)
    p_image.add_argument("--layer", type=Path, action="append", required=True)
    p_image.add_argument("--history", action="append", default=[])
    p_image.add_argument("--entrypoint", type=json.loads)
    p_image.add_argument("--cmd", type=json.loads)
    p_image.add_argument("--env", action="append", default=[])
    p_image.add_argument("--user")
    p_image.add_argument("--workdir")
    p_image.add_argument("--label", action="append", default=[])
    p_image.add_argument("--stop-signal")
    p_image.add_argument("--created", help="RFC 3339 time; default now")

    p_hash = sub.add_parser("tree-hash")
    p_hash.add_argument("paths", type=Path, nargs="+")

    p_show = sub.add_parser("show")
    p_show.add_argument("archive", type=Path)

    args = parser.parse_args(argv)
    if args.command == "layer":
        meta = write_layer(args.root, args.out, set(args.skip_contents))
        print(json.dumps(meta))
    elif args.command == "image":
        config: dict[str, Any] = {}
        if args.user:
            config["User"] = args.user
        if args.env:
            config["Env"] = [f"{k}={v}" for k, v in _pairs(args.env).items()]
        if args.entrypoint is not None:
            config["Entrypoint"] = args.entrypoint
        if args.cmd is not None:
            config["Cmd"] = args.cmd
        if args.workdir:
            config["WorkingDir"] = args.workdir
        if args.label:
            config["Labels"] = _pairs(args.label)
        if args.stop_signal:
            config["StopSignal"] = args.stop_signal
        created = args.created or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = write_image(args.ref, args.out, args.layer, config, created, args.history)
        print(json.dumps(result))
    elif args.command == "tree-hash":
        print(tree_hash(args.paths))
    elif args.command == "show":
        print(json.dumps(read_archive(args.archive), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
