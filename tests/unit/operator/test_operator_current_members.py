"""Which membership records count towards the connections a ChatCluster reports."""

from __future__ import annotations

from test_operator_report import T, pod  # (this directory is on sys.path)

from tidings_operator.members import Member, current_members, first_reached


def member(name: str, connections: int, ts: float) -> Member:
    return Member(server_id=name, connections=connections, draining=False, ts_ms=int(ts * 1000))


def test_a_replaced_pods_last_record_no_longer_counts() -> None:
    """chat-1 was deleted and its successor created at T: the record the old pod
    published at T - 1 (70,000 clients) is fresh but no longer connected."""
    pods = [pod(0), pod(1, uid="new", created=T), pod(2)]
    members = {
        "c-chat-0": member("c-chat-0", 70_000, T),
        "c-chat-1": member("c-chat-1", 70_000, T - 1),
        "c-chat-2": member("c-chat-2", 70_000, T),
    }
    assert set(current_members(members, pods)) == {"c-chat-0", "c-chat-2"}
    # ...until the new pod publishes its own.
    members["c-chat-1"] = member("c-chat-1", 0, T + 1)
    assert set(current_members(members, pods)) == {"c-chat-0", "c-chat-1", "c-chat-2"}


def test_a_terminating_pod_is_left_out_and_a_record_without_a_pod_is_kept() -> None:
    pods = [pod(0, terminating=True, terminating_since=T)]
    members = {
        "c-chat-0": member("c-chat-0", 5, T),
        "outside": member("outside", 7, T),
    }
    assert set(current_members(members, pods)) == {"outside"}


def test_a_record_naming_its_pod_uid_counts_only_for_that_pod() -> None:
    """The old pod's last record, published within the second its successor was created
    (so not older than the successor by creation time), still is not the successor's: it
    names the old pod's uid. The successor's own record counts."""
    pods = [pod(1, uid="new", created=T)]
    stale = Member("c-chat-1", 70_000, False, int((T + 0.4) * 1000), pod_uid="old")
    assert current_members({"c-chat-1": stale}, pods) == {}
    own = Member("c-chat-1", 0, False, int((T + 0.4) * 1000), pod_uid="new")
    assert current_members({"c-chat-1": own}, pods) == {"c-chat-1": own}


def test_the_record_of_a_chat_pod_that_is_gone_no_longer_counts() -> None:
    """chat-1 was deleted and no successor exists yet: its last record (fresh, 70,000
    clients) does not stand for anyone connected, so "recovered" waits for the clients
    to come back on the other servers."""
    pods = [pod(0)]
    gone = Member("c-chat-1", 70_000, False, int(T * 1000), pod_uid="old")
    outside = Member("outside", 7, False, int(T * 1000))
    assert current_members({"c-chat-1": gone, "outside": outside}, pods) == {"outside": outside}


def test_first_reached_replays_the_records_in_time_order() -> None:
    def rec(sid: str, n: int, ts: float, uid: str | None = None) -> Member:
        return Member(sid, n, False, int(ts * 1000), pod_uid=uid)

    history = {
        "c-chat-0": [
            rec("c-chat-0", 100, T - 5), rec("c-chat-0", 150, T + 1), rec("c-chat-0", 160, T + 3)
        ],
        "c-chat-1": [rec("c-chat-1", 100, T - 5), rec("c-chat-1", 130, T + 2)],
        # chat-2's old pod (uid "old") reported 100 before it went: not the current pod's.
        "c-chat-2": [rec("c-chat-2", 100, T - 5, "old"), rec("c-chat-2", 0, T + 4, "new")],
    }  # fmt: skip
    counted = {sid: records[-1] for sid, records in history.items()}
    assert first_reached(history, counted, since=T, threshold=280) == T + 2  # 150 + 130
    assert first_reached(history, counted, since=T, threshold=290) == T + 3  # 160 + 130
    assert first_reached(history, counted, since=T, threshold=300) is None
    assert first_reached(history, counted, since=T - 10, threshold=200) == T - 5
