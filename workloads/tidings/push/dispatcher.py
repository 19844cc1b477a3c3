"""Send push requests through the device's provider: collapse, limit, retry, prune, count.

:class:`PushDispatcher` is a :class:`tidings.chat.ports.PushSink` (``tidings up`` puts it
behind the grace) and takes whole batches from Kafka (``tidings push``). For each
request it reads the user's devices from the Directory (the token may have changed since
the request was made) and, per device with a token:

- collapses a batch's requests for one (device, channel) into one notification about
  the latest message;
- waits for a slot of the provider (``push_concurrency`` requests in flight each);
- retries 429, 5xx and transport errors with :class:`~tidings.push.backoff.Backoff`
  (honouring Retry-After), never a request the provider called bad;
- removes a token the provider reports dead (``Directory.clear_push_token`` removes it
  only if it is still the device's token);
- counts sent, failed (by reason), pruned, retries and each round trip's latency.

It never raises for a push that failed: a push is a wake-up call, the message itself is
already durable and reaches the device when it connects.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tidings import metrics
from tidings.core.model import Message
from tidings.push.backoff import Backoff
from tidings.push.base import Outcome, Provider, Verdict
from tidings.push.config import PROVIDERS, build_providers
from tidings.push.payload import Notification, build_notification
from tidings.settings import Settings
from tidings.storage.base import Device, Directory

log = logging.getLogger(__name__)


class Ask(Protocol):
    """A push request (e.g. :class:`tidings.push.kafka.PushRequest`)."""

    @property
    def user_id(self) -> int:
        """Whose devices to push to."""
        ...

    @property
    def device_ids(self) -> Sequence[int]:
        """Which of the user's devices to push to."""
        ...

    @property
    def message(self) -> Message:
        """The message the push is about."""
        ...


@dataclass(frozen=True, slots=True)
class _Ask:
    user_id: int
    device_ids: Sequence[int]
    message: Message


@dataclass(frozen=True, slots=True)
class Result:
    """What became of the push to one device."""

    device_id: int
    provider: str
    outcome: Outcome
    attempts: int


def collapse(asks: Iterable[Ask]) -> tuple[dict[tuple[int, int, str], Message], int]:
    """One message per (user, device, channel): the latest. Also how many were folded."""
    latest: dict[tuple[int, int, str], Message] = {}
    folded = 0
    for ask in asks:
        for device_id in dict.fromkeys(ask.device_ids):
            key = (ask.user_id, device_id, ask.message.channel_id)
            seen = latest.get(key)
            if seen is not None:
                folded += 1
                if seen.message_id >= ask.message.message_id:
                    continue
            latest[key] = ask.message
    return latest, folded


class PushDispatcher:
    def __init__(
        self,
        directory: Directory,
        providers: Mapping[str, Provider],
        *,
        unavailable: Mapping[str, str] | None = None,
        backoff: Backoff | None = None,
        concurrency: int = 64,
        preview: bool = False,
        preview_chars: int = 100,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._directory = directory
        self._providers = dict(providers)
        self._unavailable = dict(unavailable or {})
        self._backoff = backoff or Backoff()
        self._slots = {name: asyncio.Semaphore(concurrency) for name in self._providers}
        self._preview = preview
        self._preview_chars = preview_chars
        self._sleep = sleep
        self._rand = rand
        self._warned: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings, directory: Directory) -> PushDispatcher:
        """A dispatcher with the providers, retry, concurrency and preview of ``settings``."""
        providers, unavailable = build_providers(settings)
        return cls(
            directory,
            providers,
            unavailable=unavailable,
            backoff=Backoff(
                settings.push_retry_attempts, settings.push_retry_base_s, settings.push_retry_max_s
            ),
            concurrency=settings.push_concurrency,
            preview=settings.push_preview,
            preview_chars=settings.push_preview_chars,
        )

    async def request(self, user_id: int, device_ids: Sequence[int], message: Message) -> None:
        """Push ``message`` to ``device_ids`` of ``user_id`` now (a batch of one); never raises
        for a failed push."""
        await self.dispatch([_Ask(user_id, tuple(device_ids), message)])

    async def dispatch(self, asks: Iterable[Ask]) -> list[Result]:
        """Push every request of a batch; returns when each has an outcome."""
        latest, folded = collapse(asks)
        if folded:
            metrics.PUSH_COLLAPSED.inc(folded)
        devices: dict[int, dict[int, Device]] = {}
        for user_id in {user for user, _, _ in latest}:
            try:
                listed = await self._directory.list_devices(user_id)
            except Exception:
                log.exception("cannot read the devices of user %s; no push", user_id)
                listed = []
            devices[user_id] = {d.device_id: d for d in listed}
        jobs = []
        for (user_id, device_id, _), message in latest.items():
            device = devices[user_id].get(device_id)
            if device is None or device.push_token is None or device.push_provider is None:
                continue  # gone, or its token was removed since the request
            notification = build_notification(
                user_id,
                device_id,
                message,
                preview=self._preview,
                preview_chars=self._preview_chars,
            )
            jobs.append(self._push(device, device.push_provider, device.push_token, notification))
        return list(await asyncio.gather(*jobs))

    async def _push(
        self, device: Device, provider_name: str, token: str, notification: Notification
    ) -> Result:
        label = provider_name if provider_name in PROVIDERS else "unknown"
        provider = self._providers.get(provider_name)
        if provider is None:
            reason = self._unavailable.get(provider_name, f"unknown provider {provider_name!r}")
            if provider_name not in self._warned:
                self._warned.add(provider_name)
                log.warning("push to %s devices fails: %s", provider_name, reason)
            metrics.PUSH_FAILED.labels(label, "not_configured").inc()
            return Result(device.device_id, provider_name, Outcome(Verdict.REJECTED, reason), 0)
        attempt = 0
        while True:
            attempt += 1
            async with self._slots[provider_name]:
                started = time.perf_counter()
                try:
                    outcome = await provider.send(token, notification)
                except Exception as exc:  # a bug, not an answer: never let it kill the batch
                    log.exception("push provider %s failed", provider_name)
                    outcome = Outcome(Verdict.REJECTED, f"error: {type(exc).__name__}")
                metrics.PUSH_LATENCY.labels(label).observe(time.perf_counter() - started)
            if outcome.verdict is not Verdict.RETRY:
                break
            delay = self._backoff.delay(attempt, outcome.retry_after, self._rand())
            if delay is None:
                break
            metrics.PUSH_RETRIES.labels(label).inc()
            await self._sleep(delay)
        await self._record(device, label, token, outcome, attempt)
        return Result(device.device_id, provider_name, outcome, attempt)

    async def _record(
        self, device: Device, label: str, token: str, outcome: Outcome, attempts: int
    ) -> None:
        extra = {
            "user_id": device.user_id,
            "device_id": device.device_id,
            "provider": label,
            "reason": outcome.reason,
            "status": outcome.status,
            "attempts": attempts,
        }
        if outcome.verdict is Verdict.SENT:
            metrics.PUSH_SENT.labels(label).inc()
            log.debug("push sent", extra=extra)
        elif outcome.verdict is Verdict.DEAD_TOKEN:
            try:
                await self._directory.clear_push_token(device.device_id, token)
            except Exception:
                log.exception("could not remove a dead push token", extra=extra)
                metrics.PUSH_FAILED.labels(label, "dead_token").inc()
                return
            metrics.PUSH_PRUNED.labels(label).inc()
            log.info("push token removed: the provider says it is dead", extra=extra)
        else:
            reason = "gave_up" if outcome.verdict is Verdict.RETRY else "rejected"
            metrics.PUSH_FAILED.labels(label, reason).inc()
            log.warning("push failed (%s)", reason, extra=extra)

    async def close(self) -> None:
        """Close every provider (a failure to is logged)."""
        for provider in self._providers.values():
            try:
                await provider.close()
            except Exception:
                log.exception("closing push provider %s failed", provider.name)
