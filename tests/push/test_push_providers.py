"""The providers against stand-ins of APNs, FCM and a webhook relay over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import jwt
import pytest

from tidings.push.apns import ApnsProvider, ApnsTokenSigner, load_signing_key
from tidings.push.backoff import Backoff
from tidings.push.base import Verdict
from tidings.push.dispatcher import PushDispatcher
from tidings.push.fcm import FcmProvider, ServiceAccount
from tidings.push.webhook import WebhookProvider
from tidings.storage.sql.directory import SqlDirectory

from ._standins import (
    ApnsStandin,
    FcmStandin,
    Reply,
    WebhookStandin,
    apns_error,
    fcm_error,
    p256_key_pem,
    service_account,
)
from .conftest import USER, add_device, message, sample, token_of

KEY_ID = "ABC123DEFG"
TEAM_ID = "DEF123GHIJ"
TOPIC = "dev.tidings.app"
PROJECT = "tidings-test"
FAST = Backoff(attempts=4, base_s=0.02, max_s=3.0)


def hex_token() -> str:
    return secrets.token_hex(32)


# --- APNs ---------------------------------------------------------------------------------


@pytest.fixture
async def apns() -> AsyncIterator[tuple[ApnsStandin, str]]:
    pem, public_key = p256_key_pem()
    async with ApnsStandin(public_key, KEY_ID, TEAM_ID, TOPIC) as standin:
        yield standin, pem


class ApnsDevice(NamedTuple):
    standin: ApnsStandin
    pem: str
    token: str


@pytest.fixture
async def apns_device(apns: tuple[ApnsStandin, str], directory: SqlDirectory) -> ApnsDevice:
    """The APNs stand-in, the key that signs for it, and device 1 of USER registered in
    the directory with a fresh token."""
    standin, pem = apns
    token = hex_token()
    await add_device(directory, 1, "apns", token)
    return ApnsDevice(standin, pem, token)


def apns_provider(
    standin: ApnsStandin, pem: str, *, topic: str = TOPIC, push_type: str = "alert"
) -> ApnsProvider:
    signer = ApnsTokenSigner(load_signing_key(pem), KEY_ID, TEAM_ID)
    return ApnsProvider(signer, topic, endpoint=standin.url, push_type=push_type, timeout_s=5)


@contextlib.asynccontextmanager
async def dispatching(
    directory: SqlDirectory, name: str, provider: Any, **kwargs: Any
) -> AsyncIterator[PushDispatcher]:
    """A dispatcher over one provider (fast retries unless told), closed afterwards."""
    kwargs.setdefault("backoff", FAST)
    push = PushDispatcher(directory, {name: provider}, **kwargs)
    try:
        yield push
    finally:
        await push.close()


async def test_apns_push_carries_ids_not_the_body(
    apns_device: ApnsDevice, directory: SqlDirectory
) -> None:
    standin, pem, token = apns_device
    sent_before = sample("tidings_push_sent_total", provider="apns")
    async with dispatching(directory, "apns", apns_provider(standin, pem)) as push:
        await push.request(USER, [1], message(1001))
        await push.request(USER, [1], message(1002, channel_id="g:99"))
    assert standin.violations == []
    first, second = standin.accepted_for(token)
    assert first.http_version == "2"
    assert first.headers["apns-topic"] == TOPIC
    assert first.headers["apns-push-type"] == "alert"
    assert first.headers["apns-priority"] == "10"
    assert first.headers["apns-collapse-id"] == f"dm:7:{USER}"
    assert second.headers["apns-collapse-id"] == "g:99"
    # One provider token serves both requests (cached, not signed per push).
    assert first.headers["authorization"] == second.headers["authorization"]
    payload = first.json()
    assert payload["tidings"] == {"channel_id": f"dm:7:{USER}", "message_id": "1001"}
    assert payload["aps"]["mutable-content"] == 1
    assert payload["aps"]["thread-id"] == f"dm:7:{USER}"
    assert b"secret words" not in first.body  # no body by default (end-to-end friendly)
    assert sample("tidings_push_sent_total", provider="apns") == sent_before + 2


async def test_apns_preview_is_opt_in(apns_device: ApnsDevice, directory: SqlDirectory) -> None:
    standin, pem, token = apns_device
    async with dispatching(
        directory, "apns", apns_provider(standin, pem), preview=True, preview_chars=9
    ) as push:
        await push.request(USER, [1], message(1001, body="secret words here"))
    assert standin.violations == []
    (seen,) = standin.accepted_for(token)
    assert seen.json()["aps"]["alert"]["body"] == "secret wo…"


async def test_apns_background_push_type(apns_device: ApnsDevice, directory: SqlDirectory) -> None:
    standin, pem, token = apns_device
    async with dispatching(
        directory, "apns", apns_provider(standin, pem, push_type="background")
    ) as push:
        await push.request(USER, [1], message())
    assert standin.violations == []
    (seen,) = standin.accepted_for(token)
    assert seen.headers["apns-push-type"] == "background"
    assert seen.headers["apns-priority"] == "5"
    assert seen.json()["aps"] == {"content-available": 1}


@pytest.mark.parametrize(
    "reply",
    [apns_error(410, "Unregistered"), apns_error(400, "BadDeviceToken")],
    ids=["410-Unregistered", "400-BadDeviceToken"],
)
async def test_apns_dead_token_is_removed(
    apns: tuple[ApnsStandin, str], directory: SqlDirectory, reply: Reply
) -> None:
    standin, pem = apns
    dead, alive = hex_token(), hex_token()
    await add_device(directory, 1, "apns", dead)
    await add_device(directory, 2, "apns", alive)
    standin.scripts.add(dead, reply)
    pruned_before = sample("tidings_push_pruned_total", provider="apns")
    async with dispatching(directory, "apns", apns_provider(standin, pem)) as push:
        results = await push.dispatch([_ask([1, 2])])
    by_device = {r.device_id: r for r in results}
    assert by_device[1].outcome.verdict is Verdict.DEAD_TOKEN
    assert by_device[1].attempts == 1  # no retry of a dead token
    assert await token_of(directory, 1) is None
    assert await token_of(directory, 2) == alive
    assert len(standin.accepted_for(alive)) == 1
    assert sample("tidings_push_pruned_total", provider="apns") == pruned_before + 1


async def test_apns_429_waits_for_retry_after(
    apns_device: ApnsDevice, directory: SqlDirectory
) -> None:
    standin, pem, token = apns_device
    standin.scripts.add(token, apns_error(429, "TooManyRequests", **{"retry-after": "1"}))
    async with dispatching(directory, "apns", apns_provider(standin, pem)) as push:
        (result,) = await push.dispatch([_ask([1])])
    assert result.outcome.verdict is Verdict.SENT
    assert result.attempts == 2
    first, second = [s for s in standin.requests if s.path.endswith(token)]
    assert second.at - first.at >= 1.0, "Retry-After: 1 not honoured"
    assert await token_of(directory, 1) == token


async def test_apns_503_is_retried_with_backoff_then_given_up(
    apns_device: ApnsDevice, directory: SqlDirectory
) -> None:
    standin, pem, token = apns_device
    standin.scripts.add(token, *[apns_error(503, "ServiceUnavailable")] * 4)
    failed_before = sample("tidings_push_failed_total", provider="apns", reason="gave_up")
    async with dispatching(directory, "apns", apns_provider(standin, pem)) as push:
        (result,) = await push.dispatch([_ask([1])])
    assert result.outcome.verdict is Verdict.RETRY
    assert result.outcome.reason == "ServiceUnavailable"
    assert result.attempts == FAST.attempts
    times = [s.at for s in standin.requests if s.path.endswith(token)]
    assert len(times) == FAST.attempts
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Equal jitter: each wait is at least half of base * 2**(n-1).
    assert all(gap >= FAST.base_s * 2**n / 2 for n, gap in enumerate(gaps)), gaps
    assert await token_of(directory, 1) == token  # unavailable is not dead
    assert (
        sample("tidings_push_failed_total", provider="apns", reason="gave_up") == failed_before + 1
    )


async def test_apns_bad_request_is_not_retried(
    apns_device: ApnsDevice, directory: SqlDirectory
) -> None:
    standin, pem, token = apns_device
    async with dispatching(
        directory, "apns", apns_provider(standin, pem, topic="com.example.other")
    ) as push:
        (result,) = await push.dispatch([_ask([1])])
    assert result.outcome.verdict is Verdict.REJECTED
    assert result.outcome.reason == "TopicDisallowed"
    assert result.attempts == 1
    assert len(standin.requests) == 1
    assert await token_of(directory, 1) == token


async def test_apns_expired_provider_token_is_renewed(
    apns_device: ApnsDevice, directory: SqlDirectory
) -> None:
    standin, pem, token = apns_device
    standin.scripts.add(token, apns_error(403, "ExpiredProviderToken"))
    async with dispatching(directory, "apns", apns_provider(standin, pem)) as push:
        (result,) = await push.dispatch([_ask([1])])
    assert result.outcome.verdict is Verdict.SENT
    first, second = standin.requests
    assert first.headers["authorization"] != second.headers["authorization"]


async def test_apns_concurrency_is_limited_per_provider(directory: SqlDirectory) -> None:
    pem, public_key = p256_key_pem()
    standin = ApnsStandin(public_key, KEY_ID, TEAM_ID, TOPIC)
    standin.server.delay_s = 0.1
    tokens = [hex_token() for _ in range(8)]
    for device_id, token in enumerate(tokens, start=1):
        await add_device(directory, device_id, "apns", token)
    async with (
        standin,
        dispatching(directory, "apns", apns_provider(standin, pem), concurrency=3) as push,
    ):
        results = await push.dispatch([_ask(list(range(1, 9)))])
    assert [r.outcome.verdict for r in results] == [Verdict.SENT] * 8
    assert standin.server.max_in_flight == 3


async def test_a_burst_in_one_channel_is_one_push_per_device(
    apns_device: ApnsDevice, directory: SqlDirectory
) -> None:
    standin, pem, token = apns_device
    async with dispatching(directory, "apns", apns_provider(standin, pem)) as push:
        await push.dispatch([_ask([1], message(1000 + i)) for i in (3, 1, 2)])
    (seen,) = standin.accepted_for(token)
    assert seen.json()["tidings"]["message_id"] == "1003"  # the latest


# --- FCM ----------------------------------------------------------------------------------


async def _fcm(standin: FcmStandin, **overrides: Any) -> tuple[FcmProvider, dict[str, str]]:
    account, public_key = service_account(standin.token_uri, PROJECT)
    standin.accounts[account["client_email"]] = public_key
    provider = FcmProvider(
        ServiceAccount.from_json(json.dumps(account)),
        endpoint=standin.url,
        timeout_s=5,
        **overrides,
    )
    return provider, account


async def test_fcm_push_with_a_service_account_token(directory: SqlDirectory) -> None:
    token = "fcm-token-" + secrets.token_urlsafe(40)
    await add_device(directory, 1, "fcm", token)
    async with FcmStandin(PROJECT) as standin:
        provider, _ = await _fcm(standin)
        async with dispatching(directory, "fcm", provider) as push:
            await push.request(USER, [1], message(1001))
            await push.request(USER, [1], message(1002, channel_id="g:5"))
    assert standin.violations == []
    assert standin.exchanges() == 1, "the access token is cached"
    first, second = standin.accepted_for(token)
    assert first.http_version == "2"
    sent = first.json()["message"]
    assert sent["token"] == token
    assert sent["data"] == {"type": "msg", "channel_id": f"dm:7:{USER}", "message_id": "1001"}
    assert sent["android"] == {"priority": "high", "collapse_key": f"dm:7:{USER}"}
    assert sent["apns"]["headers"]["apns-collapse-id"] == f"dm:7:{USER}"
    assert "notification" not in sent
    assert b"secret words" not in first.body
    assert second.json()["message"]["android"]["collapse_key"] == "g:5"


async def test_fcm_access_token_is_refreshed_before_it_expires(directory: SqlDirectory) -> None:
    token = "fcm-" + secrets.token_urlsafe(20)
    await add_device(directory, 1, "fcm", token)
    async with FcmStandin(PROJECT, expires_in=2) as standin:
        provider, _ = await _fcm(standin)
        async with dispatching(directory, "fcm", provider) as push:
            await push.request(USER, [1], message(1001))
            await asyncio.sleep(1.2)  # past the refresh point (half of 2 s), before expiry
            await push.request(USER, [1], message(1002))
    assert standin.violations == []
    assert standin.exchanges() == 2
    assert standin.unauthorized == 0, "refreshed before expiry, not after a 401"
    assert len(standin.accepted_for(token)) == 2


async def test_fcm_revoked_access_token_is_fetched_again(directory: SqlDirectory) -> None:
    token = "fcm-" + secrets.token_urlsafe(20)
    await add_device(directory, 1, "fcm", token)
    async with FcmStandin(PROJECT) as standin:
        provider, _ = await _fcm(standin)
        async with dispatching(directory, "fcm", provider) as push:
            await push.request(USER, [1], message(1001))
            standin.issued.clear()  # Google forgot every token it gave out
            (result,) = await push.dispatch([_ask([1], message(1002))])
    assert result.outcome.verdict is Verdict.SENT
    assert standin.unauthorized == 1
    assert standin.exchanges() == 2


async def test_fcm_unregistered_token_is_removed(directory: SqlDirectory) -> None:
    dead = "fcm-" + secrets.token_urlsafe(20)
    await add_device(directory, 1, "fcm", dead)
    async with FcmStandin(PROJECT) as standin:
        standin.scripts.add(dead, fcm_error(404, "UNREGISTERED", "Requested entity was not found."))
        provider, _ = await _fcm(standin)
        pruned_before = sample("tidings_push_pruned_total", provider="fcm")
        async with dispatching(directory, "fcm", provider) as push:
            (result,) = await push.dispatch([_ask([1])])
    assert result.outcome.verdict is Verdict.DEAD_TOKEN
    assert result.outcome.reason == "UNREGISTERED"
    assert result.attempts == 1
    assert await token_of(directory, 1) is None
    assert sample("tidings_push_pruned_total", provider="fcm") == pruned_before + 1


async def test_fcm_429_and_503_are_retried(directory: SqlDirectory) -> None:
    token = "fcm-" + secrets.token_urlsafe(20)
    await add_device(directory, 1, "fcm", token)
    async with FcmStandin(PROJECT) as standin:
        standin.scripts.add(
            token,
            fcm_error(429, "QUOTA_EXCEEDED", "Quota exceeded.", **{"retry-after": "1"}),
            fcm_error(503, "UNAVAILABLE", "The service is currently unavailable."),
        )
        provider, _ = await _fcm(standin)
        async with dispatching(directory, "fcm", provider) as push:
            (result,) = await push.dispatch([_ask([1])])
    assert result.outcome.verdict is Verdict.SENT
    assert result.attempts == 3
    first, second, _ = standin.sends()
    assert second.at - first.at >= 1.0, "Retry-After: 1 not honoured"
    assert await token_of(directory, 1) == token


async def test_fcm_invalid_argument_is_not_retried(directory: SqlDirectory) -> None:
    token = "fcm-" + secrets.token_urlsafe(20)
    await add_device(directory, 1, "fcm", token)
    async with FcmStandin(PROJECT) as standin:
        standin.scripts.add(token, fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload"))
        provider, _ = await _fcm(standin)
        async with dispatching(directory, "fcm", provider) as push:
            (result,) = await push.dispatch([_ask([1])])
    assert result.outcome.verdict is Verdict.REJECTED
    assert result.attempts == 1
    assert await token_of(directory, 1) == token


async def test_fcm_refused_service_account_fails_without_sending(directory: SqlDirectory) -> None:
    token = "fcm-" + secrets.token_urlsafe(20)
    await add_device(directory, 1, "fcm", token)
    async with FcmStandin(PROJECT) as standin:
        provider, account = await _fcm(standin)
        _, other_key = service_account(standin.token_uri, PROJECT)
        standin.accounts[account["client_email"]] = other_key  # the key was rotated
        async with dispatching(directory, "fcm", provider) as push:
            (result,) = await push.dispatch([_ask([1])])
    assert result.outcome.verdict is Verdict.REJECTED
    assert "invalid_grant" in result.outcome.reason
    assert standin.sends() == []
    assert await token_of(directory, 1) == token


# --- webhook ------------------------------------------------------------------------------

SECRET = "webhook-secret-" + "x" * 20


async def test_webhook_is_signed_and_timestamped(directory: SqlDirectory) -> None:
    await add_device(directory, 1, "webhook", "https://up.example/ep/abc")
    async with (
        WebhookStandin(SECRET) as standin,
        dispatching(directory, "webhook", WebhookProvider(standin.url, SECRET)) as push,
    ):
        (result,) = await push.dispatch([_ask([1])])
    assert standin.violations == []
    assert result.outcome.verdict is Verdict.SENT
    (seen,) = standin.accepted
    assert seen.json() == {
        "token": "https://up.example/ep/abc",
        "user_id": str(USER),
        "device_id": "1",
        "channel_id": f"dm:7:{USER}",
        "message_id": "1001",
        "collapse_key": f"dm:7:{USER}",
    }
    assert abs(int(seen.headers["tidings-timestamp"]) - time.time()) < 5


async def test_webhook_relay_refuses_a_wrong_secret_and_a_replay(directory: SqlDirectory) -> None:
    await add_device(directory, 1, "webhook", "tok")
    async with WebhookStandin(SECRET) as standin:
        wrong_secret = WebhookProvider(standin.url, "not the secret")
        an_hour_ago = WebhookProvider(standin.url, SECRET, clock=lambda: time.time() - 3600)
        async with (
            dispatching(directory, "webhook", wrong_secret) as wrong,
            dispatching(directory, "webhook", an_hour_ago) as stale,
        ):
            (refused,) = await wrong.dispatch([_ask([1])])
            (replayed,) = await stale.dispatch([_ask([1])])
    assert standin.violations == ["bad signature", "timestamp outside the window (replay?)"]
    assert refused.outcome.verdict is Verdict.REJECTED
    assert replayed.outcome.verdict is Verdict.REJECTED
    assert standin.accepted == []


async def test_webhook_gone_prunes_and_503_retries(directory: SqlDirectory) -> None:
    await add_device(directory, 1, "webhook", "gone")
    await add_device(directory, 2, "webhook", "flaky")
    async with WebhookStandin(SECRET) as standin:
        standin.scripts.add("gone", Reply(410, {"error": "endpoint gone"}))
        standin.scripts.add("flaky", Reply(503, None), Reply(503, None))
        async with dispatching(directory, "webhook", WebhookProvider(standin.url, SECRET)) as push:
            results = {r.device_id: r for r in await push.dispatch([_ask([1, 2])])}
    assert results[1].outcome.verdict is Verdict.DEAD_TOKEN
    assert await token_of(directory, 1) is None
    assert results[2].outcome.verdict is Verdict.SENT
    assert results[2].attempts == 3
    assert await token_of(directory, 2) == "flaky"


# --- helpers ------------------------------------------------------------------------------


class _Ask:
    def __init__(self, device_ids: list[int], msg: Any) -> None:
        self.user_id = USER
        self.device_ids = device_ids
        self.message = msg


def _ask(device_ids: list[int], msg: Any = None) -> _Ask:
    return _Ask(device_ids, msg if msg is not None else message())


def test_the_standin_key_is_what_apple_issues() -> None:
    """The test key has the shape of a .p8 key: PKCS#8 PEM of a P-256 key."""
    pem, _ = p256_key_pem()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    key = load_signing_key(pem)
    token = ApnsTokenSigner(key, KEY_ID, TEAM_ID).token()
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
