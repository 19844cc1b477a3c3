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


# --- claims are an order of preference: a member over quota gives up the tail ---------


def test_a_member_over_quota_keeps_the_head_of_its_claims() -> None:
    result = sticky_assign(range(4), {"a": [3, 1, 0, 2], "b": []})
    assert result == {"a": [1, 3], "b": [0, 2]}
    # an older member's sorted list reads as "low numbers first", as before
    assert sticky_assign(range(4), {"a": [0, 1, 2, 3], "b": []})["a"] == [0, 1]


def _assign_and_apply(
    cluster: ClusterMetadata, assignors: dict[str, StickyAssignor]
) -> dict[str, list[int]]:
    result = next(iter(assignors.values())).assign(
        cluster, {m: a.metadata(["t"]) for m, a in assignors.items()}
    )
    for member, assignor in assignors.items():
        assignor.on_assignment(result[member])
    return {m: sorted(tp.partition for tp in result[m].partitions()) for m in assignors}


def _topic(partitions: int) -> ClusterMetadata:
    cluster = ClusterMetadata()
    cluster.partitions_for_topic = lambda topic: set(range(partitions)) if topic == "t" else None
    return cluster


def test_a_rejoining_empty_member_takes_what_the_survivor_gained_last() -> None:
    """A pod deleted and recreated: the survivor held 0-3 from the start, took 4-7 while
    the other was away, and hands exactly those back (no weights: by tenure)."""
    cluster = _topic(8)
    a, b = StickyAssignor(), StickyAssignor()
    assert _assign_and_apply(cluster, {"a": a, "b": b}) == {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7]}
    assert _assign_and_apply(cluster, {"a": a}) == {"a": list(range(8))}
    again = _assign_and_apply(cluster, {"a": a, "b2": StickyAssignor()})
    assert again == {"a": [0, 1, 2, 3], "b2": [4, 5, 6, 7]}


def test_a_rejoining_empty_member_takes_the_empty_partitions_first() -> None:
    """With sockets counted per partition, the survivor keeps every partition clients
    are on (old or gained) and gives up the empty ones, newest first: nobody is bumped."""
    cluster = _topic(8)
    sockets: dict[int, int] = {}
    a, b = StickyAssignor(lambda: sockets), StickyAssignor()
    _assign_and_apply(cluster, {"a": a, "b": b})  # a: 0-3, b: 4-7
    _assign_and_apply(cluster, {"a": a})  # b died: a holds all 8
    sockets.update({0: 3, 2: 1, 5: 2})  # a's own clients on 0 and 2, b's moved to 5
    assert a.claims()["t"] == [0, 2, 5, 1, 3, 4, 6, 7]
    again = _assign_and_apply(cluster, {"a": a, "b2": StickyAssignor()})
    assert again == {"a": [0, 1, 2, 5], "b2": [3, 4, 6, 7]}
    assert not {p for p in sockets if p not in again["a"]}


def test_when_clients_must_move_the_ones_that_came_last_go() -> None:
    """Every partition has clients: the survivor keeps the ones its own clients have been
    on all along, however many came over from the lost server."""
    cluster = _topic(8)
    sockets: dict[int, int] = {}
    a, b = StickyAssignor(lambda: sockets), StickyAssignor()
    _assign_and_apply(cluster, {"a": a, "b": b})  # a: 0-3, b: 4-7
    _assign_and_apply(cluster, {"a": a})  # b died
    sockets.update({p: 1 if p < 4 else 5 for p in range(8)})
    again = _assign_and_apply(cluster, {"a": a, "b2": StickyAssignor()})
    assert again == {"a": [0, 1, 2, 3], "b2": [4, 5, 6, 7]}


def test_among_partitions_held_as_long_the_emptiest_go_first() -> None:
    """A third server joins two that started together: each gives up its emptiest."""
    cluster = _topic(6)
    sockets_a = {0: 9, 1: 1, 2: 5}
    sockets_b = {3: 2, 4: 7, 5: 8}
    a, b = StickyAssignor(lambda: sockets_a), StickyAssignor(lambda: sockets_b)
    assert _assign_and_apply(cluster, {"a": a, "b": b}) == {"a": [0, 1, 2], "b": [3, 4, 5]}
    again = _assign_and_apply(cluster, {"a": a, "b": b, "c": StickyAssignor()})
    assert again == {"a": [0, 2], "b": [4, 5], "c": [1, 3]}


def test_failing_weights_fall_back_to_tenure() -> None:
    def broken() -> dict[int, int]:
        raise RuntimeError("gateway not ready")

    cluster = _topic(4)
    a = StickyAssignor(broken)
    _assign_and_apply(cluster, {"a": a})
    assert a.claims() == {"t": [0, 1, 2, 3]}
