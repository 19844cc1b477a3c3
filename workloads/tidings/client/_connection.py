"""``ChatConnection``: one device's WebSocket to the chat servers, kept alive.

The decisions live in plain classes (:class:`~._cursor.Inbox` for ordering, dedupe and
sync; :class:`~._supervisor.Supervisor` for where and when to reconnect, with
:class:`~._backoff.Backoff` for the delays); this module is the asyncio
adapter around ``websockets``: it connects, says ``hello``, routes frames, and reconnects.

One supervisor task runs attempts in a loop. An attempt ends in one of four ways:

* connection lost (network error, close, no ``welcome`` in time, silence): wait a backoff
  delay (full jitter, capped), ask ``discover`` for the current url, try again;
* ``redirect{chat_url}``: connect there at once (with backoff if redirects repeat);
* ``reconnect{after_ms}``: keep using the connection until the server closes it or the
  delay ends, then ask ``discover`` and connect; attempts that fail after that (a
  restarting server refuses connections for a moment) retry with the restart backoff
  (full jitter, capped at 2 s) for ``restart_window`` seconds, then with the usual one.
  With ``same_url`` (the server restarts in place) the first attempt goes to the same url
  without ``discover``, and so do up to ``same_url_retries`` (5) failed attempts after it,
  until the new process listens; then ``discover`` again;
* the session ended (close 4001, ``error{unauthorized}``, 401 from discover: logged out,
  device unlinked, token superseded or refused): :class:`TidingsSessionEndedError`;
  superseded by a newer socket of the same device (close 4011):
  :class:`TidingsSupersededError`; a bad url, or ``max_attempts`` failed attempts in a
  row: :class:`TidingsConnectionError`. Each ends the connection for good (no reconnect)
  and is raised from :meth:`ChatConnection.events`, :meth:`~ChatConnection.send`,
  :meth:`~ChatConnection.start` and :meth:`~ChatConnection.wait_closed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from ssl import SSLContext
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ._backoff import RESTART_WINDOW_S, Backoff, restart_backoff
from ._cursor import Inbox, SyncPlan
from ._errors import (
    TidingsApiError,
    TidingsChatError,
    TidingsConnectionError,
    TidingsError,
    TidingsProtocolError,
    TidingsSessionEndedError,
    TidingsSupersededError,
)
from ._frames import (
    Ack,
    ClientFrame,
    ErrorFrame,
    Event,
    HeartbeatAck,
    Msg,
    Presence,
    Receipt,
    Reconnect,
    Redirect,
    ServerFrame,
    Synced,
    Typing,
    Welcome,
    delete_frame,
    edit_frame,
    encode,
    heartbeat_frame,
    hello_frame,
    parse_server_frame,
    reaction_frame,
    receipt_frame,
    send_frame,
    sync_frame,
    typing_frame,
)
from ._models import Attachment
from ._supervisor import SAME_URL_RETRIES, Ended, GiveUp, Supervisor

__all__ = ["ChatConnection", "DiscoverFn", "ws_url"]

logger = logging.getLogger(__name__)

DiscoverFn = Callable[[], Awaitable[str]]
"""Returns the ``chat_url`` this user's devices should connect to now (``/v1/discover``)."""

CLOSE_UNAUTHORIZED = 4001
CLOSE_SUPERSEDED = 4011  # a newer socket of the same device took over
_SILENCE_HEARTBEATS = 3  # a server silent this many heartbeat periods is gone
_MIN_HEARTBEAT_S = 0.05
_MAX_DISCOVER_WAITS = 5  # discover answers "come back in after_ms" this often, then we try


def ws_url(url: str) -> str:
    """``http(s)://`` to ``ws(s)://``; other urls unchanged."""
    if url.startswith("http://"):
        return "ws://" + url.removeprefix("http://")
    if url.startswith("https://"):
        return "wss://" + url.removeprefix("https://")
    return url


@dataclass(slots=True)
class _PendingSend:
    frame: ClientFrame
    future: asyncio.Future[Ack]


@dataclass(frozen=True, slots=True)
class _Advance:
    """A duplicate's ``seq``: moves :attr:`ChatConnection.cursor` without an event."""

    seq: int


class _End:
    """Queued once the connection is finished."""


_END = _End()


@dataclass(slots=True)
class _Attempt:
    """How one connection attempt went."""

    welcomed_at: float | None = None
    redirect_to: str | None = None
    reconnect_at: float | None = None
    same_url: bool = False  # the reconnect said: come back here, no discover
    error: BaseException | None = None


def _retrieve_exception(future: asyncio.Future[Welcome]) -> None:
    if not future.cancelled():
        future.exception()


class ChatConnection:
    """A device's chat connection that survives reconnects.

    Use as ``async with ChatConnection(url, token, cursor=saved) as conn:`` (or
    :meth:`start` / :meth:`aclose`), read :meth:`events`, and persist :attr:`cursor` after
    handling each :class:`~._frames.Msg` so the next run resumes after it.
    """

    def __init__(
        self,
        chat_url: str,
        token: str,
        *,
        cursor: int = 0,
        discover: DiscoverFn | None = None,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        welcome_timeout: float = 10.0,
        open_timeout: float = 10.0,
        discover_timeout: float = 10.0,
        stable_after: float = 10.0,
        restart: Backoff | None = None,
        restart_window: float = RESTART_WINDOW_S,
        same_url_retries: int = SAME_URL_RETRIES,
        ssl: SSLContext | None = None,
    ) -> None:
        """
        :param chat_url: where to connect first (from login or ``/v1/discover``).
        :param cursor: the last inbox ``seq`` this device has handled (``0`` for none).
        :param discover: asked for a fresh url after a lost connection or a ``reconnect``.
        :param max_attempts: failed attempts in a row (no ``welcome``) before giving up;
            ``None`` retries forever.
        :param stable_after: a connection that lasted this long resets the backoff.
        :param backoff: delays after a lost connection (default: full jitter, 0.5 s
            doubling to 30 s).
        :param restart: delays after failed attempts that follow a ``reconnect{after_ms}``
            (default :func:`~._backoff.restart_backoff`: full jitter, 0.5 s doubling to
            2 s), used for ``restart_window`` seconds after the server's delay, then
            ``backoff`` again.
        :param same_url_retries: after ``reconnect{same_url: true}``, failed attempts
            that try the same url again (with the restart backoff) before asking
            ``discover``.
        :param ssl: the TLS context for ``wss://`` urls, e.g.
            :func:`~._tls.client_ssl_context` with a private CA (default: the system's
            trust store); unused for ``ws://``.
        """
        self._chat_url = chat_url
        self._ssl = ssl
        self._token = token
        self._discover = discover
        self._backoff = backoff if backoff is not None else Backoff()
        self._restart = restart if restart is not None else restart_backoff()
        self._restart_window = restart_window
        self._same_url_retries = same_url_retries
        self._max_attempts = max_attempts
        self._welcome_timeout = welcome_timeout
        self._open_timeout = open_timeout
        self._discover_timeout = discover_timeout
        self._stable_after = stable_after

        self._inbox = Inbox(cursor)
        self._cursor = cursor
        self._queue: asyncio.Queue[Event | _Advance | _End] = asyncio.Queue()
        self._pending: dict[str, _PendingSend] = {}
        self._ws: ClientConnection | None = None  # set while welcomed
        self._welcome: Welcome | None = None
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[Welcome] | None = None
        self._closing = False
        self._failure: TidingsError | None = None
        self._finished = False

    # -- state -----------------------------------------------------------------------------

    @property
    def cursor(self) -> int:
        """The ``seq`` of the last message :meth:`events` handed out: persist this."""
        return self._cursor

    @property
    def connected(self) -> bool:
        """True between a ``welcome`` and the loss of that connection."""
        return self._ws is not None

    @property
    def welcome(self) -> Welcome | None:
        """The latest ``welcome`` (user, device, server, heartbeat)."""
        return self._welcome

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Welcome:
        """Start connecting; return the first ``welcome``, or raise why there is none."""
        if self._task is None:
            self._check_open()
            self._started = asyncio.get_running_loop().create_future()
            # Whoever awaits start() sees the error; don't also warn it was never retrieved.
            self._started.add_done_callback(_retrieve_exception)
            self._task = asyncio.create_task(self._run(), name="tidings-chat-connection")
        assert self._started is not None
        return await asyncio.shield(self._started)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (code 1000); pending sends fail; :meth:`events` ends."""
        self._closing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish(None)

    async def wait_closed(self) -> None:
        """Wait until the connection is finished; raise the error that ended it, if any."""
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._failure is not None:
            raise self._failure

    # -- the application's side --------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in order: ``Msg`` in ``seq`` order and each once, and ``Welcome``
        (each (re)connection), ``Synced``, ``Receipt``, ``Presence``, ``Typing``,
        ``ErrorFrame`` (errors not tied to a :meth:`send`). Ends after :meth:`aclose`; raises
        the error that ended the connection. Meant for one consumer."""
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                self._queue.put_nowait(item)  # for any other reader
                if self._failure is not None:
                    raise self._failure
                return
            if isinstance(item, _Advance):
                self._cursor = max(self._cursor, item.seq)
                continue
            if isinstance(item, Msg):
                self._cursor = max(self._cursor, item.seq)
            yield item

    async def send(
        self,
        body: str,
        *,
        channel_id: str | None = None,
        to: str | None = None,
        client_msg_id: str | None = None,
        envelopes: list[dict[str, Any]] | None = None,
        attachments: Sequence[Attachment | Mapping[str, Any]] | None = None,
        reply_to: str | None = None,
    ) -> Ack:
        """Send a message to a channel or (``to``) a user; return the server's ``ack``.
        ``attachments``: completed uploads (:meth:`ApiClient.upload`), at most 10; the
        ``body`` may then be empty. ``reply_to``: the id of a message of the same channel
        that this one answers (``unknown_message`` if there is none, or it is an event).

        Unacknowledged sends are sent again, with the same ``client_msg_id``, after every
        reconnect until acked (the server dedupes). Raises :class:`TidingsChatError` for an
        ``error`` about this message. Wrap in ``asyncio.timeout`` to bound the wait;
        cancelling stops the resending.
        """
        cmid = client_msg_id if client_msg_id is not None else uuid.uuid4().hex
        frame = send_frame(
            cmid,
            body,
            channel_id=channel_id,
            to=to,
            envelopes=envelopes,
            attachments=attachments,
            reply_to=reply_to,
        )
        return await self._submit(cmid, frame)

    async def edit(
        self, channel_id: str, message_id: str, body: str, *, client_msg_id: str | None = None
    ) -> Ack:
        """Replace the text of one's own message ``message_id`` with ``body``, for every
        member. Allowed to its sender for 15 minutes, not after a delete, not in an
        end-to-end channel. Acked and resent like :meth:`send` (the ack names the edit
        event's own message); refusals raise :class:`TidingsChatError`: ``forbidden``
        (not yours), ``too_late`` (the window passed, or it was deleted),
        ``unknown_message`` (no such message here, or an event), ``not_supported``
        (end-to-end), ``invalid_frame`` (an empty text)."""
        cmid = client_msg_id if client_msg_id is not None else uuid.uuid4().hex
        return await self._submit(cmid, edit_frame(cmid, channel_id, message_id, body))

    async def delete(
        self, channel_id: str, message_id: str, *, client_msg_id: str | None = None
    ) -> Ack:
        """Delete one's own message ``message_id`` for everyone: it becomes a tombstone
        (no text, attachments or reactions). Allowed to its sender for 48 hours. Acked,
        resent and refused like :meth:`edit`."""
        cmid = client_msg_id if client_msg_id is not None else uuid.uuid4().hex
        return await self._submit(cmid, delete_frame(cmid, channel_id, message_id))

    async def react(
        self, channel_id: str, message_id: str, emoji: str, *, client_msg_id: str | None = None
    ) -> Ack:
        """React to ``message_id`` with ``emoji`` (1-16 characters; one per user, a new one
        replaces the old); ``""`` takes the reaction back. Any member, any time, but not
        on a deleted message (``too_late``). Acked, resent and refused like :meth:`edit`."""
        cmid = client_msg_id if client_msg_id is not None else uuid.uuid4().hex
        return await self._submit(cmid, reaction_frame(cmid, channel_id, message_id, emoji))

    async def _submit(self, cmid: str, frame: ClientFrame) -> Ack:
        """Put a ``send`` in the outbox, send it now if connected, and wait for its answer.
        The supervisor sends every outbox frame again after each ``welcome``."""
        self._check_open()
        if cmid in self._pending:
            raise ValueError(f"a send with client_msg_id {cmid!r} is already in flight")
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[cmid] = _PendingSend(frame, future)
        try:
            ws = self._ws
            if ws is not None:
                with contextlib.suppress(ConnectionClosed):  # resent after the reconnect
                    await ws.send(encode(frame))
            return await future
        finally:
            self._pending.pop(cmid, None)

    async def receipt(self, channel_id: str, message_id: str, status: str = "delivered") -> None:
        """Tell the channel everything up to ``message_id`` was ``delivered`` or ``read``."""
        await self._send_now(receipt_frame(channel_id, message_id, status))

    async def typing(self, channel_id: str) -> None:
        await self._send_now(typing_frame(channel_id))

    async def sync(self, cursor: int | None = None, limit: int | None = None) -> None:
        """Ask for the messages after ``cursor`` (default: :attr:`cursor`); they arrive
        through :meth:`events` (those already seen are dropped), then ``Synced``."""
        frame = sync_frame(self._cursor if cursor is None else cursor, limit)
        await self._send_now(frame)
        self._inbox.on_sync_sent()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing or self._finished:
            raise TidingsConnectionError("the chat connection is closed")

    async def _send_now(self, frame: ClientFrame) -> None:
        self._check_open()
        ws = self._ws
        if ws is None:
            raise TidingsConnectionError("not connected (reconnecting)")
        try:
            await ws.send(encode(frame))
        except ConnectionClosed as exc:
            raise TidingsConnectionError("connection lost while sending") from exc

    # -- the supervisor --------------------------------------------------------------------

    async def _run(self) -> None:
        failure: TidingsError | None = None
        try:
            await self._supervise()
        except asyncio.CancelledError:
            if not self._closing:
                raise
        except TidingsError as exc:
            failure = exc
        except Exception as exc:
            failure = TidingsConnectionError(f"chat connection failed: {exc!r}")
            failure.__cause__ = exc
        finally:
            self._finish(failure)

    async def _supervise(self) -> None:
        """Run attempts until one ends the connection; the :class:`~._supervisor.Supervisor`
        decides where and when each next one goes, this only carries it out."""
        loop = asyncio.get_running_loop()
        supervisor = Supervisor(
            self._chat_url,
            backoff=self._backoff,
            restart=self._restart,
            restart_window=self._restart_window,
            same_url_retries=self._same_url_retries,
            max_attempts=self._max_attempts,
            stable_after=self._stable_after,
        )
        while True:
            attempt = await self._attempt(supervisor.url)
            decision = supervisor.after(
                Ended(
                    now=loop.time(),
                    welcomed_at=attempt.welcomed_at,
                    redirect_to=attempt.redirect_to,
                    reconnect_at=attempt.reconnect_at,
                    same_url=attempt.same_url,
                    error=attempt.error,
                )
            )
            if isinstance(decision, GiveUp):
                raise TidingsConnectionError(decision.reason) from decision.error
            logger.info("chat: %s", decision.note)
            await asyncio.sleep(decision.delay)
            if decision.discover:
                supervisor.discovered(await self._rediscover(decision.url))

    async def _rediscover(self, url: str) -> str:
        """Ask ``discover`` where to connect; a saturated server's 503 with ``after_ms``
        is waited out (a few times at most), any other failure keeps ``url``."""
        if self._discover is None:
            return url
        for _ in range(_MAX_DISCOVER_WAITS + 1):
            try:
                async with asyncio.timeout(self._discover_timeout):
                    return await self._discover()
            except TidingsApiError as exc:
                if exc.status == 401:
                    raise TidingsSessionEndedError(
                        f"discover refused the token (session ended): {exc}"
                    ) from exc
                if exc.after_ms is None:
                    logger.warning("chat: discover failed (%s); keeping %s", exc, url)
                    return url
                logger.info("chat: discover says come back in %d ms", exc.after_ms)
                await asyncio.sleep(exc.after_ms / 1000)
            except (TidingsError, TimeoutError, OSError) as exc:
                logger.warning("chat: discover failed (%r); keeping %s", exc, url)
                return url
        return url

    async def _attempt(self, url: str) -> _Attempt:
        attempt = _Attempt()
        try:
            target = ws_url(url)
            # websockets refuses a context for ws:// (and makes a default one for wss://).
            tls: dict[str, Any] = (
                {"ssl": self._ssl} if self._ssl is not None and target.startswith("wss:") else {}
            )
            async with connect(target, open_timeout=self._open_timeout, **tls) as ws:
                await self._session(ws, attempt)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code == CLOSE_UNAUTHORIZED:
                assert exc.rcvd is not None
                raise self._session_ended(exc.rcvd.reason, attempt) from exc
            if code == CLOSE_SUPERSEDED:
                assert exc.rcvd is not None
                raise TidingsSupersededError(
                    "a newer connection of this device took over (close 4011"
                    f"{': ' + exc.rcvd.reason if exc.rcvd.reason else ''}); not reconnecting"
                ) from exc
            attempt.error = exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            attempt.error = exc
        finally:
            self._ws = None
        return attempt

    @staticmethod
    def _session_ended(reason: str, attempt: _Attempt) -> TidingsSessionEndedError:
        why = f" ({reason})" if reason else ""
        if attempt.welcomed_at is not None:
            return TidingsSessionEndedError(
                f"the session ended{why}: this device logged out or was unlinked, or a "
                "newer login superseded its token; log in again"
            )
        return TidingsSessionEndedError(
            f"the server refused the token{why}: it expired, or this device logged out or "
            "was unlinked; log in again"
        )

    async def _session(self, ws: ClientConnection, attempt: _Attempt) -> None:
        loop = asyncio.get_running_loop()
        self._inbox.on_hello()
        await ws.send(encode(hello_frame(self._token, self._inbox.cursor)))
        welcome: Welcome | None = None
        async with asyncio.timeout(self._welcome_timeout):
            while welcome is None:
                frame = self._parse(await ws.recv())
                if isinstance(frame, Welcome):
                    welcome = frame
                else:
                    await self._handle(ws, frame, attempt)
                    if attempt.redirect_to is not None or attempt.reconnect_at is not None:
                        return  # this server will not serve us now
        attempt.welcomed_at = loop.time()
        self._on_welcome(ws, welcome)
        last_heard = [loop.time()]
        side_tasks = [asyncio.create_task(self._heartbeat(ws, welcome.heartbeat_s, last_heard))]
        try:
            for pending in list(self._pending.values()):
                await ws.send(encode(pending.frame))
            while True:
                frame = self._parse(await ws.recv())
                last_heard[0] = loop.time()
                was_draining = attempt.reconnect_at is not None
                await self._handle(ws, frame, attempt)
                if attempt.redirect_to is not None:
                    return
                if attempt.reconnect_at is not None and not was_draining:
                    side_tasks.append(asyncio.create_task(self._close_at(ws, attempt.reconnect_at)))
        finally:
            self._ws = None
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)

    def _on_welcome(self, ws: ClientConnection, welcome: Welcome) -> None:
        logger.info(
            "chat: welcome from %s (device %s, server cursor %d, ours %d)",
            welcome.server_id,
            welcome.device_id,
            welcome.cursor,
            self._inbox.cursor,
        )
        if welcome.cursor < self._inbox.cursor:
            # The server's inbox ends before our cursor (restored from a backup): what comes
            # after its head is new, not seen; keeping ours would drop it as repeats.
            logger.warning(
                "chat: the server's inbox ends at %d, before our cursor %d: starting from there",
                welcome.cursor,
                self._inbox.cursor,
            )
            self._inbox.rewind(welcome.cursor)
            self._cursor = min(self._cursor, welcome.cursor)
        self._ws = ws
        self._welcome = welcome
        self._queue.put_nowait(welcome)
        if self._started is not None and not self._started.done():
            self._started.set_result(welcome)

    def _parse(self, data: str | bytes) -> ServerFrame | None:
        try:
            frame = parse_server_frame(data)
        except TidingsProtocolError as exc:
            logger.warning("chat: dropping a malformed frame: %s", exc)
            return None
        if frame is None:
            logger.debug("chat: ignoring a frame of unknown type: %.200r", data)
        return frame

    async def _handle(
        self, ws: ClientConnection, frame: ServerFrame | None, attempt: _Attempt
    ) -> None:
        match frame:
            case Msg():
                await self._follow(ws, self._inbox.on_msg(frame))
            case Synced():
                await self._follow(ws, self._inbox.on_synced(frame))
                self._queue.put_nowait(frame)
            case Ack():
                pending = self._pending.get(frame.client_msg_id)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(frame)
            case ErrorFrame():
                pending = self._pending.get(frame.ref) if frame.ref is not None else None
                if pending is not None:
                    if not pending.future.done():
                        pending.future.set_exception(
                            TidingsChatError(frame.code, frame.message, frame.ref, frame.details)
                        )
                elif frame.code == "unauthorized":
                    raise self._session_ended(frame.message, attempt)
                else:
                    logger.info("chat: error frame %s: %s", frame.code, frame.message)
                    self._queue.put_nowait(frame)
            case Redirect():
                attempt.redirect_to = frame.chat_url
            case Reconnect():
                if attempt.reconnect_at is None:
                    attempt.reconnect_at = asyncio.get_running_loop().time() + frame.after_ms / 1000
                    attempt.same_url = frame.same_url
            case Receipt() | Presence() | Typing():
                self._queue.put_nowait(frame)
            case Welcome():
                logger.warning("chat: unexpected second welcome; ignored")
            case HeartbeatAck() | None:
                pass

    async def _follow(self, ws: ClientConnection, plan: SyncPlan) -> None:
        for step in plan.steps:
            self._queue.put_nowait(step.msg if step.msg is not None else _Advance(step.seq))
        if plan.sync_from is not None:
            await ws.send(encode(sync_frame(plan.sync_from)))

    async def _heartbeat(
        self, ws: ClientConnection, period: float, last_heard: list[float]
    ) -> None:
        loop = asyncio.get_running_loop()
        period = max(period, _MIN_HEARTBEAT_S)
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(period)
                if loop.time() - last_heard[0] > _SILENCE_HEARTBEATS * period:
                    logger.warning(
                        "chat: server silent for %d heartbeats; dropping it", _SILENCE_HEARTBEATS
                    )
                    ws.transport.abort()
                    return
                await ws.send(encode(heartbeat_frame()))

    async def _close_at(self, ws: ClientConnection, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))
        await ws.close(1000, "reconnecting")

    def _finish(self, failure: TidingsError | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._failure = failure
        self._ws = None
        error = (
            failure
            if failure is not None
            else TidingsConnectionError("the chat connection is closed")
        )
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(error)
        if self._started is not None and not self._started.done():
            self._started.set_exception(error)
        self._queue.put_nowait(_END)
