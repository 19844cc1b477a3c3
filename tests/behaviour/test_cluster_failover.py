"""A cluster losing a chat server: SIGKILL failover, SIGTERM drain, redirects.

These tests kill and drain chat servers, so they run on a small cluster of their own
(2 API processes, 3 chat servers, own database, keyspace and topic prefix); before each
test every chat server runs again and ownership has settled.

Every device keeps every msg frame it gets; after a failover it reconnects the way an app
does (``/v1/discover``, hello with its cursor) and must end up with every acked message
of its channels, with a gapless inbox ``seq`` that means the same message on every device.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest

from ._cluster import Backends, Cluster, close_cluster, open_cluster
from ._harness import (
    PRESENCE_OFFLINE_AFTER_S,
    Account,
    Clients,
    TidingsProcess,
    WsClient,
    another_device,
    befriend,
    dm_id,
    http_client,
    new_account,
    reconnect_through_discover,
)

pytestmark = [pytest.mark.kafka, pytest.mark.cassandra, pytest.mark.postgres, pytest.mark.s3]

# Kafka notices a dead consumer after its session timeout (3 s in the test clusters,
# _cluster.KAFKA_SESSION_TIMEOUT_S), then rebalances: back in about 4 s; the test allows
# this much before calling it lost (test_cluster_faults.py bounds the p99).
FAILOVER_WITHIN_S = 30.0
# A drained server hands its partitions over before it sends clients away.
DRAIN_RECONNECT_WITHIN_S = 15.0
DRAIN_BUDGET_MS = 2000  # TIDINGS_DRAIN_BUDGET_S of the test processes
# How long a chat server's "online" lease on its users lives (the smallest allowed): when
# the server dies, its users read as offline after at most this.
PRESENCE_LEASE_S = 3


@pytest.fixture(scope="module")
def failover_cluster(
    tmp_path_factory: pytest.TempPathFactory, testenv: Mapping[str, str]
) -> Iterator[Cluster]:
    cluster = open_cluster(
        tmp_path_factory.mktemp("tidings-failover"),
        Backends.from_testenv(testenv),
        env={"TIDINGS_PRESENCE_LEASE_S": str(PRESENCE_LEASE_S)},
    )
    try:
        yield cluster
    finally:
        close_cluster(cluster)


@pytest.fixture
async def cluster(failover_cluster: Cluster) -> AsyncIterator[Cluster]:
    """The module's cluster with every chat server running and ownership settled."""
    stopped = [chat for chat in failover_cluster.chats if not chat.running]
    for chat in stopped:
        await asyncio.to_thread(failover_cluster.restart_chat, chat)
    if stopped:
        await failover_cluster.wait_ready(60)
    yield failover_cluster


async def account_where(
    http: httpx.AsyncClient, wanted: Callable[[str], bool], prefix: str
) -> Account:
    """A new account whose chat_url satisfies ``wanted`` (users hash to partitions)."""
    for _ in range(60):
        account = await new_account(http, prefix)
        if wanted(account.chat_url):
            return account
    raise AssertionError("60 new users and none landed where wanted")


def cursor_of(msgs: list[dict[str, Any]]) -> str:
    return str(max((int(m["seq"]) for m in msgs), default=0))


async def collect(
    conn: WsClient, before: list[dict[str, Any]], expected: set[str], within: float = 10.0
) -> list[dict[str, Any]]:
    """``before`` and then this connection's msg frames, until every expected id is in."""
    got = [*before, *conn.backlog]
    conn.backlog = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not expected <= {m["message_id"] for m in got}:
        missing = expected - {m["message_id"] for m in got}
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"{len(missing)} acked messages never arrived: {sorted(missing)}")
        got.append(await conn.recv_until("msg", within=remaining))
    return got


def assert_inbox(got: list[dict[str, Any]], expected: set[str], who: str) -> dict[int, str]:
    """Exactly the expected messages (repeats allowed), and a gapless seq -> message map."""
    ids = {m["message_id"] for m in got}
    assert ids == expected, f"{who}: missing {expected - ids}, unexpected {ids - expected}"
    by_seq: dict[int, str] = {}
    for m in got:
        seq = int(m["seq"])
        assert by_seq.setdefault(seq, m["message_id"]) == m["message_id"], (
            f"{who}: seq {seq} is two messages: {by_seq[seq]} and {m['message_id']}"
        )
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1)), f"{who}: seq gaps {sorted(by_seq)}"
    return by_seq


async def keep_sending(
    conn: WsClient, to: Account, stop: asyncio.Event, every: float = 0.1
) -> list[dict[str, Any]]:
    """Send to ``to`` until ``stop``; every send must be acked. Returns the acks."""
    acks: list[dict[str, Any]] = []
    while not stop.is_set():
        acks.append(await conn.send_and_ack(f"meanwhile {len(acks)}", to=to))
        if not stop.is_set():
            await asyncio.sleep(every)
    return acks


async def acked(conn: WsClient, to: Account, count: int, label: str) -> list[str]:
    """Pipeline ``count`` sends, then wait for every ack; their message ids."""
    sent = [await conn.send_msg(f"{label} {i}", to=to) for i in range(count)]
    return [(await conn.recv_until("ack", client_msg_id=c))["message_id"] for c in sent]


class Scene:
    """Alice (two devices) on the victim chat server, Bob on another one, in one DM."""

    def __init__(self, cluster: Cluster, http: list[httpx.AsyncClient], clients: Clients):
        self.cluster, self.http, self.clients = cluster, http, clients
        self.detours: dict[str, list[str]] = {}

    async def set_up(self) -> None:
        self.alice = await new_account(self.http[0], "alice")
        self.victim: TidingsProcess = self.cluster.chat_at(self.alice.chat_url)
        self.phone = await another_device(self.http[1], self.alice)
        assert self.phone.chat_url == self.victim.ws_url, "one user, two chat servers"
        self.bob = await account_where(self.http[1], lambda u: u != self.victim.ws_url, "bob")
        self.a1 = await self.clients.connect(self.alice)
        self.a2 = await self.clients.connect(self.phone)
        self.b = await self.clients.connect(self.bob)
        # Acked in both directions before anything happens to the victim.
        self.acked = set(await acked(self.a1, self.bob, 10, "before from alice"))
        self.acked |= set(await acked(self.b, self.alice, 10, "before from bob"))
        self.stop = asyncio.Event()

    def start_talking(self) -> None:
        """Bob keeps sending to Alice while her server is gone."""
        self.talking = asyncio.create_task(keep_sending(self.b, self.alice, self.stop))

    async def come_back(
        self, conn: WsClient, device: Account, within: float
    ) -> tuple[list[dict[str, Any]], WsClient, Account]:
        """A device whose connection is gone reconnects through discovery, with its cursor."""
        before = conn.received_msgs()
        self.detours[device.device_id] = []
        new_conn, moved = await reconnect_through_discover(
            self.http[0],
            self.clients,
            device,
            cursor_of(before),
            within=within,
            tried=self.detours[device.device_id],
        )
        assert moved.chat_url != self.victim.ws_url, "reconnected to the server that went away"
        return before, new_conn, moved

    def summary(self) -> str:
        detours = {
            device: sorted({d.rsplit(": ", 1)[-1][:40] for d in tried})
            for device, tried in self.detours.items()
        }
        return f"{len(self.acked)} messages; detours per device: {detours}"

    async def finish(
        self, a1: tuple[list[dict[str, Any]], WsClient], a2: tuple[list[dict[str, Any]], WsClient]
    ) -> None:
        """Stop Bob, talk both ways after the move, and check every device's inbox."""
        self.stop.set()
        self.acked |= {ack["message_id"] for ack in await self.talking}
        self.acked |= set(await acked(a1[1], self.bob, 5, "after from alice"))
        self.acked |= set(await acked(self.b, self.alice, 5, "after from bob"))
        alice_inboxes = []
        for who, (before, conn) in (("alice", a1), ("alice's phone", a2)):
            got = await collect(conn, before, self.acked)
            alice_inboxes.append(assert_inbox(got, self.acked, who))
        assert alice_inboxes[0] == alice_inboxes[1], "alice's devices disagree on her inbox"
        assert_inbox(await collect(self.b, [], self.acked), self.acked, "bob")
        history = await self.http[1].get(
            f"/v1/channels/{dm_id(self.alice, self.bob)}/messages",
            params={"limit": 200},
            headers=self.bob.auth,
        )
        assert {m["message_id"] for m in history.json()["messages"]} == self.acked


async def test_wrong_chat_server_redirects_to_the_owner(cluster: Cluster, clients: Clients) -> None:
    async with http_client(cluster, 0) as http0, http_client(cluster, 1) as http1:
        # Every API process (and every chat server's own API) names the same owner.
        for partition, probe in sorted(cluster.probes.items()):
            answers = await cluster.discover_everywhere(http0, probe, include_chats=True)
            assert len(set(answers.values())) == 1, f"partition {partition}: {answers}"
        account = await new_account(http0, "lost")
        owner = await cluster.owner_of(http0, account)
        assert account.chat_url == owner.ws_url
        again = await http1.post(
            "/v1/sessions",
            json={"username": account.username, "password": account.password},
        )
        assert again.json()["chat_url"] == owner.ws_url, "the API processes disagree at login"

    for chat in cluster.chats:
        if chat is owner:
            continue
        conn = await clients.open(chat.ws_url)
        answer = await conn.try_hello(account.token, "0")
        assert answer == {"type": "redirect", "chat_url": owner.ws_url}, chat.name
        assert await conn.wait_closed() == 4003
        assert conn.pending("welcome") == [] and conn.pending("msg") == []
    conn = await clients.connect(account)  # the owner welcomes the user
    assert conn.welcome["user_id"] == account.user_id


async def test_drained_chat_server_hands_users_over_and_loses_nothing(
    cluster: Cluster, clients: Clients
) -> None:
    async with http_client(cluster, 0) as http0, http_client(cluster, 1) as http1:
        scene = Scene(cluster, [http0, http1], clients)
        await scene.set_up()
        scene.start_talking()
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        scene.victim.signal(signal.SIGTERM)
        drained_at = loop.time()

        delays = []
        for conn in (scene.a1, scene.a2):
            reconnect = await conn.recv_until("reconnect", within=5)
            assert isinstance(reconnect["after_ms"], int), reconnect
            assert 0 <= reconnect["after_ms"] <= DRAIN_BUDGET_MS, reconnect
            delays.append(reconnect["after_ms"])
            assert await conn.wait_closed(within=5) == 1012

        async def back(conn: WsClient, device: Account, after_ms: int) -> Any:
            await asyncio.sleep(after_ms / 1000)
            return await scene.come_back(conn, device, DRAIN_RECONNECT_WITHIN_S)

        exit_code, a1, a2 = await asyncio.gather(
            asyncio.to_thread(scene.victim.wait_exit, 20),
            back(scene.a1, scene.alice, delays[0]),
            back(scene.a2, scene.phone, delays[1]),
        )
        moved_within = loop.time() - drained_at
        assert exit_code == 0, f"a drained chat server exited {exit_code}"
        assert moved_within <= DRAIN_RECONNECT_WITHIN_S
        # The victim's partitions now belong to the others, as every API process says.
        await cluster.wait_ready(10)
        await scene.finish((a1[0], a1[1]), (a2[0], a2[1]))
    print(f"drain: reconnected {moved_within:.1f}s after SIGTERM; {scene.summary()}")


async def test_sigkilled_chat_server_users_fail_over_and_lose_nothing(
    cluster: Cluster, clients: Clients
) -> None:
    async with http_client(cluster, 0) as http0, http_client(cluster, 1) as http1:
        scene = Scene(cluster, [http0, http1], clients)
        await scene.set_up()
        scene.start_talking()
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        scene.victim.kill()
        killed_at = loop.time()
        for conn in (scene.a1, scene.a2):
            await conn.wait_closed(within=5)

        a1, a2 = await asyncio.gather(
            scene.come_back(scene.a1, scene.alice, FAILOVER_WITHIN_S),
            scene.come_back(scene.a2, scene.phone, FAILOVER_WITHIN_S),
        )
        failed_over_within = loop.time() - killed_at
        assert failed_over_within <= FAILOVER_WITHIN_S
        await scene.finish((a1[0], a1[1]), (a2[0], a2[1]))
    print(f"failover: reconnected {failed_over_within:.1f}s after SIGKILL; {scene.summary()}")


async def test_dedupe_holds_across_an_ownership_move(cluster: Cluster, clients: Clients) -> None:
    """Dedupe takes no lightweight transaction: it rests on the owner of the sender's
    partition being the only server storing the sender's messages. When that partition
    moves, the new owner knows nothing in memory of the sender's past sends, yet a resend
    of an acked client_msg_id gets the first message's id and delivers nothing twice,
    and a reuse of it for another body is still refused."""
    async with http_client(cluster, 0) as http0, http_client(cluster, 1) as http1:
        alice = await new_account(http0, "alice")
        victim = cluster.chat_at(alice.chat_url)
        bob = await account_where(http1, lambda u: u != victim.ws_url, "bob")
        a = await clients.connect(alice)
        b = await clients.connect(bob)
        client_msg_id = await a.send_msg("only once", to=bob)
        first = await a.recv_until("ack", client_msg_id=client_msg_id)
        delivered = await b.recv_until("msg", message_id=first["message_id"])

        # Alice's partition moves: her server drains and hands its partitions over.
        victim.signal(signal.SIGTERM)
        reconnect = await a.recv_until("reconnect", within=5)
        assert await a.wait_closed(within=5) == 1012
        assert await asyncio.to_thread(victim.wait_exit, 20) == 0
        await cluster.wait_ready(10)
        await asyncio.sleep(reconnect["after_ms"] / 1000)
        a2, moved = await reconnect_through_discover(
            http0, clients, alice, cursor_of(a.received_msgs()), within=DRAIN_RECONNECT_WITHIN_S
        )
        assert moved.chat_url != victim.ws_url

        # The resend, on the new owner of her partition: the first message, once.
        await a2.send_msg("only once", to=bob, client_msg_id=client_msg_id)
        again = await a2.recv_send_answer(client_msg_id)
        assert again["type"] == "ack", again
        assert (again["message_id"], again["ts"]) == (first["message_id"], first["ts"])
        await a2.send_msg("not the same words", to=bob, client_msg_id=client_msg_id)
        reused = await a2.recv_send_answer(client_msg_id)
        assert reused == {**reused, "type": "error", "code": "duplicate_client_msg_id"}
        marker = await a2.send_and_ack("after the move", to=bob)

        # Bob: one inbox entry each, nothing delivered twice. (His own server went
        # through the rebalance too; his live connection is checked if it survived.)
        if not b.closed.is_set():
            await b.recv_until("msg", message_id=marker["message_id"])
        b2, _ = await reconnect_through_discover(http1, clients, bob, "0", within=10)
        inbox = [(m["seq"], m["message_id"]) for m in await b2.take_msgs(2)]
        assert inbox == [
            (delivered["seq"], first["message_id"]),
            (str(int(delivered["seq"]) + 1), marker["message_id"]),
        ]
        await asyncio.sleep(0.5)
        assert b2.pending("msg") == [] and b.pending("msg") == []
        history = await http1.get(
            f"/v1/channels/{dm_id(alice, bob)}/messages", params={"limit": 10}, headers=bob.auth
        )
        assert [m["message_id"] for m in history.json()["messages"]] == [
            marker["message_id"],
            first["message_id"],
        ]


async def test_login_and_discover_keep_answering_while_a_chat_server_drains(
    cluster: Cluster,
) -> None:
    """A drain (or any rebalance) must not make the API refuse to say where to connect:
    `POST /v1/sessions` and `GET /v1/discover` answer only 201/200 in the contract."""
    victim = cluster.chats[0]
    users = list(cluster.probes.values())  # one per inbox partition
    failures: list[str] = []
    answers = 0
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def ask(api: str) -> None:
        nonlocal answers
        logouts: list[asyncio.Task[None]] = []
        async with httpx.AsyncClient(base_url=api, timeout=10.0, trust_env=False) as http:
            while not done.is_set():
                for user in users:
                    response = await http.get("/v1/discover", headers=user.auth)
                    answers += 1
                    if response.status_code != 200:
                        failures.append(
                            f"{loop.time() - started:.2f}s {api} discover "
                            f"{response.status_code} {response.text}"
                        )
                user = users[answers % len(users)]
                response = await http.post(
                    "/v1/sessions", json={"username": user.username, "password": user.password}
                )
                answers += 1
                if response.status_code != 201:
                    failures.append(
                        f"{loop.time() - started:.2f}s {api} login "
                        f"{response.status_code} {response.text}"
                    )
                    continue
                # Log the new device out again (a user has at most 10 devices), beside
                # the asking: a logout waits until every server has seen it.
                logouts.append(asyncio.create_task(logout(http, response.json())))
            await asyncio.gather(*logouts)

    async def logout(http: httpx.AsyncClient, session: dict[str, str]) -> None:
        token = session["access_token"]
        out = await http.delete(
            "/v1/sessions/current", headers={"Authorization": f"Bearer {token}"}
        )
        if out.status_code != 204:
            failures.append(f"{loop.time() - started:.2f}s logout {out.status_code} {out.text}")

    askers = [asyncio.create_task(ask(api)) for api in cluster.api_urls]
    try:
        await asyncio.sleep(0.5)
        victim.signal(signal.SIGTERM)
        assert await asyncio.to_thread(victim.wait_exit, 20) == 0
        await cluster.wait_ready(10)  # the partitions have moved
        await asyncio.sleep(0.5)
    finally:
        done.set()
        await asyncio.gather(*askers)
    assert answers > 100
    kinds = Counter(" ".join(f.split()[2:4]) for f in failures)
    assert failures == [], (
        f"{len(failures)} of {answers} answers during the drain were not 200/201 "
        f"({dict(kinds)}), from {failures[0]} to {failures[-1]}"
    )


async def test_friends_see_the_users_of_a_killed_server_go_offline(
    cluster: Cluster, clients: Clients
) -> None:
    """The cluster counterpart of "presence must not stay online across a restart": a user
    whose chat server dies and who does not come back is offline, with the last_seen of
    when she went, both stored and as a presence frame to her friends elsewhere (within
    the failover time plus the presence window)."""
    async with http_client(cluster, 0) as http:
        carol = await new_account(http, "carol")
        victim = cluster.chat_at(carol.chat_url)
        bob = await account_where(http, lambda u: u != victim.ws_url, "bob")
        await befriend(http, bob, carol)
        b = await clients.connect(bob)
        connected_ms = now_ms()
        await clients.connect(carol)
        online = await b.recv_until("presence", within=5, user_id=carol.user_id)
        assert online["status"] == "online"
        await asyncio.sleep(0.5)
        victim.kill()
        killed_ms = now_ms()

        problems = []
        deadline = asyncio.get_running_loop().time() + PRESENCE_LEASE_S + 2
        while True:
            shown = (await http.get(f"/v1/users/{carol.user_id}", headers=bob.auth)).json()
            stored = shown["presence"]
            if stored["status"] == "offline" or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        if stored["status"] != "offline":
            problems.append(f"stored presence still {stored} {PRESENCE_LEASE_S + 2}s after")
        elif not _went_at(stored.get("last_seen"), connected_ms, killed_ms):
            problems.append(f"stored offline presence has last_seen {stored.get('last_seen')!r}")

        bound = FAILOVER_WITHIN_S + PRESENCE_OFFLINE_AFTER_S
        try:
            frame = await b.recv_until("presence", within=bound, user_id=carol.user_id)
        except AssertionError:
            problems.append(f"no presence frame to her friend within {bound}s of the kill")
        else:
            if frame["status"] != "offline":
                problems.append(f"the friend was told {frame}, not offline")
            elif not _went_at(frame.get("last_seen"), connected_ms, killed_ms):
                problems.append(f"the offline frame has last_seen {frame.get('last_seen')!r}")
    assert problems == [], (
        f"carol's server was SIGKILLed at {killed_ms} (she connected at {connected_ms}): "
        + "; ".join(problems)
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _went_at(last_seen: object, connected_ms: int, killed_ms: int) -> bool:
    """last_seen of someone who was connected from connected_ms until killed_ms."""
    return isinstance(last_seen, int) and connected_ms - 1000 <= last_seen <= killed_ms + 1000
