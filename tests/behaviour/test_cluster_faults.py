"""A cluster under load losing a chat server, its Kafka broker or its Cassandra node.

Every device here is an app: it sends at a steady pace, keeps every msg frame it gets,
and when its connection goes away reconnects the way an app does (``/v1/discover``,
hello with its cursor). Whatever happens, every acked message must reach every device of
its recipient (duplicates only as the same message_id again).

The engine tests restart the test environment's shared Kafka broker and Cassandra node
(``e2e/env/kafka.sh restart``, ``e2e/env/cassandra.sh restart``: same data, a short
outage); other test runs on the machine see that outage too. Each engine test runs on a
cluster of its own. During the outage every send must be answered (a real ``ack`` or a
retriable ``error`` ``unavailable``) within ANSWER_WITHIN_S; once the engine answers
again, every sender must see acks again within RECOVERED_WITHIN_S, and every acked
message must reach every device of its recipient. Results (failover p50/p99/max, answer
counts, outage lengths) are printed and written as JSON to the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._cluster import Backends, Cluster, close_cluster, open_cluster
from ._harness import Account, Clients, another_device, http_client, new_account
from ._load import Device, Load, peers_elsewhere, percentile, poll_until, record, watch_port

pytestmark = [pytest.mark.kafka, pytest.mark.cassandra, pytest.mark.postgres, pytest.mark.s3]

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = REPO_ROOT / "e2e" / "env"

FAILOVER_USERS = 30
FAILOVER_WITHIN_S = 10.0  # kill -> welcome elsewhere, for every client of the killed server
# ... and for 99% of them (#14: p99 <= 5 s). With the test clusters' 3 s consumer session
# (_cluster.KAFKA_SESSION_TIMEOUT_S) it measured 3.6-4.1 s in 3 runs; the bound
# leaves room for a loaded CI machine (the default 6 s session measured 7.6 s).
FAILOVER_P99_WITHIN_S = 7.5
SEND_EVERY_S = 1.0
# The test cluster's Kafka request timeout (TIDINGS_KAFKA_REQUEST_TIMEOUT_S; 30 s by
# default): a publish waits for partition metadata and then for the batch, each bounded by
# it. Cassandra's request timeout is its default, 10 s.
KAFKA_REQUEST_TIMEOUT_S = 10
# A send is answered (ack or error) within this, engine down or not.
ANSWER_WITHIN_S = 2 * KAFKA_REQUEST_TIMEOUT_S + 5.0
ENGINE_DOWN_S = 1  # how long a restarted engine stays down before it starts again
RECOVERED_WITHIN_S = 30.0  # engine healthy again -> every sender's sends acked again
DELIVERED_WITHIN_S = 20.0
PRESENCE_LEASE_S = 3
LOAD_BOUNDS = {
    "answer_within": ANSWER_WITHIN_S,
    "reconnect_within": max(FAILOVER_WITHIN_S, RECOVERED_WITHIN_S) * 2,
    "delivered_within": DELIVERED_WITHIN_S,
}


def _open(tmp_path_factory: pytest.TempPathFactory, testenv: Mapping[str, str]) -> Cluster:
    return open_cluster(
        tmp_path_factory.mktemp("tidings-faults"),
        Backends.from_testenv(testenv),
        env={
            "TIDINGS_PRESENCE_LEASE_S": str(PRESENCE_LEASE_S),
            "TIDINGS_KAFKA_REQUEST_TIMEOUT_S": str(KAFKA_REQUEST_TIMEOUT_S),
        },
    )


@pytest.fixture(scope="module")
def faults_cluster(
    tmp_path_factory: pytest.TempPathFactory, testenv: Mapping[str, str]
) -> Iterator[Cluster]:
    cluster = _open(tmp_path_factory, testenv)
    try:
        yield cluster
    finally:
        close_cluster(cluster)


@pytest.fixture
def fresh_cluster(
    tmp_path_factory: pytest.TempPathFactory, testenv: Mapping[str, str]
) -> Iterator[Cluster]:
    """A cluster of the test's own: an engine fault may leave a chat server broken (see
    the findings in the report), which must not spill into the next test."""
    cluster = _open(tmp_path_factory, testenv)
    try:
        yield cluster
    finally:
        close_cluster(cluster)


@pytest.fixture
async def cluster(faults_cluster: Cluster) -> AsyncIterator[Cluster]:
    """The module's cluster with every chat server running and ownership settled."""
    stopped = [chat for chat in faults_cluster.chats if not chat.running]
    for chat in stopped:
        await asyncio.to_thread(faults_cluster.restart_chat, chat)
    if stopped:
        await faults_cluster.wait_ready(60)
    yield faults_cluster


async def users_on_every_server(
    cluster: Cluster, http: list[httpx.AsyncClient], count: int
) -> list[Account]:
    """``count`` new users, as evenly over the chat servers as ``count`` allows."""
    each = -(-count // len(cluster.chats))
    by_server: dict[str, list[Account]] = {url: [] for url in cluster.chat_urls}
    for _ in range(10):
        short = sum(max(0, each - len(v)) for v in by_server.values())
        if not short:
            break
        made = await asyncio.gather(
            *(new_account(http[i % len(http)], "load") for i in range(short + 3))
        )
        for account in made:
            by_server[account.chat_url].append(account)
    counts = {url: len(v) for url, v in by_server.items()}
    assert all(n >= each for n in counts.values()), f"users per server: {counts}"
    spread = [a for accounts in zip(*by_server.values(), strict=False) for a in accounts]
    return spread[:count]


# --- tests -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_failover_under_load_every_client_is_back_within_bound(
    cluster: Cluster, clients: Clients, tmp_path: Path
) -> None:
    async with http_client(cluster, 0) as http0, http_client(cluster, 1) as http1:
        http = [http0, http1]
        accounts = await users_on_every_server(cluster, http, FAILOVER_USERS)
        load = Load(http, clients, SEND_EVERY_S, **LOAD_BOUNDS)
        conns = await asyncio.gather(*(clients.connect(a) for a in accounts))
        for account, conn, target in zip(accounts, conns, peers_elsewhere(accounts), strict=True):
            load.devices.append(Device(account, conn, target))
        victim = cluster.chat_at(accounts[0].chat_url)
        on_victim = [d for d in load.devices if d.account.chat_url == victim.ws_url]

        load.start()
        await asyncio.sleep(3)
        loop = asyncio.get_running_loop()
        victim.kill()
        killed_at = loop.time()
        deadline = killed_at + FAILOVER_WITHIN_S * 2
        await poll_until(lambda: all(d.welcomes for d in on_victim), deadline)
        await asyncio.sleep(3)  # load on the survivors after the move
        await load.finish()

        back = [d.welcomes[0] - killed_at for d in on_victim if d.welcomes]
        not_back = [d.account.device_id for d in on_victim if not d.welcomes]
        # The survivor's own clients keep their connections through the rebalance.
        bumped = [d.account.device_id for d in load.devices if d not in on_victim and d.drops]
        answers = Counter(s.answer for d in load.devices for s in d.sends)
        result: dict[str, Any] = {
            "clients": len(load.devices),
            "clients_of_killed_server": len(on_victim),
            "not_back": not_back,
            "survivors_clients_bumped": len(bumped),
            "answers": dict(answers),
        }
        if back:
            result |= {
                "failover_p50_s": round(percentile(back, 50), 3),
                "failover_p99_s": round(percentile(back, 99), 3),
                "failover_max_s": round(max(back), 3),
            }
        report = record(tmp_path, "failover", result)
        assert not not_back and max(back) <= FAILOVER_WITHIN_S, (
            f"clients of the SIGKILLed server must be welcomed elsewhere within "
            f"{FAILOVER_WITHIN_S}s: {report}; detours: "
            f"{sorted({t.rsplit(': ', 1)[-1][:40] for d in on_victim for t in d.detours})}"
        )
        assert percentile(back, 99) <= FAILOVER_P99_WITHIN_S, (
            f"failover p99 above {FAILOVER_P99_WITHIN_S}s: {report}"
        )
        assert not bumped, f"the surviving server's clients were disconnected: {report}"
        bad = {k: v for k, v in answers.items() if k not in ("ack", "closed")}
        assert not bad, f"sends answered other than ack (or cut by the kill): {report}"
        result |= await load.check_delivery()
        record(tmp_path, "failover", result)


@pytest.mark.timeout(150)
async def test_a_killed_server_restarting_takes_partitions_without_bumping_the_others_clients(
    cluster: Cluster, clients: Clients, tmp_path: Path
) -> None:
    """The drill of a deleted pod that its StatefulSet recreates: the server is killed,
    its clients fail over, it starts again with the same id and rejoins the group empty.
    The survivors give it partitions, but never the ones their own clients were on all
    along (bus/_sticky.py: claims in order of preference); only clients that came over
    from the killed server may be sent back."""
    async with http_client(cluster, 0) as http0, http_client(cluster, 1) as http1:
        http = [http0, http1]
        accounts = await users_on_every_server(cluster, http, 4 * len(cluster.chats))
        load = Load(http, clients, SEND_EVERY_S, **LOAD_BOUNDS)
        conns = await asyncio.gather(*(clients.connect(a) for a in accounts))
        load.devices += [Device(a, c) for a, c in zip(accounts, conns, strict=True)]
        victim = cluster.chat_at(accounts[0].chat_url)
        on_victim = [d for d in load.devices if d.account.chat_url == victim.ws_url]
        others = [d for d in load.devices if d not in on_victim]

        load.start()
        loop = asyncio.get_running_loop()
        victim.kill()
        await poll_until(lambda: all(d.welcomes for d in on_victim), loop.time() + 20)
        await asyncio.to_thread(cluster.restart_chat, victim)
        await cluster.wait_ready(60)
        await asyncio.sleep(2)  # any release of the rebalance has reached the clients
        await load.finish()

        bumped = [d.account.device_id for d in others if d.drops]
        result = {
            "clients": len(load.devices),
            "clients_of_killed_server": len(on_victim),
            "sent_back_after_restart": sum(len(d.drops) > 1 for d in on_victim),
            "others_bumped": bumped,
        }
        report = record(tmp_path, "rejoin", result)
        assert not bumped, f"clients of the servers that stayed were disconnected: {report}"


async def engine_fault(
    cluster: Cluster, clients: Clients, tmp_path: Path, engine: str, script: str, port: int
) -> None:
    async with http_client(cluster, 0) as http0, http_client(cluster, 1) as http1:
        http = [http0, http1]
        accounts = await users_on_every_server(cluster, http, 9)
        load = Load(http, clients, 0.25, **LOAD_BOUNDS)
        conns = await asyncio.gather(*(clients.connect(a) for a in accounts))
        for account, conn, target in zip(accounts, conns, peers_elsewhere(accounts), strict=True):
            load.devices.append(Device(account, conn, target))
        # A second, receive-only device for every user: "every device of the recipient".
        seconds = await asyncio.gather(
            *(another_device(http[i % 2], a) for i, a in enumerate(accounts))
        )
        for device in seconds:
            load.devices.append(Device(device, await clients.connect(device)))

        load.start()
        watching = asyncio.Event()
        port_states: list[tuple[float, bool]] = []
        watcher = asyncio.create_task(watch_port(port, watching, port_states))
        await asyncio.sleep(2)
        loop = asyncio.get_running_loop()
        restart_at = loop.time()
        done = await asyncio.to_thread(
            subprocess.run,
            ["bash", str(ENV_DIR / script), "restart", str(ENGINE_DOWN_S)],
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        healthy_at = loop.time()
        assert done.returncode == 0, (
            f"{script} restart failed ({done.returncode}): {done.stdout}{done.stderr}"
        )

        # Every sender's sends are acked again: three acks in a row after the engine is back.
        def recovered(device: Device) -> bool:
            answered = [s for s in device.sends if s.sent_at >= healthy_at and s.answer != "none"]
            tail = [s.answer for s in answered][-3:]
            return len(tail) == 3 and all(a == "ack" for a in tail)

        senders = [d for d in load.devices if d.target is not None]
        await poll_until(
            lambda: all(recovered(d) for d in senders), healthy_at + RECOVERED_WITHIN_S
        )
        recovered_at = loop.time()
        await load.finish()
        watching.set()
        await watcher
        down = [t for t, up in port_states if not up]
        down_at = down[0] if down else restart_at
        up_at = next((t for t, up in port_states if up and t > down_at), healthy_at)

        sends = [s for d in senders for s in d.sends]
        answers = Counter(s.answer for s in sends)
        during = Counter(s.answer for s in sends if down_at <= s.sent_at < up_at)
        late = Counter(
            f"late {f['type']}:{f.get('code', '')}"
            for d in senders
            for s in d.sends
            if s.answer == "none"
            for f in d.conn.buffer
            if f.get("ref") == s.client_msg_id or f.get("client_msg_id") == s.client_msg_id
        )
        slowest = max(
            (s.answered_at - s.sent_at for s in sends if s.answered_at is not None), default=0.0
        )
        result: dict[str, Any] = {
            "engine": engine,
            "restart_script_s": round(healthy_at - restart_at, 2),
            "port_closed_s": round(up_at - down_at, 2),
            "port_open_to_healthy_s": round(healthy_at - up_at, 2),
            "acked_again_after_healthy_s": round(recovered_at - healthy_at, 2),
            "answers": dict(answers),
            "answers_sent_while_port_closed": dict(during),
            "unanswered_answered_late": dict(late),
            "slowest_answer_s": round(slowest, 2),
            "reconnects": sum(len(d.welcomes) for d in load.devices),
            "chat_servers_running": [c.running for c in cluster.chats],
            "unanswered": [s.frame for s in sends if s.answer == "none"][:3],
            "other_errors": [
                s.frame
                for s in sends
                if s.answer.startswith("error") and s.frame and s.frame.get("code") != "unavailable"
            ][:3],
        }
        report = record(tmp_path, f"engine-{engine}", result)
        problems = []
        if not all(c.running for c in cluster.chats):
            problems.append("a chat server exited")
        if answers.get("none"):
            problems.append(f"{answers['none']} sends got no answer within {ANSWER_WITHIN_S}s")
        wrong = {k: v for k, v in answers.items() if k not in ("ack", "error:unavailable")}
        wrong.pop("none", None)
        if wrong:
            problems.append(f"sends answered other than ack / error unavailable: {wrong}")
        if not all(recovered(d) for d in senders):
            stuck: dict[str, Counter[str]] = {}
            for d in senders:
                if not recovered(d):
                    where = cluster.chat_at(d.account.chat_url).name
                    stuck.setdefault(where, Counter()).update(
                        s.answer for s in d.sends if s.sent_at >= healthy_at
                    )
            problems.append(
                f"sends not acked again within {RECOVERED_WITHIN_S}s of {engine} being "
                f"healthy; answers since, per chat server of the stuck senders: {stuck}"
            )
        try:
            result |= await load.check_delivery()
        except AssertionError as exc:
            problems.append(str(exc))
        result["problems"] = problems
        record(tmp_path, f"engine-{engine}", result)
        assert not problems, f"{engine} restart under load: {problems}\n{report}"


# A restart of the shared broker / node takes 20-60 s on a busy 2-CPU machine (JVM start,
# log recovery of every test run's topics), hence the longer bounds.
@pytest.mark.timeout(240)
async def test_kafka_restart_under_load(
    fresh_cluster: Cluster, clients: Clients, tmp_path: Path
) -> None:
    await engine_fault(fresh_cluster, clients, tmp_path, "kafka", "kafka.sh", 19092)


@pytest.mark.timeout(240)
async def test_cassandra_restart_under_load(
    fresh_cluster: Cluster, clients: Clients, tmp_path: Path
) -> None:
    await engine_fault(fresh_cluster, clients, tmp_path, "cassandra", "cassandra.sh", 19042)
