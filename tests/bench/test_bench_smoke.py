"""Smoke runs of every `tidings bench` scenario: tiny, and asserting only that each ran
and produced its numbers (counts, ordered percentiles, every message delivered). Timing
thresholds have no place here: CI machines are noisy. The full runs and their figures are
in docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PERCENTILES = ("p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms")


def bench(tmp_path: Path, *args: str, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    out = tmp_path / "result.json"
    command = [sys.executable, "-m", "tidings", "bench", *args, "--out", str(out)]
    command += ["--workdir", str(tmp_path / "work")]
    done = subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr[-5000:]}"
    report = json.loads(out.read_text())
    assert report["environment"]["nproc"] >= 1
    results: list[dict[str, Any]] = report["results"]
    for result in results:
        assert "error" not in result, result
    return results


def assert_latency(summary: dict[str, Any], count: int) -> None:
    assert summary["count"] == count
    values = [summary[p] for p in PERCENTILES]
    assert all(v is not None and v > 0 for v in values), summary
    assert values == sorted(values), summary


def assert_steps(result: dict[str, Any]) -> None:
    assert result["steps"], result
    for step in result["steps"]:
        assert step["sent"] > 0
        assert step["received"] == step["expected_deliveries"], step
        assert step["lost"] == 0
        assert_latency(step["latency"], step["received"])
        assert step["server_cpu"]["cpu_s"] >= 0
        assert step["generator_cpu"]["wall_s"] > 0


def test_idle(tmp_path: Path) -> None:
    results = bench(
        tmp_path,
        "idle",
        "--targets",
        "tidings,baseline,floor",
        "--connections",
        "50",
        "--hold",
        "2",
    )
    names = [r["target"]["name"] for r in results]
    assert names == ["tidings-embedded", "baseline-websockets", "floor-uvloop"]
    for result in results:
        assert result["connected"] == 50
        assert result["server_sockets"] >= 50
        assert result["total_per_conn_kib"] > 0
        assert result["kernel_per_conn_kib"] > 0
        assert result["server_cpu"]["wall_s"] > 0
    assert "total_per_conn_kib" in results[0]["vs_baseline"]


def test_relay(tmp_path: Path) -> None:
    # Users through the HTTP API here (the other scenarios seed them directly).
    args = ["--targets", "tidings,baseline", "--pairs", "10", "--rates", "40", "--seed", "api"]
    results = bench(tmp_path, "relay", *args, "--duration", "2", "--drain", "10")
    for result in results:
        assert result["connected"] == 20
        assert [s["offered_rate"] for s in result["steps"]] == [40]
        assert_steps(result)
    tidings = results[0]
    for step in tidings["steps"]:
        assert step["counts"]["acked"] == step["sent"]
        assert_latency(step["ack_latency"], step["sent"])


def test_fanout(tmp_path: Path) -> None:
    args = ["--targets", "tidings,baseline", "--group-size", "100", "--rates", "2"]
    results = bench(tmp_path, "fanout", *args, "--duration", "2", "--drain", "20")
    for result in results:
        assert result["connected"] == 100
        assert_steps(result)
        assert result["steps"][0]["expected_deliveries"] == 99 * result["steps"][0]["sent"]


def on_the_test_environment(test: Callable[..., None]) -> Callable[..., None]:
    """A cluster run: it needs Kafka, Cassandra and PostgreSQL."""
    marked: Callable[..., None] = pytest.mark.kafka(
        pytest.mark.cassandra(pytest.mark.postgres(test))
    )
    return marked


def cluster_env(testenv: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The arguments and environment that point a cluster run at the test environment."""
    keys = (
        "TIDINGS_TEST_POSTGRES_URL",
        "TIDINGS_TEST_KAFKA_BOOTSTRAP",
        "TIDINGS_TEST_CASSANDRA_HOSTS",
        "TIDINGS_TEST_CASSANDRA_PORT",
    )
    state = os.environ.get("TIDINGS_TESTENV_STATE", str(REPO_ROOT / ".testenv"))
    return ["--chats", "2", "--testenv-state", state], {k: testenv[k] for k in keys}


@on_the_test_environment
def test_cluster(tmp_path: Path, testenv: Mapping[str, str]) -> None:
    args, env = cluster_env(testenv)
    args += ["--pairs", "10", "--rates", "20"]
    (result,) = bench(tmp_path, "cluster", *args, "--duration", "2", "--drain", "20", env=env)
    assert result["chat_servers"] == 2
    assert result["connected"] == 20
    assert_steps(result)
    assert set(result["steps"][0]["backend_cpu"]) == {"postgres", "kafka", "cassandra"}


@on_the_test_environment
def test_cluster_fanout(tmp_path: Path, testenv: Mapping[str, str]) -> None:
    args, env = cluster_env(testenv)
    args += ["--targets", "cluster", "--group-size", "30", "--rates", "5"]
    (result,) = bench(tmp_path, "fanout", *args, "--duration", "2", "--drain", "20", env=env)
    assert result["chat_servers"] == 2
    assert result["connected"] == 30
    assert_steps(result)
    assert result["steps"][0]["expected_deliveries"] == 29 * result["steps"][0]["sent"]
    assert set(result["steps"][0]["backend_cpu"]) == {"postgres", "kafka", "cassandra"}


def assert_storm(result: dict[str, Any], drained: int) -> None:
    """Every drained client came back, and every acked probe message was delivered once."""
    assert result["drained_clients"] == drained
    assert result["came_back"] == drained
    assert result["not_back"] == 0
    assert result["all_back_s"] > 0
    assert_latency(result["time_to_back"], drained)
    assert result["time_to_back_phases"]["hello_to_synced"]["count"] == drained
    probe = result["probe"]
    assert probe["acked"] > 0
    assert probe["acked_not_delivered"] == 0, probe
    assert probe["duplicate_deliveries"] == 0, probe


def test_storm(tmp_path: Path) -> None:
    env = {"TIDINGS_BENCH_ENV_DRAIN_BUDGET_S": "2"}
    (result,) = bench(tmp_path, "storm", "--targets", "tidings", "--connections", "200", env=env)
    assert result["connections"] == 200
    assert_storm(result, 200)


@on_the_test_environment
def test_cluster_storm(tmp_path: Path, testenv: Mapping[str, str]) -> None:
    args, env = cluster_env(testenv)
    args += ["--targets", "cluster", "--connections", "100", "--bystanders", "20"]
    (result,) = bench(tmp_path, "storm", *args, env=env)
    assert result["connections"] == 120
    assert_storm(result, 100)
    assert result["bystanders"] == 20
    (drained_url,) = set(result["before"]["clients_by_server"]) - set(
        result["after"]["clients_by_server"]
    )
    assert result["before"]["clients_by_server"][drained_url] == 100
    assert sum(result["after"]["clients_by_server"].values()) == 120
