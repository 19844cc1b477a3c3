"""The chat servers' membership record, as published on ``<prefix>.members``.

Every chat server publishes one every ``membership_interval_s``, keyed by its server id
(its pod name), and a tombstone when it exits cleanly; the API answers discovery from the
records (``tidings.cluster.membership``) and the operator sums their connection counts
(``tidings_operator.members``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["MemberRecord"]


@dataclass(frozen=True, slots=True)
class MemberRecord:
    server_id: str
    url: str
    partitions: tuple[int, ...] = ()
    connections: int = 0
    draining: bool = False
    ts: int = 0  # ms since the epoch; the publisher stamps it
    # The inbox topic's partition count as this server sees it (0: not known).
    partition_count: int = 0
    # The uid of the pod the server runs in ("": not in a pod): a record of a replaced
    # pod is told from its successor's, which has the same server id.
    pod_uid: str = ""

    def encode(self) -> bytes:
        """The record's JSON, as published."""
        return json.dumps(
            {
                "server_id": self.server_id,
                "url": self.url,
                "partitions": sorted(self.partitions),
                "connections": self.connections,
                "draining": self.draining,
                "ts": self.ts,
                "partition_count": self.partition_count,
                **({"pod_uid": self.pod_uid} if self.pod_uid else {}),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> MemberRecord:
        """A published record; ValueError, KeyError or TypeError when it is not one."""
        data = json.loads(raw)
        return cls(
            server_id=str(data["server_id"]),
            url=str(data["url"]),
            partitions=tuple(int(p) for p in data.get("partitions", ())),
            connections=int(data.get("connections", 0)),
            draining=bool(data.get("draining", False)),
            ts=int(data.get("ts", 0)),
            partition_count=int(data.get("partition_count", 0)),
            pod_uid=str(data.get("pod_uid", "")),
        )
