"""The MessageStore's behaviour, the same on SQLite (embedded) and Cassandra (cluster).

Every contract test runs against both backends; the Cassandra ones share one keyspace per
module (migrated here, dropped at the end) and keep out of each other's way with random
user and channel ids. A few Cassandra-only tests at the end cover what only that backend
has: migrations, crash leftovers in an inbox, inbox partitions, opening from settings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cassandra.cluster import Session

from tidings.core.ids import min_id_at, timestamp_ms
from tidings.core.model import Message, OnlineLease, PresenceStatus, Watermarks
from tidings.settings import Settings
from tidings.storage.base import MessageStore, StorageError, StorageUnavailable
from tidings.storage.cassandra import inbox as cassandra_inbox
from tidings.storage.cassandra.io import build_cluster
from tidings.storage.cassandra.layout import bucket_of
from tidings.storage.cassandra.schema import (
    LATEST_VERSION,
    MIGRATIONS,
    applied_versions,
    apply_migrations,
    migrate,
)
from tidings.storage.cassandra.store import CassandraMessageStore
from tidings.storage.sqlite.store import SqliteMessageStore

pytestmark = pytest.mark.timeout(300)

T = TypeVar("T")
DAY_MS = 24 * 3600 * 1000
WAIT_S = 60.0  # the longest any single await in these tests may take


def _run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh loop in another thread (sync fixtures)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=300)


async def bounded(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WAIT_S)


@pytest.fixture(scope="module")
def cassandra_env(testenv: dict[str, str]) -> Iterator[tuple[Settings, Session]]:
    """A uniquely named, migrated keyspace for this module; dropped afterwards."""
    settings = Settings(
        cassandra_contact_points=testenv["TIDINGS_TEST_CASSANDRA_HOSTS"].split(","),
        cassandra_port=int(testenv["TIDINGS_TEST_CASSANDRA_PORT"]),
        cassandra_keyspace=f"t_msgs_{uuid.uuid4().hex[:12]}",
        cassandra_request_timeout_s=30.0,
    )
    cluster = build_cluster(settings)
    session = cluster.connect()
    try:
        versions = _run_in_thread(
            migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
        )
        assert versions == [m.version for m in MIGRATIONS]
        yield settings, session
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=120)
        cluster.shutdown()


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.cassandra)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageStore]:
    opened: MessageStore
    if request.param == "sqlite":
        opened = await bounded(SqliteMessageStore.open(tmp_path / "messages.db"))
    else:
        settings, _ = request.getfixturevalue("cassandra_env")
        opened = await bounded(CassandraMessageStore.open(settings))
    try:
        yield opened
    finally:
        await bounded(opened.close())


# --- helpers -----------------------------------------------------------------------


def uid() -> int:
    return random.randrange(1, 2**62)


def channel() -> str:
    return f"g:{uuid.uuid4().hex}"


def id_at(ms: int, n: int = 0) -> int:
    """A message id made at ``ms`` (``n`` tells apart ids of the same millisecond)."""
    return min_id_at(ms) + n


def msg(
    message_id: int,
    channel_id: str,
    body: str = "hi",
    *,
    sender: int = 1,
    client_msg_id: str | None = None,
    device: int = 7,
) -> Message:
    return Message(
        message_id=message_id,
        channel_id=channel_id,
        sender_id=sender,
        sender_device_id=device,
        client_msg_id=client_msg_id or f"c-{message_id}",
        body=body,
        ts=timestamp_ms(message_id),
    )


async def save_all(store: MessageStore, messages: list[Message]) -> None:
    for m in messages:
        assert await bounded(store.save_message(m)) == m


def ids(messages: list[Message]) -> list[int]:
    return [m.message_id for m in messages]


def now_ms() -> int:
    return int(time.time() * 1000)


def spread(channel_id: str, days: list[int], body: str = "hi") -> list[Message]:
    """Messages on the given days (counted from ~200 days ago), oldest first."""
    start = now_ms() - 200 * DAY_MS
    return [msg(id_at(start + d * DAY_MS, i), channel_id, body) for i, d in enumerate(days)]


# --- messages and dedupe ------------------------------------------------------------


async def test_save_then_resend_returns_the_first(store: MessageStore) -> None:
    ch, sender = channel(), uid()
    first = msg(id_at(now_ms()), ch, "hello", sender=sender, client_msg_id="abc")
    assert await bounded(store.save_message(first)) == first
    resend = msg(first.message_id + 5, ch, "hello, edited", sender=sender, client_msg_id="abc")
    assert await bounded(store.save_message(resend)) == first
    assert ids(await bounded(store.history(ch, None, 10))) == [first.message_id]

    other_sender = msg(first.message_id + 9, ch, "mine", sender=uid(), client_msg_id="abc")
    assert await bounded(store.save_message(other_sender)) == other_sender
    assert ids(await bounded(store.history(ch, None, 10))) == [
        other_sender.message_id,
        first.message_id,
    ]


async def test_attachments_are_kept_with_the_message(store: MessageStore) -> None:
    ch, sender = channel(), uid()
    photo = {
        "media_id": "0123456789abcdef" * 2,
        "content_type": "image/jpeg",
        "size": 5_000_000,
        "sha256": "ab" * 32,
        "name": "Strand \u2013 Sonne.jpg",
        "width": 4000,
        "height": 3000,
        "thumbnail": True,
    }
    first = replace(msg(id_at(now_ms()), ch, "", sender=sender), attachments=(photo,))
    assert await bounded(store.save_message(first)) == first
    (stored,) = await bounded(store.history(ch, None, 10))
    assert stored.attachments == (photo,) and stored == first
    # A message without any reads back with none (and its wire form has no field).
    plain = msg(first.message_id + 1, ch, "text only", sender=sender)
    await bounded(store.save_message(plain))
    newest = (await bounded(store.history(ch, None, 1)))[0]
    assert newest.attachments == () and "attachments" not in newest.to_wire()


async def test_edits_deletes_and_reactions_change_their_target(store: MessageStore) -> None:
    """Issue #20: an event that names a message changes it where it is stored: history
    and search give its current state; the events stay in the history, unsearched."""
    ch, alice, bob = channel(), uid(), uid()
    base = id_at(now_ms())
    target = replace(msg(base, ch, "meet at noon", sender=alice), reply_to=None)
    reply = replace(msg(base + 1, ch, "ok", sender=bob), reply_to=base)
    await save_all(store, [target, reply])

    def event(n: int, sender: int, action: dict[str, Any], body: str = "") -> Message:
        return replace(msg(base + n, ch, body, sender=sender), event=action)

    edit = event(
        2,
        alice,
        {"type": "edit", "message_id": str(base), "previous": "meet at noon"},
        "meet at one",
    )
    thumbs = event(3, bob, {"type": "reaction", "message_id": str(base), "emoji": "👍"})
    heart = event(4, alice, {"type": "reaction", "message_id": str(base), "emoji": "❤️"})
    taken = event(5, bob, {"type": "reaction", "message_id": str(base), "emoji": ""})
    await save_all(store, [edit, thumbs, heart])

    now = await bounded(store.get_message(ch, base))
    assert now is not None
    assert (now.body, now.edited_at, now.reactions) == (
        "meet at one",
        edit.ts,
        {bob: "👍", alice: "❤️"},
    )
    assert (await bounded(store.get_message(ch, base + 1))) == reply  # the reply keeps reply_to
    assert await bounded(store.search([ch], "one", 10)) == [now]
    assert await bounded(store.search([ch], "noon", 10)) == []  # the old text is gone
    assert await bounded(store.get_message(channel(), base)) is None  # another channel: none
    await save_all(store, [taken])
    assert (await bounded(store.get_message(ch, base))).reactions == {alice: "❤️"}  # type: ignore[union-attr]
    # Unread: bob has alice's message only (events and his own do not count).
    assert await bounded(store.count_unread(ch, 0, bob, 100)) == 1
    assert await bounded(store.count_unread(ch, base, bob, 100)) == 0
    assert await bounded(store.count_unread(ch, 0, alice, 100)) == 1  # bob's reply

    gone = event(6, alice, {"type": "delete", "message_id": str(base)})
    await save_all(store, [gone])
    tomb = await bounded(store.get_message(ch, base))
    assert tomb is not None
    assert (tomb.deleted, tomb.body, tomb.reactions, tomb.attachments) == (True, "", {}, ())
    assert await bounded(store.search([ch], "one", 10)) == []
    assert await bounded(store.count_unread(ch, 0, bob, 100)) == 0
    # Everything is in the history, newest first; the events read back as saved.
    history = await bounded(store.history(ch, None, 10))
    assert ids(history) == [base + n for n in (6, 5, 4, 3, 2, 1, 0)]
    assert history[4] == edit


async def test_concurrent_resends_all_get_the_same_message(store: MessageStore) -> None:
    ch, sender, base = channel(), uid(), id_at(now_ms())
    candidates = [
        msg(base + n, ch, "same words", sender=sender, client_msg_id="dup") for n in range(8)
    ]
    saved = await bounded(asyncio.gather(*(store.save_message(c) for c in candidates)))
    assert all(s == saved[0] for s in saved)  # a Message holds a dict: not hashable
    assert saved[0] in candidates
    assert await bounded(store.find_sent(sender, "dup")) == saved[0]
    assert await bounded(store.history(ch, None, 10)) == [saved[0]]


async def test_a_fence_that_refuses_stops_the_save_before_any_write(store: MessageStore) -> None:
    ch, sender = channel(), uid()
    m = msg(id_at(now_ms()), ch, "not mine", sender=sender, client_msg_id="fenced")

    async def moved() -> None:
        raise RuntimeError("the sender moved")

    async def mine() -> None:
        return None

    with pytest.raises(RuntimeError, match="moved"):
        await bounded(store.save_message(m, fence=moved))
    assert await bounded(store.find_sent(sender, "fenced")) is None
    assert await bounded(store.history(ch, None, 10)) == []
    assert await bounded(store.save_message(m, fence=mine)) == m


async def test_find_sent(store: MessageStore) -> None:
    ch, sender = channel(), uid()
    assert await bounded(store.find_sent(sender, "x1")) is None
    m = msg(id_at(now_ms()), ch, "hi", sender=sender, client_msg_id="x1")
    await save_all(store, [m])
    assert await bounded(store.find_sent(sender, "x1")) == m
    assert await bounded(store.find_sent(sender, "x2")) is None
    assert await bounded(store.find_sent(sender + 1, "x1")) is None


async def test_history_newest_first_across_buckets(store: MessageStore) -> None:
    ch = channel()
    messages = spread(ch, [0, 1, 40, 41, 80, 81, 82])
    assert len({bucket_of(m.message_id) for m in messages}) >= 3  # spans several buckets
    await save_all(store, list(reversed(messages)))  # arrival order does not matter
    newest_first = list(reversed(messages))

    assert await bounded(store.history(ch, None, 100)) == newest_first
    assert await bounded(store.history(ch, None, 3)) == newest_first[:3]
    # before is exclusive, and a page may cross a bucket boundary
    assert await bounded(store.history(ch, messages[3].message_id, 2)) == [
        messages[2],
        messages[1],
    ]
    assert await bounded(store.history(ch, messages[0].message_id, 10)) == []
    assert await bounded(store.history(ch, messages[0].message_id + 1, 10)) == [messages[0]]
    assert await bounded(store.history(channel(), None, 10)) == []

    # paging through with before gives everything once, in order
    paged: list[Message] = []
    before = None
    while page := await bounded(store.history(ch, before, 2)):
        paged.extend(page)
        before = page[-1].message_id
    assert paged == newest_first


async def test_latest_message_ids(store: MessageStore) -> None:
    a, b, empty = channel(), channel(), channel()
    in_a = spread(a, [3, 50, 90])
    in_b = spread(b, [10])
    await save_all(store, in_a + in_b)
    assert await bounded(store.latest_message_ids([a, b, empty])) == {
        a: in_a[-1].message_id,
        b: in_b[0].message_id,
    }
    assert await bounded(store.latest_message_ids([])) == {}


# --- search -------------------------------------------------------------------------


async def test_search_every_word_within_the_given_channels(store: MessageStore) -> None:
    mine, theirs = channel(), channel()
    t = now_ms() - DAY_MS
    m1 = msg(id_at(t, 1), mine, "Hello brave new world")
    m2 = msg(id_at(t, 2), mine, "hello there")
    m3 = msg(id_at(t, 3), mine, "Café au lait, s'il vous plaît!")
    m4 = msg(id_at(t, 4), theirs, "hello world from elsewhere, secret")
    await save_all(store, [m1, m2, m3, m4])

    assert await bounded(store.search([mine], "hello", 10)) == [m2, m1]
    assert await bounded(store.search([mine], "WORLD hello", 10)) == [m1]
    assert await bounded(store.search([mine], "  world,  brave!! ", 10)) == [m1]
    assert await bounded(store.search([mine], "hello nothing", 10)) == []
    assert await bounded(store.search([mine], "cafe", 10)) == [m3]  # diacritics folded
    assert await bounded(store.search([mine], "CAFÉ plaît", 10)) == [m3]
    # a word only in a channel not given is not found
    assert await bounded(store.search([mine], "secret", 10)) == []
    assert await bounded(store.search([mine, theirs], "secret", 10)) == [m4]
    assert await bounded(store.search([mine, theirs], "hello", 10)) == [m4, m2, m1]
    assert await bounded(store.search([mine, theirs], "hello", 2)) == [m4, m2]
    assert await bounded(store.search([], "hello", 10)) == []
    assert await bounded(store.search([mine], "?!", 10)) == []


async def test_search_newest_first_across_buckets(store: MessageStore) -> None:
    a, b = channel(), channel()
    in_a = spread(a, [0, 35, 70, 105], "the quarterly report")
    in_b = spread(b, [20, 90], "quarterly report, final")
    noise = spread(a, [1, 36], "lunch?")
    await save_all(store, in_a + in_b + noise)
    everything = sorted(in_a + in_b, key=lambda m: m.message_id, reverse=True)
    assert await bounded(store.search([a, b], "report quarterly", 50)) == everything
    assert await bounded(store.search([a, b], "report quarterly", 3)) == everything[:3]
    assert await bounded(store.search([a, b], "final", 50)) == list(reversed(in_b))


async def test_search_with_many_words(store: MessageStore) -> None:
    ch = channel()
    words = [f"word{n}" for n in range(12)]
    full = msg(id_at(now_ms(), 1), ch, " ".join(words))
    partial = msg(id_at(now_ms(), 2), ch, " ".join(words[:-1]))
    await save_all(store, [full, partial])
    assert await bounded(store.search([ch], " ".join(words), 10)) == [full]
    assert await bounded(store.search([ch], " ".join(words[:-1]), 10)) == [partial, full]


# --- inboxes ------------------------------------------------------------------------


async def test_inbox_append_is_gapless_and_skips_present_ids(store: MessageStore) -> None:
    user, ch = uid(), channel()
    m1, m2, m3, m4 = (msg(id_at(now_ms(), n), ch, f"m{n}") for n in range(4))
    await save_all(store, [m1, m2, m3, m4])
    assert await bounded(store.inbox_head(user)) == 0
    assert await bounded(store.inbox_after(user, 0, 10)) == []

    first = await bounded(store.append_inbox(user, [m1, m2]))
    assert [(e.seq, e.message) for e in first] == [(1, m1), (2, m2)]
    again = await bounded(store.append_inbox(user, [m2, m3, m3, m1]))
    assert [(e.seq, e.message) for e in again] == [(3, m3)]
    assert await bounded(store.append_inbox(user, [m1, m3])) == []
    assert await bounded(store.append_inbox(user, [])) == []
    assert await bounded(store.inbox_head(user)) == 3

    entries = await bounded(store.inbox_after(user, 0, 10))
    assert [(e.seq, e.message) for e in entries] == [(1, m1), (2, m2), (3, m3)]
    assert [e.seq for e in await bounded(store.inbox_after(user, 1, 1))] == [2]
    assert await bounded(store.inbox_after(user, 3, 10)) == []

    last = await bounded(store.append_inbox(user, [m4]))
    assert [(e.seq, e.message) for e in last] == [(4, m4)]
    assert [e.seq for e in await bounded(store.inbox_after(user, 2, 10))] == [3, 4]
    # another user's inbox is separate
    other = uid()
    assert [e.seq for e in await bounded(store.append_inbox(other, [m4, m1]))] == [1, 2]
    assert await bounded(store.inbox_head(user)) == 4


async def test_inbox_append_of_ids_known_new_mixes_with_looked_up_ones(
    store: MessageStore,
) -> None:
    """The inbox consumer names the ids it knows no inbox holds (``new``): they are
    appended without a lookup, the others are still looked for and skipped if present."""
    user, ch = uid(), channel()
    m1, m2, m3 = (msg(id_at(now_ms(), n), ch, f"m{n}") for n in range(3))
    await save_all(store, [m1, m2, m3])
    first = await bounded(store.append_inbox(user, [m1, m2], new={m1.message_id, m2.message_id}))
    assert [(e.seq, e.message) for e in first] == [(1, m1), (2, m2)]
    again = await bounded(store.append_inbox(user, [m1, m2, m3], new={m3.message_id}))
    assert [(e.seq, e.message) for e in again] == [(3, m3)]
    entries = await bounded(store.inbox_after(user, 0, 10))
    assert [(e.seq, e.message) for e in entries] == [(1, m1), (2, m2), (3, m3)]


async def test_inbox_large_batch_pages_in_order(store: MessageStore) -> None:
    user, ch, t = uid(), channel(), now_ms()
    messages = [msg(id_at(t, n), ch, f"n{n}") for n in range(130)]
    await save_all(store, messages)
    appended = await bounded(store.append_inbox(user, messages))
    assert [e.seq for e in appended] == list(range(1, 131))
    seen, cursor = [], 0
    while page := await bounded(store.inbox_after(user, cursor, 40)):
        seen.extend(page)
        cursor = page[-1].seq
    assert [e.seq for e in seen] == list(range(1, 131))
    assert [e.message for e in seen] == messages


# --- receipts and presence ----------------------------------------------------------


async def test_watermarks_move_forward_only(store: MessageStore) -> None:
    ch, user = channel(), uid()
    assert await bounded(store.get_watermarks(ch, user)) == Watermarks(0, 0)
    await bounded(store.set_watermarks(ch, user, Watermarks(50, 30)))
    assert await bounded(store.get_watermarks(ch, user)) == Watermarks(50, 30)
    await bounded(store.set_watermarks(ch, user, Watermarks(40, 45)))  # each one: the max
    assert await bounded(store.get_watermarks(ch, user)) == Watermarks(50, 45)
    await bounded(store.set_watermarks(ch, user, Watermarks(0, 0)))
    assert await bounded(store.get_watermarks(ch, user)) == Watermarks(50, 45)
    await bounded(store.set_watermarks(ch, user, Watermarks(70, 70)))
    assert await bounded(store.get_watermarks(ch, user)) == Watermarks(70, 70)
    assert await bounded(store.get_watermarks(ch, uid())) == Watermarks()


async def test_presence_round_trip(store: MessageStore) -> None:
    a, b, never = uid(), uid(), uid()
    await bounded(store.set_presence(a, PresenceStatus("online", None)))
    await bounded(store.set_presence(b, PresenceStatus("offline", 1_700_000_000_123)))
    assert await bounded(store.get_presence([a, b, never])) == {
        a: PresenceStatus("online", None),
        b: PresenceStatus("offline", 1_700_000_000_123),
    }
    await bounded(store.set_presence(a, PresenceStatus("offline", 1_700_000_000_999)))
    assert await bounded(store.get_presence([a])) == {
        a: PresenceStatus("offline", 1_700_000_000_999)
    }
    assert await bounded(store.get_presence([])) == {}


# --- Cassandra only -----------------------------------------------------------------


@pytest.fixture
async def cstore(cassandra_env: tuple[Settings, Session]) -> AsyncIterator[CassandraMessageStore]:
    settings, _ = cassandra_env
    opened = await bounded(CassandraMessageStore.open(settings))
    try:
        yield opened
    finally:
        await bounded(opened.close())


@pytest.mark.cassandra
async def test_migrations_are_idempotent(cassandra_env: tuple[Settings, Session]) -> None:
    settings, session = cassandra_env
    keyspace = f"t_mig_{uuid.uuid4().hex[:12]}"
    expected = [m.version for m in MIGRATIONS]
    try:
        assert await bounded(applied_versions(session, keyspace)) == []
        assert await bounded(migrate(session, keyspace, settings.cassandra_replication)) == expected
        assert await bounded(migrate(session, keyspace, settings.cassandra_replication)) == expected
        # what `tidings migrate` calls: its own connection, from settings
        ours = settings.model_copy(update={"cassandra_keyspace": keyspace})
        assert await bounded(asyncio.to_thread(apply_migrations, ours)) == expected
        assert await bounded(applied_versions(session, keyspace)) == expected
        assert expected[-1] == LATEST_VERSION
        # the module's keyspace, migrated by the fixture, stays where it is too
        assert (
            await bounded(
                migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
            )
            == expected
        )
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


@pytest.mark.cassandra
async def test_open_from_settings_and_refuse_unmigrated(
    cassandra_env: tuple[Settings, Session],
) -> None:
    settings, _ = cassandra_env
    opened = await bounded(CassandraMessageStore.open(settings))
    try:
        m = msg(id_at(now_ms()), channel(), "opened")
        await save_all(opened, [m])
        assert await bounded(opened.history(m.channel_id, None, 5)) == [m]
    finally:
        await bounded(opened.close())
    with pytest.raises(StorageError, match="tidings migrate"):
        await bounded(CassandraMessageStore.open(settings, keyspace="t_never_migrated"))


@pytest.mark.cassandra
async def test_inbox_ignores_and_overwrites_leftovers_of_a_crashed_append(
    cstore: CassandraMessageStore, cassandra_env: tuple[Settings, Session]
) -> None:
    settings, session = cassandra_env
    ks, user, ch = settings.cassandra_keyspace, uid(), channel()
    m1, x, y, z = (msg(id_at(now_ms(), n), ch, f"m{n}") for n in range(4))
    await save_all(cstore, [m1, x, y, z])
    assert [e.seq for e in await bounded(cstore.append_inbox(user, [m1]))] == [1]
    # An append of x, y whose first batch landed and whose last (the one with the head)
    # did not: entries and index rows at 2, 3 beyond the head.
    for seq, m in [(2, x), (3, y)]:
        session.execute(
            f"INSERT INTO {ks}.inbox (user_id, part, seq, message_id, channel_id) "
            "VALUES (%s, 0, %s, %s, %s)",
            (user, seq, m.message_id, ch),
        )
        session.execute(
            f"INSERT INTO {ks}.inbox_ids (user_id, part, message_id, seq) VALUES (%s, 0, %s, %s)",
            (user, m.message_id, seq),
        )
    assert await bounded(cstore.inbox_head(user)) == 1
    assert [e.seq for e in await bounded(cstore.inbox_after(user, 0, 10))] == [1]

    # The next append starts from the head and overwrites what lies beyond it.
    assert [(e.seq, e.message) for e in await bounded(cstore.append_inbox(user, [z]))] == [(2, z)]
    # x's stale index row points at seq 2, which now holds z: x is not present.
    redelivered = await bounded(cstore.append_inbox(user, [x, y]))
    assert [(e.seq, e.message) for e in redelivered] == [(3, x), (4, y)]
    entries = await bounded(cstore.inbox_after(user, 0, 10))
    assert [(e.seq, e.message) for e in entries] == [(1, m1), (2, z), (3, x), (4, y)]


@pytest.mark.cassandra
async def test_a_dedupe_record_without_its_message_is_finished_by_the_resend(
    cstore: CassandraMessageStore, cassandra_env: tuple[Settings, Session]
) -> None:
    """A save cut short after its dedupe record (a crash, a timeout): the resend finds
    the record and writes the message with the record's id; a reuse of the id for
    another channel writes nothing."""
    settings, session = cassandra_env
    ks, sender, ch = settings.cassandra_keyspace, uid(), channel()
    first = msg(id_at(now_ms()), ch, "cut short", sender=sender, client_msg_id="half")
    session.execute(
        f"INSERT INTO {ks}.sent_messages (sender_id, client_msg_id, message_id, channel_id, "
        "sender_device_id, ts) VALUES (%s, %s, %s, %s, %s, %s)",
        (sender, "half", first.message_id, ch, first.sender_device_id, first.ts),
    )
    assert await bounded(cstore.find_sent(sender, "half")) is None  # not fully saved
    elsewhere = channel()
    reuse = msg(first.message_id + 3, elsewhere, "cut short", sender=sender, client_msg_id="half")
    assert (await bounded(cstore.save_message(reuse))).channel_id == ch
    assert await bounded(cstore.history(elsewhere, None, 10)) == []
    assert await bounded(cstore.history(ch, None, 10)) == []
    resend = msg(first.message_id + 5, ch, "cut short", sender=sender, client_msg_id="half")
    assert await bounded(cstore.save_message(resend)) == first
    assert await bounded(cstore.history(ch, None, 10)) == [first]
    assert await bounded(cstore.find_sent(sender, "half")) == first


@pytest.mark.cassandra
async def test_messages_of_one_channel_saved_at_once_are_all_stored(
    cstore: CassandraMessageStore,
) -> None:
    """Saves to one (channel, bucket) in the same tick go out as one unlogged batch."""
    ch, t = channel(), now_ms()
    messages = [msg(id_at(t, n), ch, f"burst {n}", sender=uid()) for n in range(120)]
    saved = await bounded(asyncio.gather(*(cstore.save_message(m) for m in messages)))
    assert saved == messages
    history = await bounded(cstore.history(ch, None, 200))
    assert history == sorted(messages, key=lambda m: m.message_id, reverse=True)


@pytest.mark.cassandra
async def test_inbox_spans_partitions(
    cstore: CassandraMessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cassandra_inbox, "INBOX_PART_SEQS", 4)  # a fresh user: safe
    user, ch, t = uid(), channel(), now_ms()
    messages = [msg(id_at(t, n), ch, f"n{n}") for n in range(10)]
    await save_all(cstore, messages)
    assert [e.seq for e in await bounded(cstore.append_inbox(user, messages[:6]))] == list(
        range(1, 7)
    )
    assert [e.seq for e in await bounded(cstore.append_inbox(user, messages))] == [7, 8, 9, 10]
    everything = await bounded(cstore.inbox_after(user, 0, 100))
    assert [e.message for e in everything] == messages
    assert [e.seq for e in await bounded(cstore.inbox_after(user, 2, 5))] == [3, 4, 5, 6, 7]


@pytest.mark.cassandra
async def test_inbox_head_is_found_from_any_hint_at_or_below_it(
    cstore: CassandraMessageStore,
    cassandra_env: tuple[Settings, Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The head lives in the inbox partitions; ``inbox_heads`` only says where to start
    looking. A keyspace written before schema version 4 (the head row alone) and a hint
    that lags behind (its write lost) both still give the right head."""
    settings, session = cassandra_env
    ks, ch, t = settings.cassandra_keyspace, channel(), now_ms()
    messages = [msg(id_at(t, n), ch, f"n{n}") for n in range(8)]
    await save_all(cstore, messages)

    old = uid()  # as version 3 left it: entries 1, 2 and the head row, no static head
    for seq, m in enumerate(messages[:2], start=1):
        session.execute(
            f"INSERT INTO {ks}.inbox (user_id, part, seq, message_id, channel_id) "
            "VALUES (%s, 0, %s, %s, %s)",
            (old, seq, m.message_id, ch),
        )
        session.execute(
            f"INSERT INTO {ks}.inbox_by_message (user_id, bucket, message_id, seq) "
            "VALUES (%s, %s, %s, %s)",
            (old, bucket_of(m.message_id), m.message_id, seq),
        )
    session.execute(f"INSERT INTO {ks}.inbox_heads (user_id, seq) VALUES (%s, 2)", (old,))
    assert await bounded(cstore.inbox_head(old)) == 2
    assert [e.seq for e in await bounded(cstore.append_inbox(old, messages[:3]))] == [3]
    assert [e.message for e in await bounded(cstore.inbox_after(old, 0, 10))] == messages[:3]

    monkeypatch.setattr(cassandra_inbox, "INBOX_PART_SEQS", 4)  # a fresh user: safe
    lagging = uid()
    assert len(await bounded(cstore.append_inbox(lagging, messages[:6]))) == 6
    session.execute(f"DELETE FROM {ks}.inbox_heads WHERE user_id = %s", (lagging,))
    assert await bounded(cstore.inbox_head(lagging)) == 6  # part 0 is full: on to part 1
    assert [e.seq for e in await bounded(cstore.append_inbox(lagging, messages))] == [7, 8]


async def test_unreachable_cassandra_is_a_retriable_error() -> None:
    settings = Settings(
        cassandra_contact_points=["127.0.0.1"], cassandra_port=1, cassandra_request_timeout_s=2.0
    )
    with pytest.raises(StorageUnavailable) as caught:
        await bounded(CassandraMessageStore.open(settings))
    assert caught.value.retriable and isinstance(caught.value.__cause__, Exception)


@pytest.mark.cassandra
async def test_online_is_a_lease_that_lapses_when_not_renewed(
    cstore: CassandraMessageStore,
) -> None:
    """A chat server that dies cannot say its users went offline: their "online" lapses,
    last_seen stays, and the partition index names them for the new owner meanwhile."""
    cstore._presence_lease_s = 2
    renewed, abandoned, partition = uid(), uid(), 7
    await bounded(cstore.set_presence(renewed, PresenceStatus("online", 1_000), partition))
    await bounded(cstore.set_presence(abandoned, PresenceStatus("online", 2_000), partition))
    assert await bounded(cstore.online_in_partition(partition)) == {
        renewed: 1_000,
        abandoned: 2_000,
    }
    for _ in range(3):
        await asyncio.sleep(1.0)
        await bounded(cstore.refresh_presence([OnlineLease(renewed, partition, 5_000)]))
    seen = await bounded(cstore.get_presence([renewed, abandoned]))
    assert seen[renewed] == PresenceStatus("online", 5_000)
    assert seen[abandoned] == PresenceStatus("offline", 2_000)
    # the abandoned user stays findable a while longer, for the new owner to announce
    assert await bounded(cstore.online_in_partition(partition)) == {
        renewed: 5_000,
        abandoned: 2_000,
    }
    await bounded(cstore.set_presence(renewed, PresenceStatus("offline", 6_000), partition))
    await bounded(cstore.set_presence(abandoned, PresenceStatus("offline", 2_000), partition))
    assert await bounded(cstore.online_in_partition(partition)) == {}
