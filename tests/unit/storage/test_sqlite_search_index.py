"""The SQLite store's full-text index (storage/sqlite/search.py) as edits, deletes and
out-of-order messages reach it: what the store contract cannot see, because it asks only
through search(), which catches the index up first.

Besides what search() answers, each test reads the index term by term and compares it
with the current text of the messages it should hold: an external content index that was
told the wrong old text keeps stale words, which search() alone would hide.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tidings.core.model import Message
from tidings.storage.sqlite.search import indexed_upto
from tidings.storage.sqlite.store import SqliteMessageStore

CHANNEL = "g:search"
ALICE = 11


def message(message_id: int, body: str, event: dict[str, Any] | None = None) -> Message:
    sent = Message(message_id, CHANNEL, ALICE, 7, f"c{message_id}", body, message_id)
    return replace(sent, event=event) if event is not None else sent


def edit(message_id: int, target: Message, body: str) -> Message:
    action = {"type": "edit", "message_id": str(target.message_id), "previous": target.body}
    return message(message_id, body, action)


def delete(message_id: int, target: Message) -> Message:
    return message(message_id, "", {"type": "delete", "message_id": str(target.message_id)})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMessageStore]:
    opened = await SqliteMessageStore.open(tmp_path / "messages.db")
    yield opened
    await opened.close()


async def found(store: SqliteMessageStore, query: str) -> list[int]:
    return [m.message_id for m in await store.search([CHANNEL], query, 10)]


async def indexed_ids(store: SqliteMessageStore, word: str) -> list[int]:
    """What the index itself holds for a word, without catching it up first."""

    def query(conn: sqlite3.Connection) -> list[int]:
        rows = conn.execute(
            "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid", (word,)
        ).fetchall()
        return [int(r[0]) for r in rows]

    return await store.writer.read(query)


async def assert_index_matches_the_messages(store: SqliteMessageStore) -> None:
    """The index holds the current words of every message up to its watermark that is
    searchable (not an event, not empty), and nothing else: read term by term through
    fts5vocab, after FTS5's own integrity check. (Its check against the content table,
    rank 1, does not apply: the index leaves events and empty bodies out on purpose.)"""

    def check(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_terms "
            "USING fts5vocab(main, messages_fts, instance)"
        )
        held = set(conn.execute("SELECT doc, term FROM temp.fts_terms").fetchall())
        wanted = {
            (message_id, word)
            for message_id, body in conn.execute(
                "SELECT message_id, body FROM messages WHERE event IS NULL AND body != '' "
                "AND message_id <= ?",
                (indexed_upto(conn),),
            )
            for word in body.split()
        }
        assert held == wanted, f"index holds {sorted(held)}, messages say {sorted(wanted)}"

    await store.writer.submit(check)


async def test_an_edit_and_a_delete_of_an_indexed_message_tell_the_index(
    store: SqliteMessageStore,
) -> None:
    noon = message(100, "meet at noon")
    await store.save_message(noon)
    await store.catch_up_index()
    assert await indexed_ids(store, "noon") == [100]

    await store.save_message(edit(101, noon, "meet at one"))
    assert await indexed_ids(store, "noon") == []  # the old text left the index at once
    assert await found(store, "one") == [100]  # not the edit event, which is never indexed
    await assert_index_matches_the_messages(store)

    await store.save_message(delete(102, noon))
    assert await found(store, "meet") == []
    assert await indexed_ids(store, "one") == []
    await assert_index_matches_the_messages(store)


async def test_an_edit_before_the_indexer_reached_its_message_indexes_only_the_new_text(
    store: SqliteMessageStore,
) -> None:
    noon = message(100, "meet at noon")
    await store.save_message(noon)
    assert await indexed_ids(store, "meet") == []  # the index is behind the sends
    await store.save_message(edit(101, noon, "meet at one"))
    assert await found(store, "noon") == []
    assert await found(store, "one") == [100]
    await assert_index_matches_the_messages(store)


async def test_a_message_older_than_the_index_is_indexed_with_its_save(
    store: SqliteMessageStore,
) -> None:
    await store.save_message(message(200, "later words"))
    await store.catch_up_index()
    await store.save_message(message(150, "earlier words"))  # e.g. from a slower server
    assert await indexed_ids(store, "earlier") == [150]  # without waiting for the indexer
    assert await found(store, "words") == [200, 150]
    await assert_index_matches_the_messages(store)


async def test_the_index_catches_up_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "messages.db"
    first = await SqliteMessageStore.open(path)
    await first.save_message(message(100, "indexed before"))
    await first.catch_up_index()
    await first.save_message(message(101, "saved after"))  # not indexed when it closes
    await first.close()

    again = await SqliteMessageStore.open(path)
    try:
        assert await indexed_ids(again, "saved") == []
        assert await found(again, "saved") == [101]
        assert await found(again, "before") == [100]  # indexed once, not twice
        await assert_index_matches_the_messages(again)
    finally:
        await again.close()
