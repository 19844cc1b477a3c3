"""Tidings embedded (`tidings up`) as a target, from this tree (:class:`Embedded`) or from
another checkout of the project (:class:`EmbeddedRef`, for before/after runs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tidings.bench.targets.base import (
    Proc,
    SinglePortTarget,
    _child_env,
    tidings_command,
    wait_http,
)


class Embedded(SinglePortTarget):
    """`tidings up`: API, gateway and push in one process on SQLite."""

    name = "tidings-embedded"
    ws_path = "/v1/ws"

    def __init__(self, workdir: Path, data_dir: Path | None = None, **env: str) -> None:
        super().__init__(workdir)
        self.data_dir = data_dir or workdir / "data"
        self.env = env
        self.ready_at_ns = 0
        # Directories put first on the server's PYTHONPATH (the trace's sitecustomize).
        self.pythonpath: list[Path] = []

    def _argv(self) -> list[str]:
        return [*tidings_command(), "up"]

    def _env(self) -> dict[str, str]:
        env = _child_env(self.env)
        if self.pythonpath:
            old = env.get("PYTHONPATH", "")
            env["PYTHONPATH"] = os.pathsep.join([*map(str, self.pythonpath), *filter(None, [old])])
        return env

    def _proc(self) -> Proc:
        argv = [*self._argv(), "--host", self.host, "--port", str(self.port)]
        argv += ["--data-dir", str(self.data_dir)]
        return Proc("tidings up", argv, self._env(), self.workdir / "tidings-up.log")

    def start(self) -> None:
        """Start ``tidings up`` and wait for /readyz."""
        self.procs = [self._proc()]
        self.procs[0].start()
        wait_http(f"{self.api_url}/readyz", self.procs[0])

    def setup_mode(self, on: bool) -> None:
        """Setup (signups) runs on a server with SQLite ``synchronous=NORMAL``; the
        measured server is started again afterwards with the settings under test, so
        its memory baseline does not carry the signups either."""
        self.stop()
        if on:
            self.env = {**self.env, "TIDINGS_SQLITE_SYNCHRONOUS": "NORMAL"}
        else:
            self.env = {k: v for k, v in self.env.items() if k != "TIDINGS_SQLITE_SYNCHRONOUS"}
        self.start()

    def restart(self) -> None:
        """Start a fresh process on the same port and data (after a drain)."""
        old = self.procs[0]
        if old.proc is not None:
            old.proc.wait(60)
        self.procs = [self._proc()]
        self.procs[0].start()
        wait_http(f"{self.api_url}/readyz", self.procs[0])
        self.ready_at_ns = time.monotonic_ns()

    def version(self) -> str:
        """This tree's tidings version."""
        from tidings import __version__

        return __version__

    def code_tree(self) -> Path:
        """The checkout whose code this target runs."""
        import tidings

        return Path(tidings.__file__).resolve().parents[2]

    def describe(self) -> dict[str, Any]:
        """As :meth:`Target.describe`, with the commit the code tree is at."""
        out = super().describe()
        described = subprocess.run(
            ["git", "-C", str(self.code_tree()), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
        if described.returncode == 0:
            out["tree_commit"] = described.stdout.strip()  # "-dirty": uncommitted changes
        return out


# Runs `tidings` from the tree whose ``workloads`` directory is argv[1] (first on
# PYTHONPATH), after checking that this is where the package really came from: the
# project is installed editable in the venv, and an import from the venv's tree instead
# would measure the wrong code without any sign of it.
_REF_LAUNCHER = """
import os, sys
want = os.path.realpath(sys.argv.pop(1)) + os.sep
import tidings
found = os.path.realpath(tidings.__file__ or "")
print("tidings imported from", found, flush=True)
if not found.startswith(want):
    sys.exit(f"tidings was imported from {found}, not from {want}")
from tidings.cli import main
sys.argv[0] = "tidings"
sys.exit(main())
"""


IMPORTED_FROM = "tidings imported from "


def git_commit(tree: Path) -> str:
    """The commit checked out in ``tree`` ('' when it is not a git work tree)."""
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def _dependencies(pyproject: Path) -> set[str]:
    import re
    import tomllib

    try:
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    except (OSError, KeyError, ValueError):
        return set()
    names = (re.match(r"[A-Za-z0-9._-]+", str(d)) for d in deps)
    return {m.group(0).lower().replace("-", "_") for m in names if m}


def ref_hidden_modules(tree: Path) -> list[str]:
    """Modules to hide from a reference tree: what the current tree's pyproject.toml
    depends on and the reference's does not (installed into the venv since), unless
    another installed distribution needs it. Libraries pick such modules up by
    themselves (uvicorn runs on uvloop whenever it can import it), which would measure
    the old code on a new stack."""
    from importlib import metadata

    import tidings

    here = Path(tidings.__file__).resolve().parents[2] / "pyproject.toml"
    added = _dependencies(here) - _dependencies(tree / "pyproject.toml")
    needed: set[str] = set()
    for dist in metadata.distributions():
        if (dist.metadata["Name"] or "").lower() == "tidings":
            continue
        for req in dist.requires or []:
            if "extra ==" not in req and "extra==" not in req:
                name = req.split(";")[0].strip().split(" ")[0]
                needed.add(name.split("[")[0].split(">")[0].split("=")[0].split("<")[0].lower())
    return sorted(m for m in added if m.replace("_", "-") not in needed and m not in needed)


class EmbeddedRef(Embedded):
    """`tidings up` from another checkout of this repository (``--ref-tree``), e.g. the
    commit before a change, measured in the same run as the current tree. It runs on
    this venv's interpreter and libraries with ``<tree>/workloads`` first on PYTHONPATH,
    from a working directory of its own; start-up fails unless ``tidings`` was imported
    from that tree."""

    def __init__(self, workdir: Path, tree: Path, data_dir: Path | None = None, **env: str) -> None:
        super().__init__(workdir, data_dir, **env)
        self.tree = tree.resolve()
        if not (self.tree / "workloads" / "tidings" / "__init__.py").exists():
            raise RuntimeError(f"--ref-tree {tree}: no workloads/tidings/ there")
        self.commit = git_commit(self.tree)
        self.name = f"tidings-embedded (ref {self.commit[:7] or self.tree.name})"
        self.hidden = ref_hidden_modules(self.tree)
        hide = self.workdir / "hidden-modules"
        hide.mkdir(parents=True, exist_ok=True)
        for module in self.hidden:
            (hide / f"{module}.py").write_text(
                f"raise ModuleNotFoundError({module!r} ' is hidden from the reference tree: "
                f"its pyproject.toml does not depend on it', name={module!r})\n"
            )
        self.pythonpath = [self.tree / "workloads", hide]
        self.imported_from = ""

    def _argv(self) -> list[str]:
        return [sys.executable, "-c", _REF_LAUNCHER, str(self.tree / "workloads"), "up"]

    def _proc(self) -> Proc:
        proc = super()._proc()
        proc.cwd = self.workdir / "cwd"  # not the caller's: '' is first on sys.path
        return proc

    def start(self) -> None:
        """Start the reference tree's ``tidings up`` and check it imported that tree."""
        super().start()
        self._check_import()

    def restart(self) -> None:
        """As :meth:`Embedded.restart`, checking the import again."""
        super().restart()
        self._check_import()

    def _check_import(self) -> None:
        log_text = self.procs[0].log_path.read_text(errors="replace")
        lines = [ln for ln in log_text.splitlines() if ln.startswith(IMPORTED_FROM)]
        if not lines:
            raise RuntimeError(f"{self.name}: the launcher did not say where tidings came from")
        self.imported_from = lines[-1][len(IMPORTED_FROM) :]

    def version(self) -> str:
        """The reference's commit (or its path)."""
        return f"ref {self.commit or self.tree}"

    def code_tree(self) -> Path:
        """The reference checkout."""
        return self.tree

    def describe(self) -> dict[str, Any]:
        """As :meth:`Embedded.describe`, with the reference tree, its commit, where tidings was
        imported from and the modules hidden from it."""
        out = super().describe()
        out.update(
            {
                "ref_tree": str(self.tree),
                "commit": self.commit,
                "imported_from": self.imported_from,
                "hidden_modules": self.hidden,
            }
        )
        return out
