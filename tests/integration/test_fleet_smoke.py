"""A short run of the fleet-scale driver (``make fleet``, e2e/fleet/): 20 chat pods on 5
kwok nodes of its own, the real operator, real Kafka and Cassandra.

What a user of the operator relies on at any size, checked on the way: the autoscaler
asks for the size the reported connections need and every pod becomes ready; moving
counts reach the status; a new image rolls every pod, one at a time, each after the
replaced server's (simulated) drain; the operator's API calls are counted per tick; and
the run leaves nothing behind (nodes, namespace). The figures themselves are for
``make fleet`` and docs/operator.md ("At fleet scale"); this test asserts no timing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config as kube_config

from tidings_operator.kube import Kube

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e" / "fleet"))

from fleet_driver import FleetConfig, run

pytestmark = [
    pytest.mark.kube,
    pytest.mark.kafka,
    pytest.mark.cassandra,
    pytest.mark.timeout(420),
]

REPLICAS = 20
DRAIN_S = 1.0


async def test_fleet_smoke_scales_counts_and_rolls_one_at_a_time(
    testenv: Any, tmp_path: Path
) -> None:
    cfg = FleetConfig(
        replicas=REPLICAS,
        nodes=5,
        start_replicas=2,
        drain_budget_s=1,
        drain_s=DRAIN_S,
        steady_s=12,
        change_every_s=4,
        scale_timeout_s=120,
        roll_timeout_s=240,
        log_dir=tmp_path,
    )
    result = await run(cfg)

    scale = result["scale_up"]
    assert scale["decided_after_s"] > 0, "the autoscaler never asked for 20 chat servers"
    assert scale["operator"]["ticks"] > 0

    steady = result["steady"]
    assert steady["count_changes"] >= 2
    assert steady["operator"]["ticks"] > 0
    # The operator's requests are counted (the figures behind "API calls per tick").
    assert steady["operator"]["kube_calls_per_tick"] > 0, steady["operator"]["api_calls"]
    assert steady["operator"]["rss_mib"] > 0

    roll = result["roll"]
    assert roll["replaced"] == REPLICAS
    assert roll["evictions_counted"] == REPLICAS
    assert roll["most_out_at_once"] <= 1, "more than one chat server out at once"
    # Each replacement waited for the last one's server to leave and the new one to join.
    assert roll["seconds"] >= REPLICAS * DRAIN_S
    # (an eviction the disruption budget refuses for now is sent again at a later tick)
    assert roll["operator"]["api_calls"].get("kube POST pods/eviction", 0) >= REPLICAS

    # Nothing left behind: the run's nodes and namespace are gone.
    kube = Kube(kube_config.new_client_from_config(config_file=testenv["TIDINGS_TEST_KUBECONFIG"]))
    try:
        selector = f"fleet.tidings.dev/run={result['run_id']}"
        nodes = await kube.request("GET", "/api/v1/nodes", query=[("labelSelector", selector)])
        assert not nodes["items"], [n["metadata"]["name"] for n in nodes["items"]]
        namespace = await kube.request(
            "GET", f"/api/v1/namespaces/{result['namespace']}", missing_ok=True
        )
        assert namespace is None, "the run's namespace is still there"
    finally:
        kube.close()
