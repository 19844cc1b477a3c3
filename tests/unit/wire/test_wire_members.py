"""The membership record as the chat servers publish it and the operator reads it."""

from __future__ import annotations

from tidings.wire.members import MemberRecord
from tidings_operator import members


def test_the_operator_reads_what_a_chat_server_publishes() -> None:
    record = MemberRecord(
        server_id="demo-chat-3",
        url="ws://demo-chat-3.demo-chat.ns.svc:8080/v1/ws",
        partitions=(1, 5),
        connections=70_000,
        draining=True,
        ts=1_800_000_000_000,
        partition_count=64,
        pod_uid="0f7c",
    )
    decoded = members.decode_member(record.encode())
    assert decoded == members.Member("demo-chat-3", 70_000, True, 1_800_000_000_000, "0f7c")
    older = MemberRecord("demo-chat-4", "ws://x", connections=-1, ts=5).encode()
    assert members.decode_member(older) == members.Member("demo-chat-4", 0, False, 5, None)
    assert members.decode_member(b"not json") is None
    assert members.decode_member(b'{"url": "ws://x"}') is None  # no server id


def test_reader_keeps_the_newest_record_and_forgets_tombstones_and_stale_ones() -> None:
    now = [1_800_000_000.0]
    reader = members.MembershipReader({}, "pin.members", ttl_s=10.0, clock=lambda: now[0])

    def record(sid: str, connections: int, ts_s: float) -> bytes:
        return MemberRecord(sid, "ws://x", connections=connections, ts=int(ts_s * 1000)).encode()

    reader.apply(b"a", record("a", 1, now[0] - 1))
    reader.apply(b"a", record("a", 5, now[0]))
    reader.apply(b"b", record("b", 7, now[0] - 11))  # stale
    reader.apply(b"c", record("c", 9, now[0]))
    reader.apply(b"c", None)  # clean exit
    reader.apply(None, b"ignored")
    reader.apply(b"d", b"garbage")
    assert {sid: m.connections for sid, m in reader.members().items()} == {"a": 5}
    assert [m.connections for m in reader.history()["a"]] == [1, 5]
    assert not reader.caught_up  # not started
