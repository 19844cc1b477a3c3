"""A load-generator process: holds many connections, sends on an open-loop schedule,
records what arrives, and reports to the orchestrator over a pipe.

The orchestrator sends commands (tuples) and reads one answer per command:
``("run", start_ns, duration_s, drain_s)``, ``("idle", seconds)``, ``("storm", url)``
(reconnect on ``reconnect`` / close until ``("collect",)``; the clients on ``url`` are the
drained ones), ``("send", rate, start_ns, duration_s)`` (sending in the background, every
message tracked, until ``("stop_sending",)``), ``("stop",)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

from tidings.bench._histogram import Latency
from tidings.bench._openloop import run_open_loop
from tidings.bench._procstat import raise_nofile
from tidings.bench._wsclient import WsConn, connect, http_get
from tidings.client._backoff import RESTART_WINDOW_S, Backoff, restart_backoff
from tidings.client._supervisor import SAME_URL_RETRIES

Account = dict[str, str]


@dataclass
class Plan:
    dialect: str  # "tidings", "baseline" or "centrifugo"
    accounts: list[Account]
    url: str  # where to connect when an account names no chat_url
    local_hosts: list[str]
    deflate: bool = False
    heartbeat_s: float = 5.0
    connect_concurrency: int = 64
    # (index of the sending account, target): a user id, a channel id, or user ids.
    senders: list[tuple[int, Any]] = field(default_factory=list)
    rate: float = 0.0  # messages per second, all this worker's senders together
    body_bytes: int = 64
    api_url: str = ""  # /v1/discover in a reconnect storm; Centrifugo's HTTP API
    api_key: str = ""


class DiscoverNotOk(ConnectionError):
    """``/v1/discover`` answered, but not 200 (503 from admission control: come back)."""


class Peer:
    """One connection's state."""

    __slots__ = (
        "account",
        "back_at",
        "conn",
        "cursor",
        "down_at",
        "drained",
        "drops",
        "index",
        "live",
        "phases",
        "ready",
        "reconnect_ms",
        "same_url",
        "url",
    )

    def __init__(self, index: int, account: Account) -> None:
        self.index = index
        self.account = account
        self.conn: WsConn | None = None
        self.ready: asyncio.Future[None] | None = None
        self.live = False
        self.cursor = "0"
        self.reconnect_ms: int | None = None
        self.same_url = False  # the reconnect said: come back to this url, no discover
        self.url = ""  # where the connection is (or was last)
        self.drained = False  # on the drained server when the storm began
        self.down_at = 0  # its first drop in the storm
        self.back_at = 0  # its first ready after that drop
        self.drops = 0
        # (start of the attempt that brought it back, its /v1/discover answered, attempts)
        self.phases: tuple[int, int, int] | None = None


class Worker:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.peers = [Peer(i, a) for i, a in enumerate(plan.accounts)]
        self.latency = Latency()
        self.ack_latency = Latency()
        self.send_lag = Latency()
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.last_receive_ns = 0
        self.storming = False
        # Storm probes: "<sender user id>:<client_msg_id>" of each message sent, acked and
        # received (with ``track``), to tell whether anything acked was lost.
        self.track = False
        self.sent_refs: list[str] = []
        self.acked_refs: list[str] = []
        self.received_refs: list[str] = []
        self.sending: asyncio.Task[Any] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self._http: Any = None

    # --- frames in ---------------------------------------------------------------

    def on_text(self, conn: WsConn, text: str) -> None:
        """Handle a frame from the server on ``conn``: count and time deliveries and acks, mark
        the connection ready, note errors, reconnects and redirects."""
        peer: Peer = conn.state
        if self.plan.dialect == "centrifugo":
            for line in text.split("\n"):
                if line:
                    self._centrifugo(peer, conn, line)
            return
        frame = json.loads(text)
        kind = frame.get("type")
        if kind == "msg":
            if self.plan.dialect == "tidings":
                mine = frame["sender_id"] == peer.account["user_id"]
                peer.cursor = frame["seq"]
            else:
                mine = frame["from"] == peer.account["user_id"]
            if mine:
                self.counts["echoes"] += 1
            elif "event" in frame:
                pass  # a channel event (a group's creation, a join): not the load
            else:
                self._received(frame["body"])
                if self.track:
                    ref = frame["body"].split("|", 2)[1:2]
                    self.received_refs.append(f"{frame.get('sender_id')}:{''.join(ref)}")
        elif kind == "ack":
            self.counts["acked"] += 1
            ref = frame.get("client_msg_id") or ""
            if self.track:
                self.acked_refs.append(f"{peer.account['user_id']}:{ref}")
            with contextlib.suppress(ValueError):
                self.ack_latency.record_ns(time.monotonic_ns() - int(ref.split(".", 1)[0]))
        elif kind in ("synced", "welcome"):
            if kind == "synced" or self.plan.dialect == "baseline":
                if kind == "synced":
                    peer.cursor = frame["cursor"]
                self._ready(peer)
        elif kind == "error":
            self.errors[str(frame.get("code"))] += 1
        elif kind == "reconnect":
            peer.reconnect_ms = int(frame.get("after_ms", 0))
            peer.same_url = frame.get("same_url") is True
        elif kind == "redirect":  # this server does not serve the user: go to the owner
            peer.account["chat_url"] = str(frame["chat_url"])
            self.counts["redirects"] += 1

    def _centrifugo(self, peer: Peer, conn: WsConn, line: str) -> None:
        frame = json.loads(line)
        if not frame:
            conn.send("{}")  # answer the server's ping
        elif "push" in frame:
            pub = frame["push"].get("pub")
            if pub is not None:
                self._received(pub["data"]["b"])
        elif "connect" in frame:
            self._ready(peer)
        elif "error" in frame:
            self.errors[str(frame["error"].get("code"))] += 1

    def _received(self, body: str) -> None:
        now = time.monotonic_ns()
        self.counts["received"] += 1
        self.last_receive_ns = now
        with contextlib.suppress(ValueError):
            self.latency.record_ns(now - int(body.split("|", 1)[0]))

    def _ready(self, peer: Peer) -> None:
        peer.live = True
        if self.storming and peer.down_at and not peer.back_at:
            peer.back_at = time.monotonic_ns()
        if peer.ready is not None and not peer.ready.done():
            peer.ready.set_result(None)

    # --- connecting --------------------------------------------------------------

    def _hello(self, peer: Peer) -> str:
        account = peer.account
        if self.plan.dialect == "tidings":
            return json.dumps({"type": "hello", "token": account["token"], "cursor": peer.cursor})
        if self.plan.dialect == "baseline":
            return json.dumps({"type": "hello", "user": account["user_id"]})
        return json.dumps({"id": 1, "connect": {"token": account["token"], "name": "bench"}})

    async def open(self, peer: Peer, url: str | None = None) -> None:
        """Connect ``peer`` (to ``url``, its chat URL or the plan's), say hello and wait until
        the server says it is ready.

        Raises ``ConnectionError`` when the connection closes first or 20 s pass (it is
        aborted then)."""
        url = url or peer.account.get("chat_url") or self.plan.url
        host = self.plan.local_hosts[peer.index % len(self.plan.local_hosts)]
        peer.url = url
        peer.live = False
        peer.ready = asyncio.get_running_loop().create_future()
        conn = await connect(
            url, self.on_text, deflate=self.plan.deflate, state=peer, local_host=host
        )
        peer.conn = conn
        conn.send(self._hello(peer))
        ready = peer.ready
        try:
            await asyncio.wait([ready, conn.closed], timeout=20, return_when="FIRST_COMPLETED")
        except BaseException:
            conn.abort()
            raise
        if not ready.done():
            conn.abort()  # sent away (redirect, reconnect) or no answer
            raise ConnectionError("closed before the server said it was ready")
        if self.storming:
            self._watch(peer)

    async def connect_all(self) -> dict[str, Any]:
        """Open every connection (up to 5 attempts each, ``connect_concurrency`` at a time);
        how many are live, the failures by exception name and the seconds it took."""
        gate = asyncio.Semaphore(self.plan.connect_concurrency)
        failures: Counter[str] = Counter()

        async def one(peer: Peer) -> None:
            async with gate:
                for attempt in range(5):
                    try:
                        await self.open(peer)
                        return
                    except Exception as exc:
                        failures[type(exc).__name__] += 1
                        await asyncio.sleep(0.2 * (attempt + 1))

        t0 = time.monotonic()
        await asyncio.gather(*(one(p) for p in self.peers))
        live = sum(p.live for p in self.peers)
        return {"connected": live, "failures": dict(failures), "seconds": time.monotonic() - t0}

    # --- heartbeats --------------------------------------------------------------

    async def heartbeats(self) -> None:
        """Every connection says ``heartbeat`` once per ``heartbeat_s``, spread evenly."""
        if self.plan.dialect == "centrifugo" or self.plan.heartbeat_s <= 0:
            return
        tick = 0.1
        slices = max(1, int(self.plan.heartbeat_s / tick))
        k = 0
        while True:
            await asyncio.sleep(tick)
            for peer in self.peers[k % slices :: slices]:
                if peer.live and peer.conn is not None:
                    peer.conn.send('{"type":"heartbeat"}')
            k += 1

    # --- sending -----------------------------------------------------------------

    def fire(self, i: int, intended_ns: int) -> None:
        """Send the ``i``-th message of the open loop, due at ``intended_ns``, from the next
        sender in turn (counted ``not_sent`` when its connection is not live)."""
        index, target = self.plan.senders[i % len(self.plan.senders)]
        if self.plan.dialect == "centrifugo":
            self._spawn(self._publish(str(target), f"{intended_ns}|" + "x" * self.plan.body_bytes))
            self.counts["sent"] += 1
            return
        peer = self.peers[index]
        if peer.conn is None or not peer.live:
            self.counts["not_sent"] += 1
            return
        ref = f"{intended_ns}.{i}"
        body = f"{intended_ns}|" + (f"{ref}|" if self.track else "") + "x" * self.plan.body_bytes
        if self.track:
            self.sent_refs.append(f"{peer.account['user_id']}:{ref}")
        if self.plan.dialect == "tidings":
            frame: dict[str, Any] = {"type": "send", "client_msg_id": ref, "body": body}
            if isinstance(target, str) and not target[:1].isdigit():
                frame["channel_id"] = target
            else:
                frame["to"] = target
        else:
            targets = target if isinstance(target, list) else [target]
            frame = {"type": "send", "client_msg_id": ref, "to": targets, "body": body}
        peer.conn.send(json.dumps(frame))
        self.counts["sent"] += 1

    async def run(self, rate: float, start_ns: int, duration_s: float) -> dict[str, Any]:
        """Send for the window; the orchestrator then waits for the deliveries it
        expects across every generator (``progress``) and asks for ``results``."""
        if not self.plan.senders:
            rate = 0.0
        await run_open_loop(rate, start_ns, duration_s, self.fire, self.send_lag)
        end_ns = start_ns + int(duration_s * 1e9)
        await asyncio.sleep(max(0.0, (end_ns - time.monotonic_ns()) / 1e9))
        return {"sent": self.counts["sent"]}

    def reset(self) -> None:
        """Fresh histograms and counts (the connections stay)."""
        self.latency, self.ack_latency, self.send_lag = Latency(), Latency(), Latency()
        self.counts.clear()
        self.errors.clear()

    def results(self) -> dict[str, Any]:
        """The counts, errors and histograms (encoded) so far, and how many connections are live."""
        return {
            "counts": dict(self.counts),
            "errors": dict(self.errors),
            "latency": self.latency.encode(),
            "ack_latency": self.ack_latency.encode(),
            "send_lag": self.send_lag.encode(),
            "live": sum(p.live for p in self.peers),
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _publish(self, channel: str, body: str) -> None:
        """Centrifugo: a publication through its server HTTP API (the app backend's
        side), which it fans out to the channel's subscribers."""
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.plan.api_url,
                timeout=30.0,
                trust_env=False,
                limits=httpx.Limits(max_connections=64),
                headers={"X-API-Key": self.plan.api_key},
            )
        try:
            r = await self._http.post(
                "/api/publish", json={"channel": channel, "data": {"b": body}}
            )
        except Exception as exc:
            self.errors[f"publish:{type(exc).__name__}"] += 1
            return
        if r.status_code == 200 and "error" not in r.json():
            self.counts["acked"] += 1
            self.ack_latency.record_ns(time.monotonic_ns() - int(body.split("|", 1)[0]))
        else:
            self.errors[f"publish:{r.status_code}:{r.text[:60]}"] += 1

    # --- reconnect storm ---------------------------------------------------------

    def _watch(self, peer: Peer) -> None:
        assert peer.conn is not None
        conn = peer.conn
        self._spawn(self._come_back(peer, conn))

    async def _come_back(self, peer: Peer, conn: WsConn) -> None:
        """What our client library (tidings.client.ChatConnection) does after a drop:
        wait the ``after_ms`` the server said, ``/v1/discover`` (not when the reconnect
        said ``same_url``: the server restarts in place, come back to the same url),
        connect, ``hello`` with the cursor (after ``same_url``, up to SAME_URL_RETRIES
        failed attempts at that url, then discover). A failed attempt after a ``reconnect``
        (refused while the next process starts) retries with the restart backoff — full
        jitter, 0.5 s doubling to a 2 s cap — for RESTART_WINDOW_S, then with the usual
        one (0.5 s doubling to 30 s) and discover again; a server that says
        ``reconnect{after_ms}`` again (admission control), or a discover answered 503
        with ``after_ms``, is waited out as told."""
        await conn.closed
        if not self.storming:
            return
        peer.live = False
        peer.drops += 1
        if not peer.down_at:
            peer.down_at = time.monotonic_ns()
        loop = asyncio.get_running_loop()
        restart, lost = restart_backoff(), Backoff()
        restart_until: float | None = None
        same_url = False
        delay = 0.0
        if peer.reconnect_ms is not None:
            delay = peer.reconnect_ms / 1000
            restart_until = loop.time() + delay + RESTART_WINDOW_S
            same_url = peer.same_url
        peer.reconnect_ms, peer.same_url = None, False
        attempts = same_url_failed = 0
        while self.storming:
            await asyncio.sleep(delay)
            attempts += 1
            tried_at = time.monotonic_ns()
            try:
                url = peer.url if same_url else await self._discover(peer)
                discovered_at = time.monotonic_ns()
                await self.open(peer, url)
                self.counts["reconnects"] += 1
                if not peer.phases:  # the attempt that brought it back first
                    peer.phases = (tried_at, discovered_at, attempts)
                return
            except Exception as exc:
                self.errors[f"reconnect:{type(exc).__name__}"] += 1
                if peer.reconnect_ms is not None:  # the server said when
                    delay, peer.reconnect_ms = peer.reconnect_ms / 1000, None
                    restart_until = loop.time() + delay + RESTART_WINDOW_S
                    same_url, peer.same_url = peer.same_url, False
                    same_url_failed = 0
                    restart.reset()
                elif restart_until is not None and loop.time() < restart_until:
                    delay = restart.next_delay()
                    if same_url:  # as the client: a few tries at the same url, then discover
                        same_url_failed += 1
                        same_url = same_url_failed <= SAME_URL_RETRIES
                else:
                    delay = lost.next_delay()
                    same_url = False

    async def _discover(self, peer: Peer) -> str | None:
        """``GET /v1/discover`` on a connection of its own; a 503 with ``after_ms``
        (admission control) is remembered as the server's word on when to come back."""
        if not self.plan.api_url or self.plan.dialect != "tidings":
            return None
        host = self.plan.local_hosts[peer.index % len(self.plan.local_hosts)]
        status, _, body = await http_get(
            self.plan.api_url,
            "/v1/discover",
            {"Authorization": f"Bearer {peer.account['token']}"},
            local_host=host,
        )
        if status != 200:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                peer.reconnect_ms = int(json.loads(body)["after_ms"])
            raise DiscoverNotOk(f"discover answered {status}")
        url: str = json.loads(body)["chat_url"]
        return url

    def start_storm(self, drained_url: str) -> None:
        """Mark the clients on ``drained_url`` as drained and watch every connection for drops."""
        self.storming = True
        for peer in self.peers:
            peer.drained = peer.live and peer.url == drained_url
            if peer.conn is not None:
                self._watch(peer)

    def storm_count(self) -> dict[str, Any]:
        """The live connections (in all and by URL), the drained ones, those back, and the
        reconnects so far."""
        by_url: Counter[str] = Counter(p.url for p in self.peers if p.live)
        return {
            "live": sum(by_url.values()),
            "live_by_url": dict(by_url),
            "drained": sum(p.drained for p in self.peers),
            "drained_back": sum(1 for p in self.peers if p.drained and p.back_at),
            "reconnects": self.counts["reconnects"],
        }

    def storm_results(self) -> dict[str, Any]:
        """Per drained client (``drained``) its first drop and its first ready after it
        (``back_at``, 0 = not back); the others only if they dropped (``bystanders``):
        a client of a server that was not drained should not notice."""
        self.storming = False
        out = self.results()
        out.update(self.storm_count())
        out["drained_times"] = [(p.down_at, p.back_at, p.drops) for p in self.peers if p.drained]
        out["drained_phases"] = [
            (*p.phases, p.back_at) for p in self.peers if p.drained and p.phases and p.back_at
        ]
        out["bystander_times"] = [
            (p.down_at, p.back_at, p.drops) for p in self.peers if not p.drained and p.drops
        ]
        out["refs"] = {
            "sent": self.sent_refs,
            "acked": self.acked_refs,
            "received": self.received_refs,
        }
        return out

    def send_in_background(self, rate: float, start_ns: int, duration_s: float) -> None:
        """Probe messages during a storm, each tracked by sender and client_msg_id."""
        self.track = True
        if self.plan.senders and rate > 0:
            self.sending = asyncio.ensure_future(
                run_open_loop(rate, start_ns, duration_s, self.fire, self.send_lag)
            )

    async def stop_sending(self) -> None:
        """Stop the background probe messages of :meth:`send_in_background`."""
        task, self.sending = self.sending, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop sending and abort every connection."""
        self.storming = False
        await self.stop_sending()
        for peer in self.peers:
            if peer.conn is not None:
                peer.conn.abort()
        if self._http is not None:
            await self._http.aclose()


async def _serve(plan: Plan, pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(plan)
    # Heartbeats run from the first connection on: a socket that waits in silence for
    # the others to connect would be closed by the presence window (4009).
    beats = asyncio.ensure_future(worker.heartbeats())
    pipe.send(await worker.connect_all())
    try:
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command[0] == "run":
                pipe.send(await worker.run(*command[1:]))
            elif command[0] == "idle":
                await asyncio.sleep(command[1])
                pipe.send(worker.results())
            elif command[0] == "storm":
                worker.start_storm(command[1])
                pipe.send({"ok": True})
            elif command[0] == "send":
                worker.send_in_background(*command[1:])
                pipe.send({"ok": True})
            elif command[0] == "stop_sending":
                await worker.stop_sending()
                pipe.send({"sent": worker.counts["sent"]})
            elif command[0] == "progress":
                pipe.send({"received": worker.counts["received"], "acked": worker.counts["acked"]})
            elif command[0] == "results":
                pipe.send(worker.results())
            elif command[0] == "reset":
                worker.reset()
                pipe.send({"ok": True})
            elif command[0] == "count":
                pipe.send(worker.storm_count())
            elif command[0] == "collect":
                pipe.send(worker.storm_results())
            elif command[0] == "stop":
                break
    finally:
        beats.cancel()
        await worker.close()
    pipe.send({"stopped": True})


def worker_main(plan: Plan, pipe: Pipe) -> None:
    """Entry point of a generator process."""
    raise_nofile()
    try:
        asyncio.run(_serve(plan, pipe))
    except Exception as exc:  # tell the orchestrator rather than hang it
        with contextlib.suppress(Exception):
            pipe.send({"error": repr(exc)})
        raise
