"""`tidings push`: consume push requests from Kafka and hand them to the push sink."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

from tidings.push.kafka import PushRequest, consume_push_requests
from tidings.push.sink import RecordingPushSink
from tidings.settings import Settings

log = logging.getLogger(__name__)


async def run_push_worker(settings: Settings) -> None:
    """Until SIGTERM/SIGINT; metrics on ``settings.port`` (``/metrics``)."""
    start_http_server(settings.port, addr=settings.host)
    sink = RecordingPushSink()

    async def handle(requests: list[PushRequest]) -> None:
        for request in requests:
            await sink.request(request.user_id, request.device_ids, request.message)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    consumer = asyncio.create_task(consume_push_requests(settings, handle), name="push")
    stopper = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for task in (consumer, stopper):
        task.cancel()
    await asyncio.gather(consumer, stopper, return_exceptions=True)
    if consumer in done and consumer.exception() is not None:
        raise consumer.exception()  # type: ignore[misc]
    log.info("push worker stopped")
