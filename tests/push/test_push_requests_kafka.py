"""Push requests through the push topic, against the test environment's real Kafka
broker: KafkaPushSink (the chat server's side) and consume_push_requests (the worker's),
committed only after the handler has dealt with them. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tidings.core.model import Message
from tidings.push.kafka import KafkaPushSink, PushRequest, consume_push_requests
from tidings.settings import Settings

from ._standins import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

WAIT = 30.0  # joining a consumer group takes a few seconds


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)


async def test_push_requests_round_trip(kafka_settings: Settings) -> None:
    sink = KafkaPushSink(kafka_settings)
    await asyncio.wait_for(sink.start(), WAIT)
    message = Message(
        message_id=123456789012345678,
        channel_id="dm:1:2",
        sender_id=1,
        sender_device_id=11,
        client_msg_id="c-1",
        body="wake up",
        ts=1_732_830_000_000,
    )
    got: list[PushRequest] = []

    async def handler(batch: list[PushRequest]) -> None:
        got.extend(batch)

    worker = asyncio.create_task(
        consume_push_requests(kafka_settings, handler, heartbeat_interval_s=0.3)
    )
    try:
        await asyncio.wait_for(sink.request(2, [21, 22], message), WAIT)
        await asyncio.wait_for(sink.request(3, [31], message), WAIT)
        await wait_until(lambda: len(got) >= 2, "both push requests")
    finally:
        await cancel(worker)
        await sink.close()
    by_user_id = {request.user_id: request for request in got}
    assert by_user_id[2].device_ids == (21, 22)
    assert by_user_id[3].device_ids == (31,)
    assert by_user_id[2].message == message
    assert by_user_id[2].ts > 0


async def test_push_requests_are_committed_after_the_handler(kafka_settings: Settings) -> None:
    sink = KafkaPushSink(kafka_settings)
    await asyncio.wait_for(sink.start(), WAIT)
    message = Message(1, "dm:1:2", 1, 11, "c-1", "x", 1)
    try:
        await asyncio.wait_for(sink.request(2, [21], message), WAIT)

        async def boom(batch: list[PushRequest]) -> None:
            raise RuntimeError("push provider down")

        with pytest.raises(RuntimeError):
            await asyncio.wait_for(consume_push_requests(kafka_settings, boom), WAIT)
        got: list[PushRequest] = []

        async def handler(batch: list[PushRequest]) -> None:
            got.extend(batch)

        worker = asyncio.create_task(consume_push_requests(kafka_settings, handler))
        try:
            await wait_until(lambda: len(got) >= 1, "the push request again")
        finally:
            await cancel(worker)
    finally:
        await sink.close()
    assert got[0].user_id == 2
