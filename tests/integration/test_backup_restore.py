"""Backup and restore of a cluster (docs/operations.md): scripts/backup.sh, then a wipe, then
scripts/restore.sh, on the test environment's PostgreSQL, Cassandra (nodetool over the
node's local JMX port) and Kafka, with a real `tidings api` and `tidings chat`.

Users sign up, log in, chat 1:1 and in a group and read some of it; the cluster is backed
up while it runs; one more message is sent after the backup (the restore point lies before
it). Then the servers stop, the keyspace and the database are dropped and the chat servers'
consumer group is deleted (as when Kafka's offsets expired during a long outage), and the
backup is restored. Afterwards the users log in with their passwords and their old tokens,
history and inboxes are the backup's (same ids, bodies and seqs; the later message is
gone), a device whose cursor is past the restored head gets new messages, and new messages
flow. The cluster has its own database, keyspace and topic prefix.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from behaviour._cluster import Backends, Cluster, close_cluster, open_cluster
from behaviour._harness import (
    PASSWORD,
    Account,
    WsClient,
    befriend,
    child_env,
    dm_id,
    http_client,
    login,
    make_group,
    new_account,
)

pytestmark = [pytest.mark.kafka, pytest.mark.cassandra, pytest.mark.postgres, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]
# The Cassandra tables that hold what users see (presence changes as devices connect, and
# `tidings migrate` records its versions again before the import).
TABLES = (
    "messages",
    "channel_buckets",
    "sent_messages",
    "inbox",
    "inbox_ids",
    "inbox_heads",
    "watermarks",
)
WAIT = 15.0  # inbox appends go through Kafka; allow for a loaded machine


def _kafka_tools(testenv: Mapping[str, str]) -> str:
    """Kafka's consumer-groups tool from the jars the test broker runs from."""
    cache = Path(os.environ.get("TIDINGS_TESTENV_CACHE", Path.home() / ".cache/tidings-testenv"))
    libs = sorted(cache.glob("kafka/*/libs"))
    assert libs, f"no Kafka jars under {cache}/kafka (e2e/env/kafka.sh install)"
    main = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
    return f"java -Xmx256m -cp {libs[-1]}/* {main}"


def _script_env(cluster: Cluster, testenv: Mapping[str, str]) -> dict[str, str]:
    env = child_env(cluster._env())
    env.update(
        NODETOOL=f"bash {REPO}/e2e/env/cassandra.sh nodetool",
        CASSANDRA_DATA_DIR=str(
            Path(os.environ.get("TIDINGS_TESTENV_STATE", REPO / ".testenv")) / "cassandra/data"
        ),
        KAFKA_CONSUMER_GROUPS=_kafka_tools(testenv),
        TIDINGS=f"{sys.executable} -m tidings",
    )
    return env


def _run(args: list[str], env: Mapping[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        args, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stderr


def _table_rows(cluster: Cluster) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the user-facing tables of the cluster's keyspace, sorted."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
    from cassandra.cluster import Cluster as CassandraCluster
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
    cassandra = CassandraCluster(
        list(cluster.backends.cassandra_hosts),
        port=cluster.backends.cassandra_port,
        protocol_version=5,
        connect_timeout=10,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        session = cassandra.connect(cluster.namespace)
        return {
            table: sorted(
                (tuple(row) for row in session.execute(f"SELECT * FROM {table}")),
                key=repr,
            )
            for table in TABLES
        }
    finally:
        cassandra.shutdown()


def _wipe(cluster: Cluster, env: Mapping[str, str]) -> None:
    """The disaster: the keyspace and the database are gone, and so are the chat servers'
    committed offsets (the topics stay, with every event, including the one sent after the
    backup)."""
    cluster._drop_keyspace()
    asyncio.run(cluster._drop_database())
    asyncio.run(cluster._create_database())
    tool = env["KAFKA_CONSUMER_GROUPS"].split()
    bootstrap = cluster.backends.kafka_bootstrap
    _run(
        [
            *tool,
            "--bootstrap-server",
            bootstrap,
            "--delete",
            "--group",
            f"{cluster.namespace}.chat",
        ],
        env,
    )


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, testenv: Mapping[str, str]
) -> Iterator[Cluster]:
    cluster = open_cluster(
        tmp_path_factory.mktemp("tidings-restore"), Backends.from_testenv(testenv), apis=1, chats=1
    )
    try:
        yield cluster
    finally:
        close_cluster(cluster)
        # restore.sh gave the push workers' group offsets (the harness runs no push worker).
        tool = _kafka_tools(testenv).split()
        bootstrap = cluster.backends.kafka_bootstrap
        group = f"{cluster.namespace}.push"
        subprocess.run(
            [*tool, "--bootstrap-server", bootstrap, "--delete", "--group", group],
            capture_output=True,
            timeout=60,
            check=False,
        )


async def _connect(account: Account, cursor: str = "0") -> WsClient:
    conn = await WsClient.open(account.chat_url)
    await conn.hello(account.token, cursor)
    return conn


async def _inbox(account: Account, cursor: str = "0") -> tuple[str, list[tuple[str, str, str]]]:
    """The inbox head and every (seq, message_id, body) after ``cursor``, as a hello gives."""
    conn = await _connect(account, cursor)
    try:
        return conn.welcome["cursor"], [
            (m["seq"], m["message_id"], m["body"]) for m in conn.backlog
        ]
    finally:
        await conn.close()


async def _history(
    http: httpx.AsyncClient, account: Account, channel: str
) -> list[tuple[str, str]]:
    response = await http.get(f"/v1/channels/{channel}/messages", headers=account.auth)
    assert response.status_code == 200, response.text
    return [(m["message_id"], m["body"]) for m in response.json()["messages"]]


async def _until_inbox_has(account: Account, count: int) -> None:
    """Wait until ``account``'s inbox holds ``count`` entries (appends come through Kafka)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        head, _ = await _inbox(account)
        if int(head) >= count:
            return
        assert asyncio.get_running_loop().time() < deadline, f"inbox head {head} < {count}"
        await asyncio.sleep(0.2)


async def test_a_restore_brings_back_logins_history_and_inboxes(
    cluster: Cluster, testenv: Mapping[str, str], tmp_path: Path
) -> None:
    env = _script_env(cluster, testenv)
    backup = tmp_path / "backup"
    async with http_client(cluster) as http:
        alice, bob, carol = [await new_account(http, name) for name in ("alice", "bob", "carol")]
        await befriend(http, alice, bob)
        group = (await make_group(http, alice, [bob, carol], name="restore"))["channel_id"]
        dm = dm_id(alice, bob)

        # Three 1:1 messages, two group messages; bob reads the 1:1 up to the second.
        a, b, c = [await _connect(x) for x in (alice, bob, carol)]
        acks = [
            await a.send_and_ack("hello bob", to=bob),
            await b.send_and_ack("hi alice", to=alice),
            await a.send_and_ack("lunch tomorrow?", to=bob),
            await a.send_and_ack("welcome to the group", channel_id=group),
            await c.send_and_ack("thanks, glad to be here", channel_id=group),
        ]
        read = {"type": "receipt", "channel_id": dm, "status": "read"}
        await b.send({**read, "message_id": acks[1]["message_id"]})
        await a.recv_until("receipt", WAIT, status="read")
        for conn in (a, b, c):
            await conn.close()
        # The group's events first (created, bob added, carol joined: docs/protocol.md).
        for who, count in ((alice, 8), (bob, 8), (carol, 3)):
            await _until_inbox_has(who, count)

        before = {who.username: await _inbox(who) for who in (alice, bob, carol)}
        histories = {dm: await _history(http, alice, dm), group: await _history(http, carol, group)}
        assert [m for _, m in histories[dm]] == ["lunch tomorrow?", "hi alice", "hello bob"]
        # the seq of "hi alice" in bob's inbox
        (bob_read_upto,) = [seq for seq, _, body in before[bob.username][1] if body == "hi alice"]

        # Back up while the cluster runs, then one more message: after the restore point.
        await asyncio.to_thread(_run, [f"{REPO}/scripts/backup.sh", str(backup)], env)
        assert (backup / "postgres.dump").stat().st_size > 0
        assert (backup / "cassandra/messages").is_dir()
        rows = await asyncio.to_thread(_table_rows, cluster)

        a = await _connect(alice, before[alice.username][0])
        b = await _connect(bob, before[bob.username][0])
        late = await a.send_and_ack("sent after the backup", to=bob)
        bob_cursor = (await b.recv_until("msg", WAIT, message_id=late["message_id"]))["seq"]
        assert int(bob_cursor) == int(before[bob.username][0]) + 1
        for conn in (a, b):
            await conn.close()

    # The disaster, then the restore, with every server stopped.
    codes = await asyncio.to_thread(cluster.stop)
    assert all(code == 0 for code in codes.values()), codes
    await asyncio.to_thread(_wipe, cluster, env)
    await asyncio.to_thread(_run, [f"{REPO}/scripts/restore.sh", str(backup)], env)
    assert await asyncio.to_thread(_table_rows, cluster) == rows
    await asyncio.to_thread(cluster.start)

    async with http_client(cluster) as http:  # the API process listens on a new port
        # Logins: with the passwords, and with the tokens the devices already held.
        for who in (alice, bob, carol):
            assert (await login(http, who.username)).user_id == who.user_id
            me = await http.get("/v1/me", headers=who.auth)
            assert me.status_code == 200, me.text
        wrong = {"username": bob.username, "password": PASSWORD + "!"}
        assert (await http.post("/v1/sessions", json=wrong)).status_code == 401

        # History and inboxes are the backup's: same ids, bodies, seqs; the late one is gone.
        assert await _history(http, alice, dm) == histories[dm]
        assert await _history(http, carol, group) == histories[group]
        for who in (alice, bob, carol):
            assert await _inbox(who) == before[who.username], who.username
        # What bob had not read is still after his read position.
        head, unread = await _inbox(bob, bob_read_upto)
        assert [body for _, _, body in unread] == [
            "lunch tomorrow?",
            "welcome to the group",
            "thanks, glad to be here",
        ]
        found = await http.get("/v1/search", params={"q": "lunch"}, headers=bob.auth)
        assert found.status_code == 200, found.text
        assert [m["message_id"] for m in found.json()["messages"]] == [acks[2]["message_id"]]

    # A resend of a message acked before the backup gets its first ack (dedupe restored).
    a = await _connect(alice, before[alice.username][0])
    again = await a.send_and_ack("hello bob", to=bob, client_msg_id=acks[0]["client_msg_id"])
    assert again["message_id"] == acks[0]["message_id"]

    # Bob's device kept its cursor from after the backup, past the restored head: the
    # server answers with the real head, and new messages come with the next seqs.
    b = await WsClient.open(bob.chat_url)
    await b.hello(bob.token, bob_cursor)
    assert b.welcome["cursor"] == head == before[bob.username][0]
    assert b.backlog == []
    c = await _connect(carol, before[carol.username][0])
    new_dm = await a.send_and_ack("are you back?", to=bob)
    new_group = await c.send_and_ack("we are back", channel_id=group)
    got = [await b.recv_until("msg", WAIT) for _ in range(2)]
    assert [(m["message_id"], m["seq"]) for m in got] == [
        (new_dm["message_id"], str(int(head) + 1)),
        (new_group["message_id"], str(int(head) + 2)),
    ]
    echoed = await a.recv_until("msg", WAIT, message_id=new_group["message_id"])
    assert echoed["body"] == "we are back"
    for conn in (a, b, c):
        await conn.close()
