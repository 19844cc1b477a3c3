"""The inbox group's sticky assignor: balanced, and moves as little as balance allows."""

from __future__ import annotations

import random

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from hypothesis import given
from hypothesis import strategies as st

from tidings.bus._sticky import StickyAssignor, sticky_assign


def _check_balanced(partitions: list[int], result: dict[str, list[int]]) -> None:
    handed_out = sorted(p for ps in result.values() for p in ps)
    assert handed_out == sorted(partitions)  # each exactly once
    sizes = [len(ps) for ps in result.values()]
    assert max(sizes) - min(sizes) <= 1


def test_fresh_group_gets_a_balanced_split() -> None:
    result = sticky_assign(range(8), {"a": [], "b": [], "c": []})
    _check_balanced(list(range(8)), result)


def test_a_joining_member_takes_only_its_share() -> None:
    before = sticky_assign(range(64), {"a": [], "b": [], "c": []})
    after = sticky_assign(range(64), {**before, "d": []})
    _check_balanced(list(range(64)), after)
    moved = sum(len(set(before[m]) - set(after[m])) for m in before)
    assert moved == len(after["d"]) == 16  # round robin would move about 48


def test_a_leaving_member_hands_over_only_its_own() -> None:
    before = sticky_assign(range(64), {"a": [], "b": [], "c": [], "d": []})
    after = sticky_assign(range(64), {m: before[m] for m in "abc"})
    _check_balanced(list(range(64)), after)
    for member in "abc":
        assert set(before[member]) <= set(after[member])


def test_doubly_claimed_and_unknown_partitions_are_handed_out_afresh() -> None:
    result = sticky_assign(range(4), {"a": [0, 1, 9], "b": [1, 2]})
    _check_balanced([0, 1, 2, 3], result)
    assert 0 in result["a"] and 2 in result["b"]


@given(
    partitions=st.integers(min_value=0, max_value=80),
    members=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_any_claims_give_a_balanced_assignment(partitions: int, members: int, seed: int) -> None:
    rng = random.Random(seed)
    universe = list(range(partitions))
    claims = {
        f"m{i}": rng.sample(range(partitions + 3), rng.randint(0, min(10, partitions + 3)))
        for i in range(members)
    }
    result = sticky_assign(universe, claims)
    assert set(result) == set(claims)
    _check_balanced(universe, result)


def test_assignor_round_trips_its_claims_through_join_metadata() -> None:
    cluster = ClusterMetadata()
    cluster.partitions_for_topic = lambda topic: set(range(6)) if topic == "t" else None
    a, b = StickyAssignor(), StickyAssignor()
    first = a.assign(cluster, {"a": a.metadata(["t"])})
    a.on_assignment(first["a"])
    assert first["a"].partitions()[0].topic == "t"
    assert sorted(tp.partition for tp in first["a"].partitions()) == list(range(6))
    second = a.assign(cluster, {"a": a.metadata(["t"]), "b": b.metadata(["t"])})
    kept = {tp.partition for tp in second["a"].partitions()}
    given_b = {tp.partition for tp in second["b"].partitions()}
    assert len(kept) == len(given_b) == 3 and not kept & given_b
    assert isinstance(second["b"], ConsumerProtocolMemberAssignment)
    # encodable as aiokafka sends it
    second["b"].encode()


def test_unreadable_user_data_counts_as_no_claim() -> None:
    cluster = ClusterMetadata()
    cluster.partitions_for_topic = lambda topic: {0, 1}
    a = StickyAssignor()
    meta = a.metadata(["t"])
    meta.user_data = b"not json"
    result = a.assign(cluster, {"a": meta})
    assert sorted(tp.partition for tp in result["a"].partitions()) == [0, 1]
