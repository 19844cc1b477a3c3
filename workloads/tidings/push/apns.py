"""Apple Push Notification service over HTTP/2 with token (JWT) authentication.

Apple's rules this follows: the provider token is an ES256 JWT with ``kid`` (key id)
and ``iss`` (team id) and ``iat``; it is valid for an hour and must not be refreshed
more often than every 20 minutes (TooManyProviderTokenUpdates), so it is cached and
renewed after 40 minutes, or at once after ExpiredProviderToken.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tidings.push._http import by_status, http2_client, json_body, transport_failure
from tidings.push.base import SENT, Outcome, Verdict
from tidings.push.exceptions import CredentialsError
from tidings.push.payload import Notification, apns_payload

log = logging.getLogger(__name__)

PRODUCTION = "https://api.push.apple.com"
SANDBOX = "https://api.sandbox.push.apple.com"
TOKEN_REFRESH_S = 40 * 60
# Device tokens are hex (64 characters today; Apple says they may grow).
_TOKEN_SHAPE = re.compile(r"[0-9A-Fa-f]{16,200}")
# 400 reasons that mean this token is no good (410 always does).
DEAD_REASONS = frozenset({"BadDeviceToken", "Unregistered", "ExpiredToken"})


def load_signing_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key in ``pem`` (Apple's ``.p8`` key).

    Raises :class:`CredentialsError` when it is not a PEM private key or not on P-256."""
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(f"the APNs key is not a PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise CredentialsError("the APNs key must be the P-256 (.p8) key Apple issued")
    return key


class ApnsTokenSigner:
    """The provider token, cached and renewed before Apple would refuse it."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        key_id: str,
        team_id: str,
        *,
        refresh_after_s: float = TOKEN_REFRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._refresh_after_s = refresh_after_s
        self._clock = clock
        self._token: str | None = None
        self._issued_at = 0.0

    def token(self) -> str:
        """The provider token: the cached one, or a newly signed one once ``refresh_after_s``
        have passed since it was issued (or after :meth:`invalidate`)."""
        now = self._clock()
        if self._token is None or now - self._issued_at >= self._refresh_after_s:
            self._issued_at = now
            self._token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
        return self._token

    def invalidate(self, token: str) -> None:
        """Apple said ExpiredProviderToken for ``token``: the next call signs a new one
        (unless another request already did)."""
        if self._token == token:
            self._token = None


def classify(response: httpx.Response) -> Outcome:
    """The outcome of an APNs response: 410 and the dead-token 400 reasons are
    ``DEAD_TOKEN``, ExpiredProviderToken is ``RETRY`` at once, others by status."""
    status = response.status_code
    if status == 200:
        return SENT
    reason = str(json_body(response).get("reason", "")) or f"HTTP {status}"
    if status == 410 or (status == 400 and reason in DEAD_REASONS):
        return Outcome(Verdict.DEAD_TOKEN, reason, status)
    if status == 403 and reason == "ExpiredProviderToken":
        return Outcome(Verdict.RETRY, reason, status, retry_after=0.0)
    return by_status(response, reason)


class ApnsProvider:
    name = "apns"

    def __init__(
        self,
        signer: ApnsTokenSigner,
        topic: str,
        *,
        endpoint: str = PRODUCTION,
        push_type: str = "alert",
        timeout_s: float = 10.0,
        max_connections: int = 4,
    ) -> None:
        self._signer = signer
        self._topic = topic
        self._endpoint = endpoint.rstrip("/")
        self._push_type = push_type
        self._client = http2_client(timeout_s, max_connections)

    async def send(self, token: str, notification: Notification) -> Outcome:
        """Post ``notification`` to the device ``token``; a token that is not hex is ``DEAD_TOKEN``
        without a request. After ExpiredProviderToken the signer signs a new token next time."""
        if not _TOKEN_SHAPE.fullmatch(token):
            return Outcome(Verdict.DEAD_TOKEN, "BadDeviceToken (not a hex token)")
        provider_token = self._signer.token()
        headers = {
            "authorization": f"bearer {provider_token}",
            "apns-topic": self._topic,
            "apns-push-type": self._push_type,
            "apns-priority": "10" if self._push_type == "alert" else "5",
            "apns-collapse-id": notification.collapse_key,
        }
        try:
            response = await self._client.post(
                f"{self._endpoint}/3/device/{token}",
                json=apns_payload(notification, self._push_type),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        outcome = classify(response)
        if outcome.reason == "ExpiredProviderToken":
            self._signer.invalidate(provider_token)
        return outcome

    async def close(self) -> None:
        """Close the HTTP/2 client."""
        await self._client.aclose()
