"""An in-memory bus for tests of the core: same semantics as the others, not durable."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tidings.bus.base import EventHandler, InboxEvent


class MemoryBus:
    def __init__(self) -> None:
        self._pending: list[InboxEvent] = []
        self._wakeup = asyncio.Event()

    async def start(self) -> None:
        """Nothing to connect."""
        return None

    async def publish(self, events: Sequence[InboxEvent]) -> None:
        """Queue ``events`` for the consumer and wake it."""
        self._pending.extend(events)
        self._wakeup.set()

    async def publish_ephemeral(self, events: Sequence[InboxEvent]) -> None:
        """The same as :meth:`publish`."""
        await self.publish(events)

    async def consume(self, handler: EventHandler) -> None:
        """Hand everything published since the last batch to ``handler``, until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if batch:
                await handler(batch)

    async def close(self) -> None:
        """Nothing to close."""
        return None
