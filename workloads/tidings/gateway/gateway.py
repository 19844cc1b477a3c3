"""The gateway: the registry of connections, frame dispatch, sweeps and drain.

A connection hands it each data frame (:meth:`Gateway.handle_raw_frame`); it asks the
connection's :class:`~tidings.gateway.session.Session` what the frame may do, asks the
:class:`~tidings.chat.service.ChatService` to do it (never the storage behind it) and
answers through the connection. It implements the chat logic's
:class:`~tidings.chat.ports.Delivery` port.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from tidings import metrics
from tidings.auth import Tokens
from tidings.chat.message_log import SenderMoved
from tidings.chat.ports import Ownership
from tidings.chat.service import ChatService
from tidings.core import errors
from tidings.core.errors import ProtocolError
from tidings.core.frames import (
    ClientFrame,
    Heartbeat,
    Hello,
    Receipt,
    Send,
    Sync,
    Typing,
    ack_frame,
    encode,
    heartbeat_ack_frame,
    parse_client_frame,
    reconnect_frame,
    redirect_frame,
    synced_frame,
    welcome_frame,
)
from tidings.core.model import InboxEntry, OnlineLease
from tidings.core.presence import PresenceChange, PresenceTracker
from tidings.core.ratelimit import TokenBucket
from tidings.gateway.admission import Admission
from tidings.gateway.connection import Connection, GatewayPort
from tidings.gateway.framing import OP_TEXT, encode_frame
from tidings.gateway.session import CLOSING, HELLO, LIVE, SYNCING
from tidings.settings import Settings

log = logging.getLogger(__name__)

# Bound once: labels() on every frame costs more than the count itself.
_FRAMES_IN = {
    kind: metrics.FRAMES_IN.labels(kind.__name__.lower())
    for kind in (Hello, Send, Receipt, Sync, Heartbeat, Typing)
}
# A heartbeat exactly as our client libraries and most others encode it (compact JSON);
# any other spelling takes the general path.
HEARTBEAT = b'{"type":"heartbeat"}'
SYNC_PAGE = 500
MAX_SENDS_IN_FLIGHT = 256  # per connection; more are answered rate_limited
CLOSE_GRACE_MS = 5_000
SESSION_CHECKS_AT_ONCE = 64  # device reads at once when every session is checked again
# reconnect{after_ms} for a hello whose user's partition has no live owner right now.
RECONNECT_UNOWNED_MS = (200, 1000)


class Gateway:
    """This process's WebSocket side: the connections, by user and by device, and what
    their frames do. ``clock_ms`` is wall-clock milliseconds."""

    def __init__(
        self,
        settings: Settings,
        service: ChatService,
        tokens: Tokens,
        ownership: Ownership,
        clock_ms: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.service = service
        self.tokens = tokens
        self.ownership = ownership
        self.clock_ms = clock_ms
        # The sweep runs every interval, so act one interval early to stay within the window.
        self.offline_after_ms = int(
            max(settings.presence_offline_after_s - settings.sweep_interval_s, 0) * 1000
        )
        self.presence = PresenceTracker(self.offline_after_ms)
        self.connections: set[Connection] = set()
        self.by_user: dict[int, list[Connection]] = {}
        self.by_device: dict[int, list[Connection]] = {}
        # When devices were last seen (connected or disconnected), written now and then.
        self._seen: dict[int, int] = {}
        self._seen_flushed_ms = 0
        # One send bucket per user, shared by all its sockets (while it has one here).
        self.user_buckets: dict[int, TokenBucket] = {}
        self.draining = False
        self.admission = Admission(
            settings.admission_max_lag_ms, settings.admission_max_hellos, clock_ms
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty: list[Connection] = []
        self._heartbeats = 0
        self._ack_ms = -1
        self._ack_frame = b""
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- one write per connection per loop tick ------------------------------------

    def want_flush(self, conn: Connection) -> None:
        """``conn`` has frames to write: write them (with whatever else it gets in this
        tick) once, at the end of the tick (the connection asks once per tick)."""
        if not self._dirty:
            self._running_loop().call_soon(self._flush_dirty)
        self._dirty.append(conn)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()

    # --- bookkeeping ---------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task the gateway keeps (cancelled by :meth:`close`; a
        failure is logged)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("gateway task failed", exc_info=task.exception())

    def opened(self, conn: Connection) -> None:
        """A socket opened: count it (it serves nobody until its hello)."""
        self.connections.add(conn)
        metrics.CONNECTIONS.inc()

    def _hello_done(self, conn: Connection) -> None:
        if conn.session.hello_finished():
            self.admission.hellos_in_flight -= 1

    def closed(self, conn: Connection, last_heard: int | None = None) -> None:
        """Forget ``conn`` (its socket is gone or it is no longer served here); the user
        goes offline when it was their last socket, as of ``last_heard`` (default now)."""
        self._hello_done(conn)  # a hello still queued when the socket went away
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        metrics.CONNECTIONS.dec()
        session = conn.session
        devices = self.by_user.get(session.user_id)
        if devices is not None and conn in devices:
            devices.remove(conn)
            same_device = self.by_device.get(session.device_id)
            if same_device is not None and conn in same_device:
                same_device.remove(conn)
                if not same_device:
                    del self.by_device[session.device_id]
            self._seen[session.device_id] = self.clock_ms()
            metrics.AUTHENTICATED.dec()
            if not devices:
                del self.by_user[session.user_id]
                self.user_buckets.pop(session.user_id, None)
            heard = last_heard if last_heard is not None else self.clock_ms()
            self.presence.disconnect(session.user_id, heard)

    @property
    def connection_count(self) -> int:
        """How many sockets are open here, hello or not."""
        return len(self.connections)

    # --- the Delivery port ---------------------------------------------------------

    def deliver_entries(self, user_id: int, entries: Sequence[InboxEntry]) -> None:
        """Live inbox entries for ``user_id``: to each of its sockets here."""
        now = self.clock_ms()
        for conn in self.by_user.get(user_id, ()):
            conn.deliver(entries)
        if user_id in self.by_user:
            for entry in entries:
                metrics.SEND_TO_DELIVER.observe(max(0, now - entry.message.ts) / 1000)

    def deliver_frame(self, user_id: int, frame: dict[str, Any]) -> None:
        """An ephemeral frame (typing, receipt, presence) to ``user_id``'s live sockets."""
        conns = self.by_user.get(user_id)
        if not conns:
            return
        text = encode(frame)
        for conn in conns:
            if conn.session.state is LIVE:
                conn.send_text(text)

    def connected_devices(self, user_id: int) -> set[int]:
        """The devices of ``user_id`` with a socket here."""
        return {conn.session.device_id for conn in self.by_user.get(user_id, ())}

    # --- frames --------------------------------------------------------------------

    def _heartbeat_ack(self) -> bytes:
        """The framed ``heartbeat_ack`` for now: built once per millisecond and shared by
        every heartbeat answered in it (they come in bursts, one per client every
        ``heartbeat_s``)."""
        now = self.clock_ms()
        if now != self._ack_ms:
            self._ack_ms = now
            self._ack_frame = encode_frame(OP_TEXT, encode(heartbeat_ack_frame(now)))
        return self._ack_frame

    def count_heartbeats(self) -> None:
        """Move the heartbeats counted since the last call to the metric (a counter
        increment per heartbeat would cost more than the rest of its handling)."""
        if self._heartbeats:
            _FRAMES_IN[Heartbeat].inc(self._heartbeats)
            self._heartbeats = 0

    def handle_raw_frame(self, conn: Connection, data: bytes, text: bool = True) -> None:
        """One data frame from ``conn`` (``text``: it came as a text frame): answered at
        once (heartbeats, errors, the hello's admission) or queued for
        :meth:`handle_frame`, one frame at a time per connection."""
        session = conn.session
        state = session.state
        if data == HEARTBEAT and state is LIVE:
            # The frame an idle connection sends every few seconds, as every client
            # library writes it: answered without parsing or building anything.
            self._heartbeats += 1
            conn.write_framed(self._heartbeat_ack())
            return
        try:
            frame = parse_client_frame(data)
        except ProtocolError as exc:
            metrics.FRAMES_IN.labels("invalid").inc()
            if text and not _is_utf8(data):
                # RFC 6455 5.6/8.1: a text frame must be UTF-8; the endpoint closes 1007.
                conn.close(errors.CLOSE_INVALID_PAYLOAD, "text frame is not valid UTF-8")
                return
            conn.send_error(exc.code, exc.message, exc.ref, exc.details)
            return
        _FRAMES_IN[type(frame)].inc()
        if state is HELLO:
            if not isinstance(frame, Hello):
                conn.send_error(errors.UNAUTHORIZED, "the first frame must be hello")
                conn.close(errors.CLOSE_UNAUTHORIZED, "unauthorized")
                return
            if self.admission.saturated and not self.draining:
                conn.send_frame(reconnect_frame(self.admission.turn_away()))
                conn.close(errors.CLOSE_TRY_AGAIN_LATER, "server busy")
                return
            session.hello_received()  # no second hello while this one is checked
            self.admission.hellos_in_flight += 1
            self._enqueue(conn, frame)
            return
        if isinstance(frame, Heartbeat):
            conn.send_frame(heartbeat_ack_frame(self.clock_ms()))
            return
        if isinstance(frame, Hello):
            conn.send_error(errors.INVALID_FRAME, "already said hello")
            return
        # A frame right behind the hello (a client need not wait for welcome) waits in the
        # connection's queue until the hello is done: no bucket yet, the queue's bound.
        bucket = session.bucket
        allowed = bucket is None or bucket.take(self.clock_ms() / 1000)
        if not allowed or not self._enqueue(conn, frame):
            ref = frame.client_msg_id if isinstance(frame, Send) else None
            conn.send_error(errors.RATE_LIMITED, "too many frames; slow down", ref)

    def _enqueue(self, conn: Connection, frame: ClientFrame) -> bool:
        """Queue ``frame`` on its session; a task handles the queue while it is not empty
        (none while the connection is idle). False when the queue is full."""
        session = conn.session
        if not session.enqueue(frame):
            return False
        if session.start_handling():
            self.spawn(self._handle_queue(conn))
        return True

    async def _handle_queue(self, conn: Connection) -> None:
        session = conn.session
        try:
            while (frame := session.next_frame()) is not None:
                await self.handle_frame(conn, frame)
        finally:
            session.handling_stopped()

    # --- sends: checked in order, stored concurrently, answered in order ------------

    async def _begin_send(self, conn: Connection, frame: Send) -> None:
        """Check ``frame`` and start storing it (the connection's queue runs this for one
        send after another, which fixes their order). Its answer goes out once durable,
        after the answers to the sends before it; no task waits for it."""
        session = conn.session
        if session.answers is not None and len(session.answers) >= MAX_SENDS_IN_FLIGHT:
            raise ProtocolError(
                errors.RATE_LIMITED, "too many sends in flight", ref=frame.client_msg_id
            )
        try:
            if frame.channel_id is not None and self.settings.send_cost_per_recipient:
                await self._charge_fanout(conn, frame)
            durable = await self.service.begin_send(session.user_id, session.device_id, frame)
        except ProtocolError as exc:
            if not session.answers:
                raise  # nothing before it: answered at once
            durable = self._running_loop().create_future()
            durable.set_exception(exc)
        # Looked up after the await: the answers before it may have gone out meanwhile.
        answers = session.answers
        if answers is None:
            answers = session.answers = deque()
        answers.append((frame.client_msg_id, durable))
        durable.add_done_callback(lambda _: self._answer_sends(conn))

    async def _charge_fanout(self, conn: Connection, frame: Send) -> None:
        """A group message also costs its fan-out from the sender's bucket: one sender
        cannot fill the message path (and everyone's deliveries behind it) by writing to
        big groups; ``rate_limited`` when the bucket cannot pay."""
        session = conn.session
        recipients = await self.service.recipients(session.user_id, frame)
        extra = max(0, recipients - 2) * self.settings.send_cost_per_recipient
        assert session.bucket is not None
        if extra and not session.bucket.take(self.clock_ms() / 1000, extra):
            raise ProtocolError(
                errors.RATE_LIMITED,
                "too many messages to large groups; slow down",
                ref=frame.client_msg_id,
            )

    def _answer_sends(self, conn: Connection) -> None:
        """Answer the connection's sends that are done, in the order they came."""
        session = conn.session
        answers = session.answers
        while answers and answers[0][1].done():
            ref, durable = answers.popleft()
            exc = durable.exception()
            if exc is None:
                message = durable.result()
                conn.send_frame(ack_frame(ref, message.message_id, message.channel_id, message.ts))
            elif isinstance(exc, SenderMoved):
                # The sender's partition moved while this was stored: not acked, not
                # published. Send the device to its new server, where it resends what is
                # unacked (found there by its client_msg_id) — no error for a send the
                # client need not give up on, and nothing after it answered here.
                metrics.SENDS_MOVED.inc()
                self._send_away(conn)
                return
            elif isinstance(exc, ProtocolError):
                conn.send_error(
                    exc.code, exc.message, exc.ref if exc.ref is not None else ref, exc.details
                )
            else:
                log.error("send failed", exc_info=exc, extra={"user_id": session.user_id})
                conn.send_error(errors.UNAVAILABLE, "the server could not do this now; retry", ref)
        if answers is not None and not answers:
            session.answers = None  # idle connections keep no deque

    async def handle_frame(self, conn: Connection, frame: ClientFrame) -> None:
        """Do what a parsed frame asks (its turn in the connection's queue has come);
        a refusal is an ``error`` frame, closing the socket when the error says so."""
        user_id = conn.session.user_id
        ref = frame.client_msg_id if isinstance(frame, Send) else None
        try:
            if isinstance(frame, Hello):
                started = time.perf_counter()
                try:
                    await self._hello(conn, frame)
                finally:
                    self._hello_done(conn)
                    metrics.HELLO_SECONDS.observe(time.perf_counter() - started)
            elif isinstance(frame, Send):
                await self._begin_send(conn, frame)
            elif isinstance(frame, Receipt):
                await self.service.receipt(user_id, frame)
            elif isinstance(frame, Typing):
                await self.service.typing(user_id, frame.channel_id)
            elif isinstance(frame, Sync):
                await self._sync(conn, frame.cursor, frame.limit)
        except ProtocolError as exc:
            conn.send_error(
                exc.code, exc.message, exc.ref if exc.ref is not None else ref, exc.details
            )
            if exc.close_code is not None:
                conn.close(exc.close_code, exc.code)
        except Exception:
            log.exception("frame handling failed", extra={"user_id": conn.session.user_id})
            conn.send_error(errors.UNAVAILABLE, "the server could not do this now; retry", ref)
            if isinstance(frame, Hello):
                conn.close(1011, "internal error")

    async def _hello(self, conn: Connection, hello: Hello) -> None:
        identity = self.tokens.verify(hello.token)
        user_id, device_id = identity.user_id, identity.device_id
        await self.service.authenticate(user_id, device_id, identity.token_version)
        session = conn.session
        if session.state is not SYNCING:  # closed meanwhile
            return
        if self.draining or not self.ownership.owns(user_id):
            self._send_elsewhere(conn, user_id)
            return
        now = self.clock_ms()
        self._supersede_old_sockets(user_id, device_id)
        bucket = self.user_buckets.get(user_id)
        if bucket is None:
            bucket = self.user_buckets[user_id] = TokenBucket(
                self.settings.rate_limit_per_s, self.settings.rate_limit_burst, now / 1000
            )
        session.authenticated(user_id, device_id, identity.token_version, bucket)
        self.by_user.setdefault(user_id, []).append(conn)
        self.by_device.setdefault(device_id, []).append(conn)
        self._seen[device_id] = now
        metrics.AUTHENTICATED.inc()
        change = self.presence.connect(user_id, now)
        if change is not None:
            self._publish_presence([change])

        head = await self.service.open_inbox(user_id)
        conn.send_frame(
            welcome_frame(
                user_id, device_id, self.settings.server_id, self.settings.heartbeat_s, head
            )
        )
        # A cursor beyond the head (a device that kept a cursor of another account or
        # of a wiped server) is taken as the head: synced says so, live traffic flows.
        cursor = min(hello.cursor, head)
        while session.state is SYNCING and cursor < head:
            page = await self.service.sync(user_id, cursor, SYNC_PAGE)
            for entry in page.entries:
                conn.send_frame(entry.to_wire_for(device_id))
            if page.cursor == cursor:
                break
            cursor = page.cursor
            if not page.more:
                break
        if session.state is not SYNCING:
            return
        conn.send_frame(synced_frame(cursor, False))
        conn.send_entries(session.go_live(cursor))

    # --- sessions that end ---------------------------------------------------------

    def device_changed(self, device_id: int) -> None:
        """A device changed, here or in another process (logged out, unlinked, logged in
        again): close its sockets here whose session has ended (4001)."""
        if device_id in self.by_device:
            self.spawn(self._end_sessions(device_id))

    def devices_unknown(self) -> None:
        """The directory cache may have missed changes: check every device here again."""
        if self.by_device:
            self.spawn(self._check_all_sessions())

    async def _check_all_sessions(self) -> None:
        devices = list(self.by_device)
        for start in range(0, len(devices), SESSION_CHECKS_AT_ONCE):
            batch = devices[start : start + SESSION_CHECKS_AT_ONCE]
            await asyncio.gather(*(self._end_sessions(d) for d in batch))

    async def _end_sessions(self, device_id: int) -> None:
        live = await self.service.device_session(device_id)
        for conn in list(self.by_device.get(device_id, ())):
            session = conn.session
            if live != (session.user_id, session.token_version):
                conn.send_error(errors.UNAUTHORIZED, "this session has ended")
                conn.close(errors.CLOSE_UNAUTHORIZED, "session ended")
                self.closed(conn)

    async def flush_last_seen(self) -> None:
        """Write when devices were last seen (batched: once a minute, not per hello)."""
        seen, self._seen = self._seen, {}
        if seen:
            await self.service.devices_seen(seen)

    async def _sync(self, conn: Connection, cursor: int, limit: int) -> None:
        session = conn.session
        page = await self.service.sync(session.user_id, cursor, limit)
        for entry in page.entries:
            conn.send_frame(entry.to_wire_for(session.device_id))
        conn.send_frame(synced_frame(page.cursor, page.more))

    # --- presence and timers -------------------------------------------------------

    def _publish_presence(self, changes: list[PresenceChange]) -> None:
        for change in changes:
            metrics.PRESENCE_CHANGES.labels(change.status).inc()
        self.spawn(self.service.presence_changed(changes))

    def sweep(self) -> None:
        """Hello timeouts, silent devices and presence windows; runs every sweep interval."""
        self.count_heartbeats()
        now = self.clock_ms()
        hello_deadline = now - int(self.settings.hello_timeout_s * 1000)
        silent_deadline = now - self.offline_after_ms
        grace_deadline = now - CLOSE_GRACE_MS
        for conn in list(self.connections):
            session = conn.session
            if session.hello_overdue(hello_deadline):
                conn.send_error(errors.HELLO_TIMEOUT, "no hello within the time allowed")
                conn.close(errors.CLOSE_HELLO_TIMEOUT, "hello timeout")
            elif session.silent(silent_deadline):
                conn.close(errors.CLOSE_SILENT, "no frame within the presence window")
                self.closed(conn, last_heard=session.last_heard)
            elif session.closing_since(grace_deadline):
                conn.abort()
        changes = self.presence.sweep(now)
        if changes:
            self._publish_presence(changes)

    async def run_sweeper(self) -> None:
        """Every sweep interval: :meth:`sweep`, then now and then write when devices were
        last seen and refresh the online users' presence leases. Runs until cancelled."""
        self.admission.start()
        lease_every_ms = self.settings.presence_lease_s * 1000 // 3
        next_lease = self.clock_ms() + lease_every_ms
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                self.sweep()
                every_ms = self.settings.device_last_seen_every_s * 1000
                if self.clock_ms() >= self._seen_flushed_ms + every_ms:
                    self._seen_flushed_ms = self.clock_ms()
                    await self.flush_last_seen()
                if self.clock_ms() >= next_lease:
                    next_lease = self.clock_ms() + lease_every_ms
                    await self.service.refresh_presence(
                        [
                            OnlineLease(user_id, self.ownership.partition_of(user_id), seen)
                            for user_id, seen in self.presence.online_users().items()
                        ]
                    )
            except Exception:
                log.exception("sweep failed")

    # --- handing users over --------------------------------------------------------

    def _reconnect_delay_ms(self, window_ms: tuple[int, int] | None = None) -> int:
        """``after_ms`` for a drained client: drawn from ``window_ms`` when given (a
        restart in place: when the next process is likely up), else spread over as long
        as the peers need to admit this server's clients (``Settings.drain_spread_s``)."""
        if window_ms is not None:
            return random.randint(*window_ms)
        spread_s = self.settings.drain_spread_s(len(self.connections))
        return random.randint(0, int(spread_s * 1000))

    def _supersede_old_sockets(self, user_id: int, device_id: int) -> None:
        """A device keeps at most ``max_sockets_per_device`` sockets: a new ``hello``
        closes its oldest ones (4011) — a phone that changed networks left them behind."""
        same = [c for c in self.by_user.get(user_id, ()) if c.session.device_id == device_id]
        for old in sorted(same, key=lambda c: c.session.opened_at)[
            : max(0, len(same) - self.settings.max_sockets_per_device + 1)
        ]:
            old.close(errors.CLOSE_SUPERSEDED, "a newer connection of this device")
            self.closed(old)

    def _send_elsewhere(self, conn: Connection, user_id: int) -> None:
        """``redirect`` to the owner when it is known and not us, else ``reconnect``.

        No live owner is known while the user's partition moves: its server died and the
        group has not handed the partition on yet (a Kafka session timeout at most), or
        a rebalance is under way. The client is told to come back after a short,
        jittered delay (RECONNECT_UNOWNED_MS): short, because the new owner is usually
        seconds away and the wait adds to the failover; jittered, so a dead server's
        clients do not come back in step.
        """
        url = None if self.draining else self.ownership.owner_url(user_id)
        if url is not None and url != self.settings.public_chat_url:
            conn.send_frame(redirect_frame(url))
            conn.close(errors.CLOSE_REDIRECT, "redirect")
        else:
            conn.send_frame(reconnect_frame(random.randint(*RECONNECT_UNOWNED_MS)))
            conn.close(errors.CLOSE_DRAINED, "not served here now")

    def connections_by_partition(self) -> dict[int, int]:
        """Sockets of served users per inbox partition (what this server would least like
        to give up in a rebalance). One pass over the served users, for a group join."""
        counts: dict[int, int] = {}
        partition_of = self.ownership.partition_of
        for user_id, conns in self.by_user.items():
            partition = partition_of(user_id)
            counts[partition] = counts.get(partition, 0) + len(conns)
        return counts

    def _send_away(self, conn: Connection) -> None:
        """Send a served device to its user's server now and stop serving it here."""
        self._send_elsewhere(conn, conn.session.user_id)
        self.closed(conn)

    def release_unowned(self) -> int:
        """Send away the users this server no longer owns (after a rebalance)."""
        released = 0
        for user_id in [u for u in self.by_user if not self.ownership.owns(u)]:
            for conn in list(self.by_user.get(user_id, ())):
                self._send_away(conn)
                released += 1
            self.presence.forget(user_id)
        if released:
            log.info("released connections of moved partitions", extra={"count": released})
        return released

    async def announce_orphans(self, partitions: set[int]) -> None:
        """Users stored online in partitions this server just gained, and not connected
        here, lost their server without an offline word: say it for them."""
        now = self.clock_ms()
        changes = []
        for partition in partitions:
            stored = await self.service.online_in_partition(partition)
            changes += [
                PresenceChange(user_id, "offline", seen if seen is not None else now)
                for user_id, seen in stored.items()
                if self.ownership.owns(user_id) and not self.presence.is_online(user_id)
            ]
        if changes:
            log.info("announcing users of a lost server offline", extra={"count": len(changes)})
            self._publish_presence(changes)

    def drain_connection(
        self,
        conn: Connection,
        reconnect_window_ms: tuple[int, int] | None = None,
        same_url: bool = False,
    ) -> None:
        """``reconnect{after_ms}`` (see :meth:`_reconnect_delay_ms`; with ``same_url``
        when the client is to come back to this URL without asking ``/v1/discover``),
        then close 1012; a socket still waiting for its ``hello`` is told too, so it does
        not retry at once."""
        self.draining = True
        if conn.session.state is not CLOSING:
            frame = reconnect_frame(self._reconnect_delay_ms(reconnect_window_ms))
            if same_url:
                frame["same_url"] = True
            conn.send_frame(frame)
        conn.close(errors.CLOSE_DRAINED, "server draining")

    async def drain(
        self,
        window_s: float,
        reconnect_window_ms: tuple[int, int] | None = None,
        same_url: bool = False,
    ) -> int:
        """Tell every client to reconnect elsewhere, paced evenly over ``window_s`` (0:
        all at once, the frames written before this returns). ``reconnect_window_ms``:
        each ``after_ms`` is drawn from it, else from the spread the peers need for this
        many clients (``Settings.drain_spread_s``, fixed at the start); ``same_url``: a
        restart in place, come back here (see :meth:`drain_connection`).
        Returns how many clients were told."""
        self.draining = True
        conns = list(self.connections)
        if reconnect_window_ms is None:
            reconnect_window_ms = (0, int(self.settings.drain_spread_s(len(conns)) * 1000))
        batches = max(1, int(window_s / 0.05))
        size = max(1, -(-len(conns) // batches))
        told = 0
        for start in range(0, len(conns), size):
            for conn in conns[start : start + size]:
                if conn in self.connections:
                    self.drain_connection(conn, reconnect_window_ms, same_url)
                    told += 1
            if start + size < len(conns):
                await asyncio.sleep(window_s / batches)
        return told

    async def close(self) -> None:
        """Stop: cancel the gateway's tasks, write when the connected devices were last
        seen. The sockets themselves are the server's to close."""
        self.admission.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self.connections:
            if conn.session.device_id:
                self._seen[conn.session.device_id] = self.clock_ms()
        try:
            await self.flush_last_seen()
        except Exception:
            log.warning("could not record when devices were last seen", exc_info=True)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# What a connection asks of its gateway is a Protocol (connection.py does not import this
# module): mypy checks here that the Gateway offers it.
_PORT: type[GatewayPort] = Gateway
