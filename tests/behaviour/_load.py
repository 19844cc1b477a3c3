"""Devices under load, for the fault tests and the node drills (tests/e2e/).

Every :class:`Device` is an app: it sends at a steady pace, keeps every msg frame it gets,
and when its connection goes away reconnects the way an app does (``/v1/discover``,
hello with its cursor). :meth:`Load.check_delivery` then checks that every acked message
reached every device of its recipient (repeats only as the same message_id again).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from ._harness import Account, Clients, WsClient, reconnect_through_discover


@dataclass
class Send:
    client_msg_id: str
    to: str
    sent_at: float
    answer: str = "none"  # ack | error:<code> | closed | none
    answered_at: float | None = None
    message_id: str | None = None
    frame: dict[str, Any] | None = None


@dataclass
class Device:
    """One logged-in device: its connection, every msg it got, every send and welcome."""

    account: Account
    conn: WsClient
    target: Account | None = None  # whom it sends to (None: it only receives)
    got: list[dict[str, Any]] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    drops: list[float] = field(default_factory=list)  # loop time of every lost connection
    welcomes: list[float] = field(default_factory=list)  # loop time of every re-welcome
    detours: list[str] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return self.account.user_id

    def all_msgs(self) -> list[dict[str, Any]]:
        return [*self.got, *self.conn.received_msgs()]

    def cursor(self) -> str:
        return str(max((int(m["seq"]) for m in self.all_msgs()), default=0))

    def outages(self) -> list[float]:
        """Seconds from each lost connection to the welcome that ended it."""
        return [back - lost for lost, back in zip(self.drops, self.welcomes, strict=False)]


class Load:
    """Every device keeps its connection (reconnecting through discovery) and, if it has
    a target, sends to it every ``every`` seconds and waits for the answer."""

    def __init__(
        self,
        http: list[httpx.AsyncClient],
        clients: Clients,
        every: float,
        *,
        answer_within: float,
        reconnect_within: float,
        delivered_within: float,
    ) -> None:
        self.http, self.clients, self.every = http, clients, every
        self.answer_within = answer_within  # a send is answered (ack or error) within this
        self.reconnect_within = reconnect_within  # a lost connection is back within this
        self.delivered_within = delivered_within  # check_delivery waits this long at most
        self.devices: list[Device] = []
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self._turn = itertools.count()

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._run(d)) for d in self.devices]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)

    async def _reconnect(self, device: Device) -> None:
        device.drops.append(asyncio.get_running_loop().time())
        before = device.conn.received_msgs()
        device.got.extend(before)
        device.conn.backlog = []
        device.conn.buffer = [f for f in device.conn.buffer if f.get("type") != "msg"]
        http = self.http[next(self._turn) % len(self.http)]
        conn, moved = await reconnect_through_discover(
            http,
            self.clients,
            device.account,
            device.cursor(),
            within=self.reconnect_within,
            tried=device.detours,
        )
        device.welcomes.append(asyncio.get_running_loop().time())
        device.conn, device.account = conn, moved

    async def _run(self, device: Device) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        next_at = loop.time() + random.random() * self.every  # spread the senders' ticks
        while not self.stop.is_set():
            if device.conn.closed.is_set():
                await self._reconnect(device)
                continue
            if device.target is not None and loop.time() >= next_at:
                next_at = loop.time() + self.every
                n += 1
                await self._send(device, n)
                continue
            wait = max(0.0, next_at - loop.time()) if device.target else 0.5
            await first_of(wait, device.conn.closed, self.stop)

    async def _send(self, device: Device, n: int) -> None:
        assert device.target is not None
        loop = asyncio.get_running_loop()
        send = Send(uuid.uuid4().hex, device.target.user_id, loop.time())
        device.sends.append(send)
        try:
            await device.conn.send_msg(
                f"load {n} from {device.account.device_id}",
                to=device.target,
                client_msg_id=send.client_msg_id,
            )
            frame = await device.conn.recv_send_answer(send.client_msg_id, self.answer_within)
        except ConnectionClosed:
            send.answer = "closed"
            return
        except AssertionError as exc:
            send.answer = "closed" if device.conn.closed.is_set() else "none"
            if send.answer == "none":
                send.frame = {"problem": str(exc)[:200]}
            return
        send.answered_at = loop.time()
        send.frame = frame
        if frame["type"] == "ack":
            send.answer = "ack"
            send.message_id = frame["message_id"]
        else:
            send.answer = f"error:{frame.get('code')}"

    # --- checks ------------------------------------------------------------------------

    def acked_to(self) -> dict[str, set[str]]:
        """Recipient user id -> message ids acked to its senders."""
        acked: dict[str, set[str]] = {}
        for device in self.devices:
            for send in device.sends:
                if send.answer == "ack":
                    assert send.message_id is not None
                    acked.setdefault(send.to, set()).add(send.message_id)
        return acked

    async def check_delivery(self) -> dict[str, int]:
        """Every acked message reached every device of its recipient (bounded wait);
        repeats only as the same message again. Returns counts for the report."""
        acked = self.acked_to()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.delivered_within
        missing: dict[str, set[str]] = {}
        while True:
            missing = {}
            for device in self.devices:
                ids = {m["message_id"] for m in device.all_msgs()}
                lost = acked.get(device.user_id, set()) - ids
                if lost:
                    missing[device.account.device_id] = lost
            if not missing or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
        duplicates = 0
        problems = []
        for device in self.devices:
            by_id: dict[str, dict[str, Any]] = {}
            for m in device.all_msgs():
                first = by_id.setdefault(m["message_id"], m)
                if first is not m:
                    duplicates += 1
                    if (first["seq"], first["client_msg_id"], first["body"]) != (
                        m["seq"],
                        m["client_msg_id"],
                        m["body"],
                    ):
                        problems.append(f"message {m['message_id']} came twice, differently")
            seqs: dict[str, str] = {}
            for m in device.all_msgs():
                if seqs.setdefault(m["seq"], m["message_id"]) != m["message_id"]:
                    problems.append(f"{device.account.device_id}: seq {m['seq']} is 2 messages")
        lost_total = sum(len(v) for v in missing.values())
        assert lost_total == 0 and not problems, (
            f"{lost_total} acked messages never reached {len(missing)} devices "
            f"(e.g. {dict(list(missing.items())[:3])}); problems: {problems[:5]}"
        )
        return {
            "acked": sum(len(v) for v in acked.values()),
            "delivered_frames": sum(len(d.all_msgs()) for d in self.devices),
            "duplicates": duplicates,
        }


async def first_of(within: float, *events: asyncio.Event) -> None:
    """Until one of the events is set, for at most ``within`` seconds."""
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def poll_until(done: Callable[[], bool], deadline: float, every: float = 0.1) -> None:
    """Until ``done()`` or the loop time ``deadline``."""
    loop = asyncio.get_running_loop()
    while True:
        if done() or loop.time() >= deadline:
            return
        await asyncio.sleep(every)


async def watch_port(port: int, stop: asyncio.Event, seen: list[tuple[float, bool]]) -> None:
    """Record (loop time, open) whenever 127.0.0.1:``port`` starts or stops accepting."""
    loop = asyncio.get_running_loop()
    state: bool | None = None
    while not stop.is_set():
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
            writer.close()
            now_open = True
        except (OSError, TimeoutError):
            now_open = False
        if now_open != state:
            seen.append((loop.time(), now_open))
            state = now_open
        await asyncio.sleep(0.1)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def record(tmp_path: Path, name: str, result: dict[str, Any]) -> str:
    text = json.dumps(result, indent=2, sort_keys=True)
    (tmp_path / f"{name}.json").write_text(text)
    print(f"\n{name}: {json.dumps(result, sort_keys=True)}")
    return text


def peers_elsewhere(accounts: list[Account]) -> list[Account]:
    """For every account, a peer on another chat server (round robin over them)."""
    targets = []
    for i, account in enumerate(accounts):
        others = [a for a in accounts if a.chat_url != account.chat_url]
        targets.append(others[i % len(others)])
    return targets
