"""Reading the chat servers' membership records: who is up, and their connection counts.

Every chat server publishes a record (:class:`tidings.wire.members.MemberRecord`) keyed
by its server id (its pod name) to the compacted topic ``<prefix>.members`` every second,
and a tombstone when it exits cleanly. :class:`MembershipReader` reads the topic from the
beginning (:class:`tidings.wire.compacted.CompactedTopicReader`: no consumer group,
nothing committed) and keeps the newest record per server, as a :class:`Member` (what the
operator needs of it); records older than ``ttl_s`` are stale (the server died without a
tombstone).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tidings.wire.compacted import CompactedTopicReader
from tidings.wire.members import MemberRecord
from tidings_operator.observe import PodView

__all__ = [
    "HISTORY_RECORDS",
    "MEMBER_TTL_S",
    "Member",
    "MembershipReader",
    "current_members",
    "decode_member",
    "first_reached",
]

log = logging.getLogger(__name__)

# The workloads' membership_ttl_s default: a record older than this is a dead server's.
MEMBER_TTL_S = 3.0
# Records kept per server (one a second): enough to date a recovery within a few minutes.
HISTORY_RECORDS = 300


@dataclass(frozen=True, slots=True)
class Member:
    server_id: str
    connections: int
    draining: bool
    ts_ms: int
    pod_uid: str | None = None  # the pod the server ran in (servers before 0.2: None)


def current_members(members: Mapping[str, Member], pods: Sequence[PodView]) -> dict[str, Member]:
    """The records that still describe a running chat server.

    A record published before the creation of the pod its server id names came from a
    pod that was replaced since (deleted, evicted, crashed): its last count is not
    connected any more, even while the record is fresh. A terminating pod's record is
    left out too, and so is the record of a chat pod that is gone (it names its pod's uid,
    and no pod of that name exists: its clients are not connected to anything the record
    can stand for, until they come back elsewhere). A record naming no pod and no uid (a
    server run outside the StatefulSet) is kept.
    A record that names its pod's uid is matched by it; one without (an older server)
    by time (creation times are whole seconds: such a record from within the same second
    as its successor's creation is still counted, until its tombstone or TTL).
    """
    by_name = {pod.name: pod for pod in pods}
    out: dict[str, Member] = {}
    for server_id, member in members.items():
        pod = by_name.get(server_id)
        if pod is None and member.pod_uid is not None:
            continue  # its pod is gone (deleted, evicted, its node lost)
        if pod is not None:
            if pod.terminating:
                continue
            if member.pod_uid is not None and member.pod_uid != pod.uid:
                continue  # the replaced pod's record, whenever it was published
            if pod.created is not None and member.ts_ms / 1000 < pod.created:
                continue
        out[server_id] = member
    return out


def first_reached(
    history: Mapping[str, Sequence[Member]],
    counted: Mapping[str, Member],
    *,
    since: float,
    threshold: float,
) -> float | None:
    """When the servers in ``counted`` (their current records) first reported at least
    ``threshold`` connections together after ``since`` (epoch seconds), replaying their
    records in time order; None if their history does not show it. Only records of the
    same pod (uid) as the current one count."""
    since_ms = int(since * 1000)
    latest: dict[str, int] = {}
    later: list[tuple[int, str, int]] = []
    for sid, current in counted.items():
        for record in history.get(sid, ()):
            if current.pod_uid is not None and record.pod_uid != current.pod_uid:
                continue
            if record.ts_ms <= since_ms:
                latest[sid] = record.connections
            else:
                later.append((record.ts_ms, sid, record.connections))
    for ts_ms, sid, connections in sorted(later):
        latest[sid] = connections
        if sum(latest.values()) >= threshold:
            return ts_ms / 1000
    return None


def decode_member(value: bytes) -> Member | None:
    """A membership record, or None when it cannot be read."""
    try:
        record = MemberRecord.decode(value)
    except (ValueError, KeyError, TypeError):
        return None
    return Member(
        server_id=record.server_id,
        connections=max(0, record.connections),
        draining=record.draining,
        ts_ms=record.ts,
        pod_uid=record.pod_uid or None,
    )


class MembershipReader:
    """The newest record per chat server, kept up to date by a background task."""

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        *,
        ttl_s: float = MEMBER_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self._ttl_ms = int(ttl_s * 1000)
        self._clock = clock
        self._records: dict[str, Member] = {}
        # Each server's recent records, for when a count was reached (first_reached).
        self._history: dict[str, deque[Member]] = {}
        self._reader = CompactedTopicReader(
            options, topic, self.apply, name=f"members:{topic}", poll_ms=500
        )

    async def start(self, *, catch_up_timeout_s: float = 10.0) -> None:
        """Start reading; wait up to ``catch_up_timeout_s`` for the records there now."""
        await self._reader.start(catch_up_timeout_s=catch_up_timeout_s)

    @property
    def caught_up(self) -> bool:
        return self._reader.caught_up

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        server_id = key.decode(errors="replace")
        if value is None:
            self._records.pop(server_id, None)
            return
        member = decode_member(value)
        if member is None:
            log.warning("ignoring an unreadable membership record for %s", server_id)
            return
        self._records[server_id] = member
        kept = self._history.get(server_id)
        if kept is None:
            kept = self._history[server_id] = deque(maxlen=HISTORY_RECORDS)
        kept.append(member)

    def history(self) -> dict[str, deque[Member]]:
        """The recent records of every server (about HISTORY_RECORDS seconds' worth)."""
        return self._history

    def members(self) -> dict[str, Member]:
        """The live servers (fresh, not tombstoned), by server id."""
        now_ms = int(self._clock() * 1000)
        return {
            sid: m for sid, m in sorted(self._records.items()) if now_ms - m.ts_ms <= self._ttl_ms
        }

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._reader.close()
