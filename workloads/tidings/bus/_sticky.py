"""A sticky partition assignor for the inbox consumer group.

Kafka's classic group protocol (the one aiokafka speaks) is *eager*: on every rebalance
each member gives up all its partitions and the group leader hands out a new
assignment. aiokafka's default round-robin assignor then reshuffles most partitions
whenever a chat server joins or leaves, and every moved partition means its users
reconnect to another server. This assignor keeps each member's previous partitions
where the balance allows (each member ends with ``P // n`` or ``P // n + 1``), so adding
or removing one server moves only about ``P / n`` partitions.

Each member sends the partitions it last held in its join metadata (JSON user data),
**in order of preference**: the ones it would least like to lose first. A member over
its quota keeps the head of its list and gives up the tail. A chat server puts first the
partitions with sockets on them, the longest held first (then the most sockets), and
the empty ones last: when a restarted peer rejoins empty, the survivor gives up empty
partitions first (nobody is bumped), then the ones it gained last (the clients that
came over from the lost server, going back to its successor), and keeps the ones its own
clients have been on all along. (Older members sent sorted lists; those read as a
preference for low numbers, as before.)
A partition claimed by two members (a member that fell out of the group and came back
still believes in its old assignment) is treated as unowned and handed out afresh.

aiokafka ships a ``StickyPartitionAssignor``, but it keeps its state in class
attributes (several consumers in one process overwrite each other's claims) and never
learns its generation (aio-libs/aiokafka#1175, #1176); this one is an instance per
consumer, and the core is a pure function, :func:`sticky_assign`. It is the consumer's
only assignor, with no fallback: see :meth:`tidings.bus.kafka.KafkaBus.start` for why.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

log = logging.getLogger(__name__)


def sticky_assign(
    partitions: Iterable[int], claims: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """Balanced assignment of ``partitions`` to the members of ``claims``, sticky.

    ``claims`` maps each member to the partitions it held before, most wanted first.
    Every partition goes to exactly one member, every member gets
    ``len(partitions) // n`` or one more, and as many claims as that balance allows are
    kept: a member over its quota keeps the first ones of its list.
    """
    members = sorted(claims)
    if not members:
        return {}
    universe = sorted(set(partitions))
    valid = set(universe)
    claimants: dict[int, int] = defaultdict(int)
    for member in members:
        for partition in set(claims[member]):
            claimants[partition] += 1
    mine = {
        member: [
            p for p in dict.fromkeys(claims[member]) if p in valid and claimants[p] == 1
        ]  # in the member's order of preference, each once
        for member in members
    }
    base, extra = divmod(len(universe), len(members))
    result: dict[str, list[int]] = {}
    # Keep previous partitions up to the quota, the most wanted first; the members that
    # held the most get the ``extra`` slots of one more partition first.
    for member in sorted(members, key=lambda m: (-len(mine[m]), m)):
        cap = base + 1 if extra > 0 else base
        result[member] = mine[member][:cap]
        if len(result[member]) == base + 1:
            extra -= 1
    taken = {p for kept in result.values() for p in kept}
    free = [p for p in universe if p not in taken]
    free.reverse()  # pop() from the end hands out the lowest partition first
    for member in sorted(members, key=lambda m: (len(result[m]), m)):
        while len(result[member]) < base and free:
            result[member].append(free.pop())
    for member in sorted(members, key=lambda m: (len(result[m]), m)):
        if not free:
            break
        if len(result[member]) == base:
            result[member].append(free.pop())
    assert not free, "sticky_assign left partitions unassigned"
    return {member: sorted(kept) for member, kept in result.items()}


class StickyAssignor:
    """aiokafka partition assignor (duck-typed: name, metadata, assign, on_assignment).

    One instance per consumer: it remembers the partitions this member was last given
    and since when. ``weights``, when given, is called once per join (from aiokafka's
    coordinator, on the event loop: keep it cheap) and says how much each partition is
    worth keeping (a chat server: the sockets connected on it; partition numbers of the
    one topic a chat server subscribes to). The member claims the partitions with weight
    first, longest held first (then heaviest), and the weightless ones last, so a
    rebalance that must take some away takes the empty ones, then the newest.
    """

    name = "tidings-sticky"
    version = 0

    def __init__(self, weights: Callable[[], Mapping[int, int]] | None = None) -> None:
        self._weights = weights
        self._owned: dict[str, list[int]] = {}
        # (topic, partition) -> the number of the assignment that gave it to this member
        # (kept while it stays): smaller is held longer.
        self._since: dict[tuple[str, int], int] = {}
        self._assignments = 0

    def claims(self) -> dict[str, list[int]]:
        """The owned partitions per topic, the ones to keep first."""
        weights: Mapping[int, int] = {}
        if self._weights is not None and self._owned:
            try:
                weights = self._weights()
            except Exception:
                log.warning("partition weights failed; claiming by tenure only", exc_info=True)

        def rank(topic: str, partition: int) -> tuple[bool, int, int, int]:
            weight = weights.get(partition, 0)
            since = self._since.get((topic, partition), 0)
            return (weight <= 0, since, -weight, partition)

        return {
            topic: sorted(partitions, key=partial(rank, topic))
            for topic, partitions in self._owned.items()
        }

    def metadata(self, topics: Iterable[str]) -> Any:
        """This member's join metadata: its subscription and :meth:`claims` as user data."""
        user_data = json.dumps({"owned": self.claims()}, separators=(",", ":")).encode()
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def on_assignment(self, assignment: Any) -> None:
        """Remember the partitions assigned to this member, and since which assignment each
        is held."""
        self._assignments += 1
        owned: dict[str, list[int]] = defaultdict(list)
        for topic, partitions in assignment.assignment:
            owned[topic].extend(partitions)
        self._owned = dict(owned)
        held = {(topic, p) for topic, partitions in self._owned.items() for p in partitions}
        self._since = {key: self._since.get(key, self._assignments) for key in held}

    def assign(self, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
        """As the group leader: each member's assignment from the claims in ``members``'
        metadata (:func:`sticky_assign` per topic)."""
        claims: dict[str, dict[str, list[int]]] = {}
        subscribers: dict[str, list[str]] = defaultdict(list)
        for member_id, metadata in members.items():
            claims[member_id] = _decode_owned(metadata.user_data, member_id)
            for topic in metadata.subscription:
                subscribers[topic].append(member_id)
        per_member: dict[str, dict[str, list[int]]] = {member_id: {} for member_id in members}
        for topic, topic_members in sorted(subscribers.items()):
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:
                log.warning("no partition metadata for topic %s", topic)
                continue
            topic_claims = {m: claims[m].get(topic, []) for m in topic_members}
            for member_id, assigned in sticky_assign(partitions, topic_claims).items():
                if assigned:
                    per_member[member_id][topic] = assigned
        return {
            member_id: ConsumerProtocolMemberAssignment(self.version, sorted(topics.items()), b"")
            for member_id, topics in per_member.items()
        }


def _decode_owned(user_data: bytes | None, member_id: str) -> dict[str, list[int]]:
    if not user_data:
        return {}
    try:
        owned = json.loads(user_data)["owned"]
        return {str(topic): [int(p) for p in partitions] for topic, partitions in owned.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring unreadable assignor data from member %s", member_id)
        return {}
