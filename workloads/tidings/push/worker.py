"""`tidings push`: consume push requests from Kafka and send them through the providers."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from tidings import metrics
from tidings.push.dispatcher import PushDispatcher
from tidings.push.kafka import PushRequest, consume_push_requests
from tidings.settings import Settings
from tidings.storage.sql.directory import SqlDirectory

log = logging.getLogger(__name__)


def fresh_requests(requests: list[PushRequest], now_ms: int, max_age_s: float) -> list[PushRequest]:
    """The requests young enough to be worth a push (a worker back from an outage does
    not wake people for day-old messages); the others are counted as failed."""
    fresh = [r for r in requests if not r.ts or now_ms - r.ts <= max_age_s * 1000]
    stale = sum(len(r.device_ids) for r in requests) - sum(len(r.device_ids) for r in fresh)
    if stale:
        metrics.PUSH_FAILED.labels("any", "expired").inc(stale)
        log.info("dropped %d push requests older than %ss", stale, max_age_s)
    return fresh


async def run_push_worker(settings: Settings) -> None:
    """Until SIGTERM/SIGINT; metrics on ``metrics_host:metrics_port`` (``/metrics``) when
    ``metrics_port`` is set, else no HTTP server at all.

    Devices (provider, token) come from the Directory on PostgreSQL, which is also where
    dead tokens are removed.
    """
    if not settings.postgres_url:
        raise ValueError("TIDINGS_POSTGRES_URL is not set (postgresql+asyncpg://...)")
    metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
    directory = await SqlDirectory.open(settings.postgres_url, migrate=False)
    dispatcher = PushDispatcher.from_settings(settings, directory)

    async def handle(requests: list[PushRequest]) -> None:
        now_ms = time.time_ns() // 1_000_000
        await dispatcher.dispatch(fresh_requests(requests, now_ms, settings.push_max_age_s))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    consumer = asyncio.create_task(consume_push_requests(settings, handle), name="push")
    stopper = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (consumer, stopper):
            task.cancel()
        await asyncio.gather(consumer, stopper, return_exceptions=True)
        if consumer in done and consumer.exception() is not None:
            raise consumer.exception()  # type: ignore[misc]
    finally:
        await dispatcher.close()
        await directory.close()
    log.info("push worker stopped")
