"""What a push provider is to the dispatcher: ``send(token, notification) -> Outcome``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from tidings.push.payload import Notification


class Verdict(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # 429, 5xx, a transport error, an auth token to refresh
    DEAD_TOKEN = "dead_token"  # the provider says the token will never work again
    REJECTED = "rejected"  # a bad request or bad credentials: trying again cannot help


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reason: str = ""  # the provider's reason (e.g. "Unregistered"), for logs and metrics
    status: int | None = None
    retry_after: float | None = None  # seconds, from Retry-After


SENT = Outcome(Verdict.SENT)


class Provider(Protocol):
    name: str

    async def send(self, token: str, notification: Notification) -> Outcome:
        """Send ``notification`` to the device ``token``; every failure is an :class:`Outcome`."""
        ...

    async def close(self) -> None:
        """Close the provider's connections."""
        ...
