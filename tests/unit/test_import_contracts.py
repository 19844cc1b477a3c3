"""The dependency rule's import-linter contracts (pyproject.toml, [tool.importlinter]):
kept by the tree, broken by a throwaway copy of it with one forbidden import, and naming
every module of tidings but the ones each rule allows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "importlinter"
]["contracts"]


def lint_imports(cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT, [ROOT / "workloads", ROOT / "operator"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(CONTRACTS)} kept, 0 broken" in result.stdout


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The two packages' Python files and pyproject.toml, copied."""
    only_python = shutil.ignore_patterns("__pycache__", "static", "*.pyc")
    shutil.copytree(ROOT / "workloads" / "tidings", tmp_path / "tidings", ignore=only_python)
    shutil.copytree(
        ROOT / "operator" / "tidings_operator", tmp_path / "tidings_operator", ignore=only_python
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "forbidden_import", "broken"),
    [
        ("tidings/core/ids.py", "import tidings.settings", "tidings.core imports nothing"),
        (
            "tidings/chat/delivery.py",
            "from tidings.storage.sql.keys import KeyDirectory",
            "tidings.chat imports only",
        ),
        ("tidings/cluster/topics.py", "import tidings_operator.names", "never the reverse"),
        ("tidings/wire/topics.py", "from tidings.settings import Settings", "tidings.wire"),
        (
            "tidings/gateway/framing.py",
            "from tidings.gateway.connection import Connection",
            "No import cycles",
        ),
        ("tidings/server.py", "from tidings.bench import run_bench", "never import tidings.bench"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    copy: Path, module: str, forbidden_import: str, broken: str
) -> None:
    assert lint_imports(copy, [copy]).returncode == 0  # the copy as it is: kept
    path = copy / module
    source = path.read_text(encoding="utf-8")
    # Under TYPE_CHECKING, as an import for typing only would be: it counts all the same.
    path.write_text(
        f"{source}\n\nfrom typing import TYPE_CHECKING\n\n"
        f"if TYPE_CHECKING:\n    {forbidden_import}\n",
        encoding="utf-8",
    )
    result = lint_imports(copy, [copy])
    assert result.returncode == 1, result.stdout + result.stderr
    broken_lines = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(broken in line for line in broken_lines), result.stdout


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize(
    ("contract_id", "allowed_packages", "allowed_modules"),
    [
        ("core", set(), set()),
        (
            "chat",
            {"tidings.core"},
            {
                "tidings.metrics",
                "tidings.bus",  # the package's __init__: it imports only bus.base
                "tidings.bus.base",
                "tidings.storage",  # likewise: storage.base only
                "tidings.storage.base",
            },
        ),
        ("wire", set(), set()),
    ],
)
def test_a_forbidden_contract_forbids_every_module_it_does_not_allow(
    contract_id: str, allowed_packages: set[str], allowed_modules: set[str]
) -> None:
    """So that a module added later is forbidden too until the rule says otherwise."""
    (contract,) = [c for c in CONTRACTS if c["id"] == contract_id]
    graph = grimp.build_graph("tidings", "tidings_operator", cache_dir=None)
    (source,) = contract["source_modules"]
    not_forbidden = {
        module
        for module in graph.modules
        if not _in(module, source)
        and not any(_in(module, forbidden) for forbidden in contract["forbidden_modules"])
    }
    allowed = {
        module
        for module in graph.modules
        if module in allowed_modules or any(_in(module, p) for p in allowed_packages)
    }
    assert not_forbidden == allowed | {"tidings"}  # the root package's __init__


def test_only_the_cli_and_the_bench_itself_may_import_the_bench() -> None:
    """bench-apart names every module of tidings as a source but the bench and the CLI
    (whose `tidings bench` reads its arguments from it), so a new module is held to it."""
    (contract,) = [c for c in CONTRACTS if c["id"] == "bench-apart"]
    graph = grimp.build_graph("tidings", "tidings_operator", cache_dir=None)
    free = {
        module
        for module in graph.modules
        if not any(_in(module, source) for source in contract["source_modules"])
    }
    bench = {m for m in graph.modules if _in(m, "tidings.bench")}
    assert free == bench | {"tidings", "tidings.cli", "tidings.__main__"}
