"""Replication maps as Cassandra reports them, and what a change asks of the operator."""

from __future__ import annotations

import pytest

from tidings.storage.cassandra.schema import ReplicationChange, _too_few_nodes, replication_map

SIMPLE_1 = {"class": "SimpleStrategy", "replication_factor": "1"}


def test_a_literal_reads_as_cassandra_reports_it() -> None:
    assert replication_map("{'class': 'SimpleStrategy', 'replication_factor': 1}") == SIMPLE_1
    nts = "{'class': 'org.apache.cassandra.locator.NetworkTopologyStrategy', 'dc1': 3}"
    assert replication_map(nts) == {"class": "NetworkTopologyStrategy", "dc1": "3"}
    for bad in ("SimpleStrategy", "{'class': }", "[1, 2]"):
        with pytest.raises(ValueError, match="CQL map literal"):
            replication_map(bad)


def test_more_replicas_need_a_repair_and_fewer_a_cleanup() -> None:
    three = {"class": "SimpleStrategy", "replication_factor": "3"}
    grow = ReplicationChange("ks", SIMPLE_1, three).repair
    assert grow.startswith("run `nodetool repair -full ks` on every node")
    assert "hold no data until repaired" in grow
    shrink = ReplicationChange("ks", three, SIMPLE_1).repair
    assert shrink.startswith("run `nodetool cleanup ks`") and "repair" not in shrink
    moved = ReplicationChange("ks", SIMPLE_1, {"class": "NetworkTopologyStrategy", "dc1": "1"})
    assert "replicas moved" in moved.repair


def test_more_replicas_than_nodes_are_refused_per_datacenter() -> None:
    nodes = {"dc1": 3, "dc2": 1}
    assert _too_few_nodes({"class": "SimpleStrategy", "replication_factor": "4"}, nodes) is None
    assert _too_few_nodes({"class": "SimpleStrategy", "replication_factor": "5"}, nodes) == (
        "5 replicas asked in the cluster, which has 4 nodes: writes would fail"
    )
    nts = {"class": "NetworkTopologyStrategy", "dc1": "3", "dc2": "2"}
    assert _too_few_nodes(nts, nodes) == (
        "2 replicas asked in dc2, which has 1 node: writes would fail"
    )
    assert _too_few_nodes({"class": "NetworkTopologyStrategy", "dc3": "1"}, nodes) == (
        "1 replicas asked in dc3, which has 0 nodes: writes would fail"
    )
