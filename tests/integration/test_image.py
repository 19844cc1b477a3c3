"""The daemonless image build (e2e/image/build.sh): the Tidings and pause images.

Builds both images (the base and deps layers come from the cache after the first build),
checks the OCI archives byte by byte (every blob's digest and size, the layers' diff_ids,
the config the pods rely on: `tidings` on PATH, uid 10001, two tags sharing their layers
with different digests), then imports them into the test environment's containerd
(TIDINGS_TEST_CONTAINERD_SOCK, namespace k8s.io, as the kubelet sees them) and runs them:
`tidings version` and `tidings --help` as uid 10001 on a read-only root filesystem, the
pause image until SIGTERM.

Needs root (debootstrap, chroot, overlay mounts) and, for the last tests, containerd.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD = REPO_ROOT / "e2e" / "image" / "build.sh"
REPO = "docker.io/tidings/tidings"
PAUSE = "registry.k8s.io/pause:3.6"
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
RUN_ID = uuid.uuid4().hex[:8]
TAGS = (f"test-{RUN_ID}-a", f"test-{RUN_ID}-b")


def _build(kind: str, out: Path, *args: str) -> list[Path]:
    assert os.geteuid() == 0, "the daemonless image build needs root"
    proc = subprocess.run(
        ["bash", str(BUILD), kind, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert proc.returncode == 0, f"build.sh {kind} failed:\n{proc.stderr[-4000:]}"
    return [Path(line) for line in proc.stdout.split()]


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("images")
    tidings = _build("tidings", out, "--tag", TAGS[0], "--tag", TAGS[1])
    pause = _build("pause", out)
    assert [p.name for p in tidings] == [f"tidings-{TAGS[0]}.tar", f"tidings-{TAGS[1]}.tar"]
    assert [p.name for p in pause] == ["pause-3.6.tar"]
    return {TAGS[0]: tidings[0], TAGS[1]: tidings[1], "pause": pause[0]}


class Archive:
    """An OCI image layout archive, read and checked."""

    def __init__(self, path: Path) -> None:
        with tarfile.open(path) as tar:
            self.files = {
                m.name: f.read()
                for m in tar.getmembers()
                if m.isfile() and (f := tar.extractfile(m)) is not None
            }
        self.index = json.loads(self.files["index.json"])
        (self.entry,) = self.index["manifests"]
        self.manifest = json.loads(self.blob(self.entry["digest"], self.entry["size"]))
        self.config = json.loads(
            self.blob(self.manifest["config"]["digest"], self.manifest["config"]["size"])
        )

    def blob(self, digest: str, size: int) -> bytes:
        algorithm, _, hexdigest = digest.partition(":")
        assert algorithm == "sha256"
        data = self.files[f"blobs/sha256/{hexdigest}"]
        assert hashlib.sha256(data).hexdigest() == hexdigest, f"{digest}: wrong content"
        assert len(data) == size, f"{digest}: size {len(data)}, descriptor says {size}"
        return data

    def layers(self) -> list[dict[str, tuple[tarfile.TarInfo, bytes]]]:
        """Each layer's entries: name -> (header, content; b"" for non-files)."""
        result = []
        for desc in self.manifest["layers"]:
            assert desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
            raw = gzip.decompress(self.blob(desc["digest"], desc["size"]))
            entries = {}
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                for member in tar.getmembers():
                    f = tar.extractfile(member) if member.isreg() else None
                    entries[member.name] = (member, f.read() if f else b"")
            result.append(entries)
        return result

    def diff_ids(self) -> list[str]:
        return [
            "sha256:"
            + hashlib.sha256(gzip.decompress(self.blob(d["digest"], d["size"]))).hexdigest()
            for d in self.manifest["layers"]
        ]


def _check_layout(archive: Archive, ref: str) -> None:
    assert json.loads(archive.files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert archive.index["schemaVersion"] == 2
    entry = archive.entry
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert entry["annotations"]["io.containerd.image.name"] == ref
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == ref.rpartition(":")[2]
    assert archive.manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert archive.config["os"] == "linux" and archive.config["architecture"] == "amd64"
    assert archive.config["rootfs"] == {"type": "layers", "diff_ids": archive.diff_ids()}
    referenced = {archive.manifest["config"]["digest"], entry["digest"]}
    referenced |= {d["digest"] for d in archive.manifest["layers"]}
    present = {"sha256:" + n.rpartition("/")[2] for n in archive.files if n.startswith("blobs/")}
    assert present == referenced


def test_tidings_archive_is_an_oci_image_the_pods_can_run(archives: dict[str, Path]) -> None:
    archive = Archive(archives[TAGS[0]])
    _check_layout(archive, f"{REPO}:{TAGS[0]}")
    config = archive.config["config"]
    # What the operator's and the chart's pods expect (operator/tidings_operator/builders.py).
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["tidings"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PATH"].split(":")[0] == "/opt/tidings/bin"
    assert env["TIDINGS_IMAGE_TAG"] == TAGS[0]
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    assert config["Labels"]["dev.tidings.image.tag"] == TAGS[0]

    entries: dict[str, tarfile.TarInfo] = {}
    passwd = b""
    for number, layer in enumerate(archive.layers()):
        for name, (member, content) in layer.items():
            entries[name] = member
            if number:  # the venv and the app belong to root: the pods cannot change them
                assert (member.uid, member.gid) == (0, 0), name
            if name == "etc/passwd":
                passwd = content
    assert b"\ntidings:x:10001:10001:" in passwd
    assert entries["opt/tidings/bin/tidings"].isreg()
    assert entries["opt/tidings/bin/tidings"].mode & 0o111
    assert entries["usr/local/bin/tidings"].linkname == "/opt/tidings/bin/tidings"
    assert entries["opt/tidings/bin/python3"].linkname == "/usr/bin/python3"
    assert entries["usr/bin/python3.11"].isreg()
    assert any(
        n.startswith("opt/tidings/lib/python3.11/site-packages/tidings_operator/") for n in entries
    )
    assert not any(n.startswith(("dev/", "proc/", "sys/")) for n in entries)


def test_a_second_tag_shares_the_layers_with_its_own_digest(archives: dict[str, Path]) -> None:
    a, b = Archive(archives[TAGS[0]]), Archive(archives[TAGS[1]])
    _check_layout(b, f"{REPO}:{TAGS[1]}")
    assert a.manifest["layers"] == b.manifest["layers"]
    assert a.entry["digest"] != b.entry["digest"]
    assert b.config["config"]["Labels"]["dev.tidings.image.tag"] == TAGS[1]


def test_pause_archive_holds_only_the_static_pause_binary(archives: dict[str, Path]) -> None:
    archive = Archive(archives["pause"])
    _check_layout(archive, PAUSE)
    assert archive.config["config"]["Entrypoint"] == ["/pause"]
    (layer,) = archive.layers()
    ((member, content),) = layer.values()
    assert member.name == "pause" and member.isreg() and member.mode == 0o755
    assert content.startswith(b"\x7fELF")


# -- under containerd ------------------------------------------------------------------


class Ctr:
    def __init__(self, socket: str) -> None:
        binary = shutil.which("ctr")
        assert binary, "ctr (containerd's client) is not on PATH"
        self.base = [binary, "--address", socket, "--namespace", "k8s.io"]

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        proc = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"ctr {' '.join(args)}: {proc.stderr}{proc.stdout}"
        return proc.stdout

    def run(self, ref: str, *command: str) -> str:
        """`ctr run --rm --read-only` (the image's own user, 10001) and its output."""
        return self(
            "run",
            "--rm",
            "--read-only",
            ref,
            f"tidings-image-test-{uuid.uuid4().hex[:8]}",
            *command,
        )


@pytest.fixture(scope="module")
def ctr(testenv: Mapping[str, str], archives: dict[str, Path]) -> Iterator[Ctr]:
    client = Ctr(testenv["TIDINGS_TEST_CONTAINERD_SOCK"])
    for archive in archives.values():
        client("images", "import", str(archive), timeout=300)
    yield client
    # The pause image stays: it is the node's sandbox image.
    client("images", "rm", *(f"{REPO}:{tag}" for tag in TAGS), check=False)


def test_containerd_imports_both_under_their_names(ctr: Ctr) -> None:
    names = set(ctr("images", "ls", "-q").split())
    assert {f"{REPO}:{TAGS[0]}", f"{REPO}:{TAGS[1]}", PAUSE} <= names


def test_tidings_runs_as_10001_on_a_read_only_root(ctr: Ctr) -> None:
    ref = f"{REPO}:{TAGS[0]}"
    assert ctr.run(ref, "tidings", "version").strip() == f"tidings {VERSION}"
    usage = ctr.run(ref, "tidings", "--help")
    commands = set(usage[usage.index("{") + 1 : usage.index("}")].split(","))
    assert {"up", "client", "api", "chat", "push", "migrate", "rotate-jwt-key"} <= commands
    assert ctr.run(ref, "id", "-u").strip() == "10001"
    assert "tidings_operator" in ctr.run(ref, "python", "-m", "tidings_operator", "--help")
    probe = ctr.run(ref, "sh", "-c", "touch /opt/tidings/x 2>&1 || echo read-only")
    assert "read-only" in probe.lower()
    # With no command the entrypoint prints its help (Cmd ["--help"]).
    assert "usage: tidings" in ctr.run(ref)


def test_pause_runs_until_sigterm_and_exits_zero(ctr: Ctr) -> None:
    name = f"tidings-pause-test-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [*ctr.base, "run", "--rm", PAUSE, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while name not in ctr("tasks", "ls") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        assert proc.poll() is None, f"pause exited by itself: {proc.communicate()}"
        ctr("tasks", "kill", "--signal", "SIGTERM", name)
        code = proc.wait(timeout=30)
        assert code == 0, f"pause exited {code} on SIGTERM: {proc.communicate()}"
    finally:
        if proc.poll() is None:
            ctr("tasks", "kill", "--signal", "SIGKILL", name, check=False)
            proc.wait(timeout=30)
