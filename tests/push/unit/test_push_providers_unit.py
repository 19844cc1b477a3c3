"""Provider pieces without a network: the APNs token cache, answers to outcomes."""

from __future__ import annotations

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.core.model import Message
from tidings.push import apns, fcm, webhook
from tidings.push.base import Verdict
from tidings.push.kafka import PushRequest
from tidings.push.worker import fresh_requests


def response(status: int, body: object = None, **headers: str) -> httpx.Response:
    return (
        httpx.Response(status, json=body, headers=headers)
        if body is not None
        else httpx.Response(status, headers=headers)
    )


def test_apns_provider_token_is_cached_then_renewed() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = [1_700_000_000.0]
    signer = apns.ApnsTokenSigner(key, "KID", "TEAM", clock=lambda: now[0])
    first = signer.token()
    claims = jwt.decode(first, key.public_key(), algorithms=["ES256"])
    assert claims == {"iss": "TEAM", "iat": 1_700_000_000}
    assert jwt.get_unverified_header(first)["kid"] == "KID"
    now[0] += 39 * 60
    assert signer.token() == first  # Apple refuses renewals more often than every 20 min
    now[0] += 2 * 60
    second = signer.token()
    assert second != first  # renewed before the hour Apple accepts it for
    signer.invalidate(first)  # a stale report does not throw the new one away
    assert signer.token() == second
    signer.invalidate(second)
    assert signer.token() != second


def test_apns_answers() -> None:
    assert apns.classify(response(200)).verdict is Verdict.SENT
    gone = apns.classify(response(410, {"reason": "Unregistered", "timestamp": 1}))
    assert (gone.verdict, gone.reason) == (Verdict.DEAD_TOKEN, "Unregistered")
    assert apns.classify(response(400, {"reason": "BadDeviceToken"})).verdict is Verdict.DEAD_TOKEN
    assert apns.classify(response(400, {"reason": "BadTopic"})).verdict is Verdict.REJECTED
    assert (
        apns.classify(response(400, {"reason": "DeviceTokenNotForTopic"})).verdict
        is Verdict.REJECTED
    )
    busy = apns.classify(response(429, {"reason": "TooManyRequests"}, **{"retry-after": "7"}))
    assert (busy.verdict, busy.retry_after) == (Verdict.RETRY, 7.0)
    assert apns.classify(response(503, {"reason": "ServiceUnavailable"})).verdict is Verdict.RETRY
    assert apns.classify(response(500)).verdict is Verdict.RETRY
    assert apns.classify(response(403, {"reason": "ExpiredProviderToken"})).verdict is Verdict.RETRY
    assert (
        apns.classify(response(403, {"reason": "InvalidProviderToken"})).verdict is Verdict.REJECTED
    )
    assert apns.classify(response(413, {"reason": "PayloadTooLarge"})).verdict is Verdict.REJECTED


def _fcm_error(status: int, status_text: str, code: str | None) -> dict[str, object]:
    error: dict[str, object] = {"code": status, "message": "m", "status": status_text}
    if code:
        error["details"] = [{"@type": fcm.FCM_ERROR_TYPE, "errorCode": code}]
    return {"error": error}


def test_fcm_answers() -> None:
    assert fcm.classify(response(200, {"name": "projects/p/messages/1"})).verdict is Verdict.SENT
    gone = fcm.classify(response(404, _fcm_error(404, "NOT_FOUND", "UNREGISTERED")))
    assert (gone.verdict, gone.reason) == (Verdict.DEAD_TOKEN, "UNREGISTERED")
    bad = fcm.classify(response(400, _fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")))
    assert bad.verdict is Verdict.REJECTED
    quota = fcm.classify(
        response(
            429, _fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), **{"retry-after": "3"}
        )
    )
    assert (quota.verdict, quota.retry_after, quota.reason) == (
        Verdict.RETRY,
        3.0,
        "QUOTA_EXCEEDED",
    )
    assert (
        fcm.classify(response(503, _fcm_error(503, "UNAVAILABLE", "UNAVAILABLE"))).verdict
        is Verdict.RETRY
    )
    assert (
        fcm.classify(response(401, _fcm_error(401, "UNAUTHENTICATED", None))).verdict
        is Verdict.RETRY
    )
    mismatch = fcm.classify(
        response(403, _fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"))
    )
    assert mismatch.verdict is Verdict.REJECTED  # our configuration, not the token: kept


def test_webhook_answers() -> None:
    assert webhook.classify(response(202)).verdict is Verdict.SENT
    assert webhook.classify(response(410)).verdict is Verdict.DEAD_TOKEN
    assert webhook.classify(response(404)).verdict is Verdict.DEAD_TOKEN
    assert webhook.classify(response(429)).verdict is Verdict.RETRY
    assert webhook.classify(response(502)).verdict is Verdict.RETRY
    assert webhook.classify(response(401)).verdict is Verdict.REJECTED


def test_the_worker_drops_stale_requests() -> None:
    message = Message(1, "dm:1:2", 1, 1, "c", "b", 0)
    now = 10_000_000
    fresh = PushRequest(2, (20,), message, now - 1000)
    stale = PushRequest(2, (20, 21), message, now - 7_200_000)
    undated = PushRequest(2, (20,), message, 0)
    assert fresh_requests([fresh, stale, undated], now, 3600) == [fresh, undated]
