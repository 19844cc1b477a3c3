"""The embedded store's group commit: batches, failures, heads, dedupe, search lag."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tidings.core.model import InboxEntry, Message
from tidings.storage.base import ClientMsgIdReused
from tidings.storage.sqlite.store import SqliteMessageStore
from tidings.storage.sqlite.writer import GroupCommitWriter

ALICE, BOB, CAROL = 11, 22, 33


def message(n: int, client_msg_id: str | None = None, body: str = "hi") -> Message:
    return Message(1000 + n, f"dm:{ALICE}:{BOB}", ALICE, 7, client_msg_id or f"c{n}", body, n)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMessageStore]:
    opened = await SqliteMessageStore.open(tmp_path / "messages.db")
    yield opened
    await opened.close()


async def test_concurrent_appends_share_transactions_and_heads_stay_gapless(
    store: SqliteMessageStore,
) -> None:
    delivered: dict[int, list[InboxEntry]] = {}
    store.on_appended = lambda by_user: [
        delivered.setdefault(u, []).extend(e) for u, e in by_user.items()
    ]
    await asyncio.gather(*(store.append(message(n), [ALICE, BOB]) for n in range(200)))
    assert store.writer.operations == 200
    assert store.writer.batches < 200  # they were grouped
    for user in (ALICE, BOB):
        assert [e.seq for e in delivered[user]] == list(range(1, 201))
        assert store.visible_head(user) == 200
        assert [e.seq for e in await store.inbox_after(user, 0, 500)] == list(range(1, 201))


async def test_a_resend_returns_the_first_message_and_appends_nothing(
    store: SqliteMessageStore,
) -> None:
    first = await store.append(message(1, "same"), [ALICE, BOB])
    again = await store.append(message(2, "same"), [ALICE, BOB])
    assert again.message == first.message and again.seqs == {}
    assert store.visible_head(BOB) == 1


async def test_a_client_msg_id_reused_for_another_body_or_channel_is_refused(
    store: SqliteMessageStore,
) -> None:
    await store.append(message(1, "x"), [ALICE, BOB])
    with pytest.raises(ClientMsgIdReused):
        await store.append(message(2, "x", body="other"), [ALICE, BOB])
    other_channel = Message(1003, f"dm:{ALICE}:{CAROL}", ALICE, 7, "x", "hi", 3)
    with pytest.raises(ClientMsgIdReused):
        await store.append(other_channel, [ALICE, CAROL])
    assert store.visible_head(CAROL) == 0
    assert await store.inbox_after(CAROL, 0, 10) == []


async def test_a_failing_operation_leaves_the_rest_of_its_batch_committed(tmp_path: Path) -> None:
    writer = GroupCommitWriter(tmp_path / "w.db")
    await writer.start(lambda conn: conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)"))

    def insert(k: int) -> object:
        return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (k,)).rowcount

    results = await asyncio.gather(
        writer.submit(insert(1)),
        writer.submit(insert(1)),  # a duplicate key: fails alone
        writer.submit(insert(2)),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], sqlite3.IntegrityError)
    rows = await writer.read(lambda conn: conn.execute("SELECT k FROM t ORDER BY k").fetchall())
    assert rows == [(1,), (2,)]
    await writer.close()


async def test_heads_survive_a_reopen(tmp_path: Path) -> None:
    store = await SqliteMessageStore.open(tmp_path / "m.db")
    for n in range(5):
        await store.append(message(n), [ALICE, BOB])
    await store.close()
    reopened = await SqliteMessageStore.open(tmp_path / "m.db")
    assert reopened.visible_head(BOB) == 5
    appended = await reopened.append(message(9), [ALICE, BOB])
    assert appended.seqs == {ALICE: 6, BOB: 6}
    await reopened.close()


async def test_search_finds_a_message_right_after_its_ack(store: SqliteMessageStore) -> None:
    await store.append(message(1, body="the quick brown fox"), [ALICE, BOB])
    found = await store.search([f"dm:{ALICE}:{BOB}"], "brown", 10)
    assert [m.body for m in found] == ["the quick brown fox"]


async def test_the_indexer_catches_up_in_the_background(store: SqliteMessageStore) -> None:
    for n in range(3):
        await store.append(message(n, body=f"word{n} common"), [ALICE, BOB])
    indexer = asyncio.create_task(store.run_indexer(interval_s=0.01))
    try:
        for _ in range(200):
            count = await store.writer.read(
                lambda conn: conn.execute(
                    "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH 'common'"
                ).fetchone()[0]
            )
            if count == 3:
                break
            await asyncio.sleep(0.01)
        assert count == 3
    finally:
        indexer.cancel()


async def test_a_database_of_the_trigger_version_keeps_its_index(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE messages (message_id INTEGER PRIMARY KEY, channel_id TEXT NOT NULL,
            sender_id INTEGER NOT NULL, sender_device_id INTEGER NOT NULL,
            client_msg_id TEXT NOT NULL, body TEXT NOT NULL, ts INTEGER NOT NULL);
        CREATE VIRTUAL TABLE messages_fts USING fts5 (
            body, content='messages', content_rowid='message_id', tokenize='unicode61');
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, body) VALUES (new.message_id, new.body);
        END;
        INSERT INTO messages VALUES (5, 'dm:11:22', 11, 7, 'old', 'ancient history', 1);
        """
    )
    conn.commit()
    conn.close()
    store = await SqliteMessageStore.open(path)
    await store.append(message(50, body="recent history"), [ALICE, BOB])
    found = await store.search([f"dm:{ALICE}:{BOB}"], "history", 10)
    assert sorted(m.body for m in found) == ["ancient history", "recent history"]
    await store.close()


async def test_a_store_written_before_channel_events_opens_and_reads_on(tmp_path: Path) -> None:
    """A messages.db of schema version 3 (before issue #20) gains the new columns; its
    messages read back unchanged and can be edited and searched."""
    path = tmp_path / "messages.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE messages (message_id INTEGER PRIMARY KEY, channel_id TEXT NOT NULL, "
        "sender_id INTEGER NOT NULL, sender_device_id INTEGER NOT NULL, "
        "client_msg_id TEXT NOT NULL, body TEXT NOT NULL, ts INTEGER NOT NULL, "
        "attachments TEXT);"
        "INSERT INTO messages VALUES (5, 'dm:1:2', 1, 9, 'c5', 'old words', 1000, NULL);"
        "PRAGMA user_version=3;"
    )
    conn.close()
    store = await SqliteMessageStore.open(path)
    try:
        old = await store.get_message("dm:1:2", 5)
        assert old == Message(5, "dm:1:2", 1, 9, "c5", "old words", 1000)
        edit = Message(
            6, "dm:1:2", 1, 9, "c6", "new words", 2000, event={"type": "edit", "message_id": "5"}
        )
        await store.save_message(edit)
        assert [m.message_id for m in await store.search(["dm:1:2"], "new", 10)] == [5]
        assert await store.search(["dm:1:2"], "old", 10) == []
    finally:
        await store.close()
