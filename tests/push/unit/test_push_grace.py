"""The grace on the chat server: hold, collapse, drop devices that came back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from tidings.core.model import Message
from tidings.push.grace import GracefulPushSink

from ..conftest import msg

GRACE = 0.2
WAIT = 5.0


class Sink:
    def __init__(self) -> None:
        self.requests: list[tuple[int, tuple[int, ...], int, str]] = []
        self.closed = False
        self.arrived = asyncio.Event()

    async def request(self, user_id: int, device_ids: Sequence[int], message: Message) -> None:
        self.requests.append((user_id, tuple(device_ids), message.message_id, message.channel_id))
        self.arrived.set()

    async def close(self) -> None:
        self.closed = True


class World:
    def __init__(self) -> None:
        self.sink = Sink()
        self.connected: dict[int, set[int]] = {}
        self.grace = GracefulPushSink(
            self.sink, lambda user: set(self.connected.get(user, ())), GRACE
        )

    async def settle(self, count: int) -> None:
        async def until() -> None:
            while len(self.sink.requests) < count:
                self.sink.arrived.clear()
                await self.sink.arrived.wait()

        await asyncio.wait_for(until(), WAIT)
        await asyncio.sleep(GRACE * 2)  # nothing more may come


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    task = asyncio.create_task(w.grace.run())
    try:
        yield w
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_burst_becomes_one_request_about_the_latest(world: World) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    for message_id in (5, 7, 6):
        await world.grace.request(2, [20, 21], msg(message_id))
    assert world.sink.requests == []  # held
    await world.settle(1)
    assert world.sink.requests == [(2, (20, 21), 7, "dm:1:2")]
    assert loop.time() - started >= GRACE


async def test_channels_and_users_are_separate(world: World) -> None:
    await world.grace.request(2, [20], msg(1, "dm:1:2"))
    await world.grace.request(2, [20], msg(2, "g:9"))
    await world.grace.request(3, [30], msg(3, "g:9"))
    await world.settle(3)
    assert sorted(world.sink.requests) == [
        (2, (20,), 1, "dm:1:2"),
        (2, (20,), 2, "g:9"),
        (3, (30,), 3, "g:9"),
    ]


async def test_devices_back_within_the_grace_get_nothing(world: World) -> None:
    await world.grace.request(2, [20, 21], msg(1))
    world.connected[2] = {21}  # one device reconnected
    await world.settle(1)
    assert world.sink.requests == [(2, (20,), 1, "dm:1:2")]
    world.connected[2] = {20, 21}
    await world.grace.request(2, [20, 21], msg(2))
    await asyncio.sleep(GRACE * 3)
    assert len(world.sink.requests) == 1


async def test_after_the_grace_a_new_burst_is_a_new_push(world: World) -> None:
    await world.grace.request(2, [20], msg(1))
    await world.settle(1)
    await world.grace.request(2, [20], msg(2))
    await world.settle(2)
    assert [r[2] for r in world.sink.requests] == [1, 2]


async def test_close_forwards_what_is_pending_and_closes_the_sink() -> None:
    world = World()  # no run loop: close alone must forward
    await world.grace.request(2, [20], msg(1))
    await asyncio.wait_for(world.grace.close(), WAIT)
    assert world.sink.requests == [(2, (20,), 1, "dm:1:2")]
    assert world.sink.closed


async def test_a_failing_sink_does_not_stop_the_loop(world: World) -> None:
    calls = 0
    real = world.sink.request

    async def flaky(user_id: int, device_ids: Sequence[int], message: Message) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("kafka is down")
        await real(user_id, device_ids, message)

    world.sink.request = flaky  # type: ignore[method-assign]
    await world.grace.request(2, [20], msg(1))
    await asyncio.sleep(GRACE * 2)
    await world.grace.request(2, [20], msg(2))
    await world.settle(1)
    assert world.sink.requests == [(2, (20,), 2, "dm:1:2")]
