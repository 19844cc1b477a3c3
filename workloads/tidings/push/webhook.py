"""A signed webhook to a self-hosted relay (e.g. a UnifiedPush distributor's bridge).

Each notification is one ``POST`` of JSON (:func:`tidings.push.payload.webhook_body`:
the device's token, user, device, channel and message ids, and a preview only when
enabled) to ``TIDINGS_WEBHOOK_URL``, with two headers::

    Tidings-Timestamp: 1732830000                 (unix seconds)
    Tidings-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

A relay recomputes the HMAC over the raw body with the shared secret, compares in
constant time, and refuses timestamps outside its window (replay). :func:`verify` is
that check. The relay answers 2xx when it took the notification, 404 or 410 when the
token is gone for good (the device's token is removed), 429/5xx to be retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx

from tidings.push._http import by_status, http_client, transport_failure
from tidings.push.base import SENT, Outcome, Verdict
from tidings.push.payload import Notification, webhook_body

TIMESTAMP_HEADER = "Tidings-Timestamp"
SIGNATURE_HEADER = "Tidings-Signature"
DEFAULT_TOLERANCE_S = 300


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``Tidings-Signature`` value for ``body`` signed at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(
    secret: bytes,
    timestamp: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """True for a body signed with ``secret`` at a time within ``tolerance_s`` of ``now``."""
    if not timestamp or not signature_header or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = signature(secret, int(timestamp), body)
    return any(
        hmac.compare_digest(expected, candidate.strip())
        for candidate in signature_header.split(",")
    )


def classify(response: httpx.Response) -> Outcome:
    """The outcome of the relay's answer: 2xx ``SENT``, 404 and 410 ``DEAD_TOKEN``, others by
    status."""
    if 200 <= response.status_code < 300:
        return SENT
    if response.status_code in (404, 410):
        return Outcome(Verdict.DEAD_TOKEN, f"HTTP {response.status_code}", response.status_code)
    return by_status(response, f"HTTP {response.status_code}")


class WebhookProvider:
    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret.encode()
        self._clock = clock
        self._client = http_client(timeout_s, max_connections)

    async def send(self, token: str, notification: Notification) -> Outcome:
        """Post the signed ``notification`` for ``token`` to the relay."""
        body = json.dumps(webhook_body(token, notification), separators=(",", ":")).encode()
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(self._secret, timestamp, body),
        }
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        return classify(response)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
