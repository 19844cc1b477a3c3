"""Smoke runs of `tidings bench trace` and of the reference-tree target (``--ref-tree``,
``tidings-ref``): tiny, asserting that the report has its fields and that every message
was delivered; never timing thresholds. The reference tree here is a copy of this one
(what matters is that the server runs the copy's code and says so)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tidings.bench._trace import STAGES, tool

from .test_bench_smoke import assert_steps, bench

REPO_ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 200


def ref_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "ref"
    shutil.copytree(
        REPO_ROOT / "workloads",
        tree / "workloads",
        ignore=shutil.ignore_patterns("__pycache__", "bench-*"),
    )
    shutil.copy(REPO_ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def assert_window(window: dict[str, Any], messages: int) -> None:
    assert window["sent"] == messages
    assert window["accepted"] == messages, window
    assert window["refused"] == 0, window
    assert window["delivered"] == messages, window
    assert window["complete"], window


def assert_trace(result: dict[str, Any]) -> None:
    assert result["messages"] == MESSAGES
    windows = result["windows"]
    assert windows["warm_up"]["delivered"] == windows["warm_up"]["sent"]
    assert_window(windows["cpu"], MESSAGES)
    assert windows["cpu"]["latency"]["count"] == MESSAGES
    counts = windows["counts"]
    assert_window(counts, MESSAGES)
    assert counts["latency"]["count"] == MESSAGES
    per = result["per_message"]
    assert per["server_cpu_us"] > 0
    assert per["server_cpu_us_sql_counted"] > 0
    # SQLite is opened both through aiosqlite (the directory) and directly (the message
    # store): the counting wrapper has to see both kinds of connection.
    assert "aiosqlite.core" in result["sql_seen_through"], result["sql_seen_through"]
    assert any(o.startswith("tidings.") for o in result["sql_seen_through"])
    assert per["sql_statements"] > 0
    assert per["write_transactions"] > 0
    assert per["sql_insert"] > 0
    assert per["sql_total_incl_triggers_fts"] >= per["sql_statements"]
    assert per["sql_by_database"]
    assert counts["sql"]["top_statements"]
    if tool("perf"):
        assert "per_message" in counts["syscalls"], counts["syscalls"]
        assert per["fsync"] > 0 and per["futex"] >= 0
    else:
        assert "not found" in counts["syscalls"]["error"]
    if tool("strace"):
        strace = windows["strace"]
        assert_window(strace["window"], MESSAGES)
        assert strace["threads_attached"] >= 1
        assert per["loopback_sends"] > 0
        assert per["fsync_by_file"]
    else:
        assert "not found" in windows["strace"]["error"]
    if tool("py-spy"):
        profile = windows["profile"]
        assert_window(profile["window"], MESSAGES)
        assert profile["on_cpu_samples"] > 0
        assert set(per["stage_us"]) == {stage for stage, _ in STAGES}
        assert sum(per["stage_us"].values()) > 0
    else:
        assert "not found" in windows["profile"]["error"]


def test_trace(tmp_path: Path) -> None:
    args = ["--messages", str(MESSAGES), "--rate", "100", "--traced-rate", "50"]
    (result,) = bench(tmp_path, "trace", *args)
    assert result["target"]["name"] == "tidings-embedded"
    assert result["imported_from"] == str(REPO_ROOT / "workloads/tidings/__init__.py")
    assert_trace(result)


def test_trace_and_relay_on_a_reference_tree(tmp_path: Path) -> None:
    tree = ref_tree(tmp_path)
    args = ["--targets", "tidings-ref", "--ref-tree", str(tree), "--messages", str(MESSAGES)]
    (result,) = bench(tmp_path / "trace", "trace", *args, "--rate", "50", "--traced-rate", "25")
    assert result["target"]["name"].startswith("tidings-embedded (ref ")
    assert result["target"]["imported_from"] == str(tree / "workloads/tidings/__init__.py")
    assert result["imported_from"] == str(tree / "workloads/tidings/__init__.py")
    assert_trace(result)

    args = ["--targets", "tidings,tidings-ref", "--ref-tree", str(tree), "--pairs", "5"]
    results = bench(tmp_path / "relay", "relay", *args, "--rates", "20", "--duration", "2")
    assert [r["target"]["name"] for r in results] == [
        "tidings-embedded",
        result["target"]["name"],
    ]
    assert results[1]["target"]["imported_from"] == str(tree / "workloads/tidings/__init__.py")
    for relay in results:
        assert relay["connected"] == 10
        assert_steps(relay)
