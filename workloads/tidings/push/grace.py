"""Hold push requests for a grace period on the chat server, where connections are known.

A device that reconnects within ``push_grace_s`` (a drain, a failover, a phone switching
networks) gets no push: it receives the messages over its connection. Requests for one
user and channel that arrive within the grace collapse into one request about the latest
message, so a burst becomes one notification per device.

``request`` only records; :meth:`GracefulPushSink.run` (a background loop of the chat
server) forwards each group once its grace has passed, to the devices that are still not
connected, through the real sink (the dispatcher in ``tidings up``, Kafka in a cluster).
All groups wait the same grace, so a FIFO queue orders their deadlines and one loop
serves them all (no timer per request).

What this trades: a chat server that dies holds its pending requests in memory only, so
pushes asked for in its last ``push_grace_s`` are lost (the messages are not: they are in
the inbox and reach the devices when they connect). On an orderly close the pending
requests are forwarded at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tidings import metrics
from tidings.chat.ports import PushSink
from tidings.core.model import Message

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    devices: set[int]
    message: Message


class GracefulPushSink:
    def __init__(
        self,
        inner: PushSink,
        connected_devices: Callable[[int], set[int]],
        grace_s: float,
        *,
        max_in_flight: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._connected = connected_devices
        self._grace_s = grace_s
        self._clock = clock
        self._pending: dict[tuple[int, str], _Pending] = {}
        self._due: deque[tuple[float, tuple[int, str]]] = deque()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """How many (user, channel) groups wait for their grace to pass."""
        return len(self._pending)

    async def request(self, user_id: int, device_ids: Sequence[int], message: Message) -> None:
        """Hold the request for ``grace_s``, folded into the one held for the same user and
        channel (its devices added, the latest message kept); :meth:`run` forwards it."""
        metrics.PUSH_REQUESTS.inc(len(device_ids))
        key = (user_id, message.channel_id)
        held = self._pending.get(key)
        if held is None:
            self._pending[key] = _Pending(set(device_ids), message)
            self._due.append((self._clock() + self._grace_s, key))
            self._wake.set()
            return
        folded = held.devices.intersection(device_ids)
        if folded:
            metrics.PUSH_COLLAPSED.inc(len(folded))
        held.devices.update(device_ids)
        if message.message_id > held.message.message_id:
            held.message = message

    async def run(self) -> None:
        """Forward each group when its grace has passed; until cancelled."""
        while True:
            now = self._clock()
            while self._due and self._due[0][0] <= now:
                _, key = self._due.popleft()
                await self._flush(key)
            self._wake.clear()
            timeout = self._due[0][0] - now if self._due else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _flush(self, key: tuple[int, str]) -> None:
        held = self._pending.pop(key, None)
        if held is None:
            return
        user_id = key[0]
        connected = self._connected(user_id)
        back = held.devices & connected
        if back:
            metrics.PUSH_SUPPRESSED.inc(len(back))
        devices = sorted(held.devices - connected)
        if not devices:
            return
        await self._slots.acquire()  # back-pressure when the real sink is slow
        task = asyncio.create_task(self._forward(user_id, devices, held.message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _forward(self, user_id: int, devices: list[int], message: Message) -> None:
        try:
            await self.inner.request(user_id, devices, message)
        except Exception:
            metrics.PUSH_FAILED.labels("any", "unavailable").inc(len(devices))
            log.warning(
                "push request not forwarded",
                exc_info=True,
                extra={"user_id": user_id, "devices": devices},
            )
        finally:
            self._slots.release()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Forward what is pending now, wait (bounded) for it, then close the real sink."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._due:
                    _, key = self._due.popleft()
                    await self._flush(key)
                if self._in_flight:
                    await asyncio.gather(*self._in_flight, return_exceptions=True)
        except TimeoutError:
            log.warning("push requests still in flight at close: %d", len(self._in_flight))
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        close = getattr(self.inner, "close", None)
        if close is not None:
            await close()
