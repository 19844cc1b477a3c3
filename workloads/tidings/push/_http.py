"""HTTP clients for the providers and the mapping of their failures to outcomes."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tidings.push.backoff import parse_retry_after
from tidings.push.base import Outcome, Verdict


def http2_client(timeout_s: float, max_connections: int) -> httpx.AsyncClient:
    """HTTP/2 only: negotiated by ALPN on ``https``; on plain ``http`` with prior knowledge
    (h2c), which only a stand-in on loopback uses (the real services are all https)."""
    return httpx.AsyncClient(
        http1=False,
        http2=True,
        timeout=timeout_s,
        limits=httpx.Limits(max_connections=max_connections),
    )


def http_client(timeout_s: float, max_connections: int) -> httpx.AsyncClient:
    """HTTP/1.1, or HTTP/2 where ALPN offers it (webhook relays speak either)."""
    return httpx.AsyncClient(
        http2=True,
        timeout=timeout_s,
        limits=httpx.Limits(max_connections=max_connections),
    )


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or ``{}`` when the body is not one."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def retry_after(response: httpx.Response) -> float | None:
    """The response's Retry-After, in seconds from now, or None."""
    return parse_retry_after(response.headers.get("retry-after"), time.time())


def transport_failure(exc: httpx.HTTPError) -> Outcome:
    """No answer (refused, reset, timed out): the request may be tried again."""
    return Outcome(Verdict.RETRY, reason=f"transport: {type(exc).__name__}")


def by_status(response: httpx.Response, reason: str) -> Outcome:
    """The generic rule: 429 and 5xx are worth another try, other 4xx are not."""
    status = response.status_code
    if status == 429 or status >= 500:
        return Outcome(Verdict.RETRY, reason, status, retry_after(response))
    return Outcome(Verdict.REJECTED, reason, status)
