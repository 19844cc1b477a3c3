"""The dispatcher with fake providers: routing, missing credentials, bugs, collapse."""

from __future__ import annotations

import pytest

from tidings.core.model import Message
from tidings.push.backoff import Backoff
from tidings.push.base import SENT, Outcome, Verdict
from tidings.push.config import build_providers
from tidings.push.dispatcher import PushDispatcher, collapse
from tidings.push.payload import Notification
from tidings.settings import Settings
from tidings.storage.sql.directory import SqlDirectory

from ..conftest import USER, add_device, msg


class FakeProvider:
    def __init__(self, name: str, *outcomes: Outcome) -> None:
        self.name = name
        self.outcomes = list(outcomes)
        self.sent: list[tuple[str, Notification]] = []
        self.closed = False

    async def send(self, token: str, notification: Notification) -> Outcome:
        self.sent.append((token, notification))
        return self.outcomes.pop(0) if self.outcomes else SENT

    async def close(self) -> None:
        self.closed = True


class Broken(FakeProvider):
    async def send(self, token: str, notification: Notification) -> Outcome:
        raise KeyError("a bug")


class Ask:
    def __init__(self, device_ids: list[int], message: Message) -> None:
        self.user_id = USER
        self.device_ids = device_ids
        self.message = message


@pytest.fixture
async def directory(directory: SqlDirectory) -> SqlDirectory:
    """The shared directory with one device per provider (20 to 22) and one without a token."""
    for device_id, provider in ((20, "apns"), (21, "fcm"), (22, "webhook")):
        await add_device(directory, device_id, provider, f"tok{device_id}")
    await directory.create_device(23, USER, "no token", None, 0)
    return directory


async def no_sleep(_: float) -> None:
    return None


async def test_each_device_goes_to_its_provider(directory: SqlDirectory) -> None:
    apns, fcm, hook = FakeProvider("apns"), FakeProvider("fcm"), FakeProvider("webhook")
    push = PushDispatcher(directory, {"apns": apns, "fcm": fcm, "webhook": hook})
    results = await push.dispatch([Ask([20, 21, 22, 23, 99], msg(1))])
    assert sorted((r.device_id, r.provider) for r in results) == [
        (20, "apns"),
        (21, "fcm"),
        (22, "webhook"),
    ]
    assert [t for t, _ in apns.sent] == ["tok20"]
    assert [t for t, _ in fcm.sent] == ["tok21"]
    assert [t for t, _ in hook.sent] == ["tok22"]
    await push.close()
    assert apns.closed and fcm.closed and hook.closed


async def test_a_provider_without_credentials_fails_the_push_not_the_process(
    directory: SqlDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    push = PushDispatcher(directory, {}, unavailable={"apns": "APNs is not configured: ..."})
    for message_id in (1, 2):
        (result, *_) = await push.dispatch([Ask([20], msg(message_id))])
        assert result.outcome.verdict is Verdict.REJECTED
        assert result.outcome.reason == "APNs is not configured: ..."
    warnings = [r for r in caplog.records if "APNs is not configured" in r.getMessage()]
    assert len(warnings) == 1, "logged once"


async def test_a_provider_bug_is_a_failed_push(directory: SqlDirectory) -> None:
    push = PushDispatcher(directory, {"apns": Broken("apns")})
    (result,) = await push.dispatch([Ask([20], msg(1))])
    assert result.outcome.verdict is Verdict.REJECTED
    assert result.outcome.reason == "error: KeyError"


async def test_retries_follow_the_policy_then_give_up(directory: SqlDirectory) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    apns = FakeProvider("apns", *[Outcome(Verdict.RETRY, "ServiceUnavailable", 503)] * 10)
    push = PushDispatcher(
        directory, {"apns": apns}, backoff=Backoff(3, 1.0, 30.0), sleep=sleep, rand=lambda: 0.0
    )
    (result,) = await push.dispatch([Ask([20], msg(1))])
    assert result.attempts == 3
    assert waits == [0.5, 1.0]
    assert await directory.get_device(20) is not None


async def test_dead_token_removed_only_if_unchanged(directory: SqlDirectory) -> None:
    apns = FakeProvider("apns", Outcome(Verdict.DEAD_TOKEN, "Unregistered", 410))
    push = PushDispatcher(directory, {"apns": apns}, sleep=no_sleep)
    await push.dispatch([Ask([20], msg(1))])
    device = await directory.get_device(20)
    assert device is not None and device.push_token is None


def test_collapse_keeps_the_latest_per_device_and_channel() -> None:
    latest, folded = collapse(
        [
            Ask([20, 21], msg(5)),
            Ask([20], msg(3)),
            Ask([20], msg(9, "g:1")),
            Ask([20, 20], msg(7)),
        ]
    )
    assert {k: m.message_id for k, m in latest.items()} == {
        (USER, 20, "dm:1:2"): 7,
        (USER, 21, "dm:1:2"): 5,
        (USER, 20, "g:1"): 9,
    }
    assert folded == 2


def test_build_providers_never_raises() -> None:
    providers, missing = build_providers(Settings(_env_file=None))
    assert providers == {}
    assert set(missing) == {"apns", "fcm", "webhook"}
    assert "TIDINGS_APNS_KEY_ID" in missing["apns"]


def test_unusable_credentials_are_reported() -> None:
    settings = Settings(
        _env_file=None,
        apns_key="-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
        apns_key_id="K",
        apns_team_id="T",
        apns_topic="x",
        fcm_service_account='{"client_email": "a@b"}',
        webhook_url="http://127.0.0.1:1/hook",
    )
    providers, missing = build_providers(settings)
    assert providers == {}
    assert "PEM" in missing["apns"]
    assert "private_key" in missing["fcm"]
    assert "TIDINGS_WEBHOOK_SECRET" in missing["webhook"]


async def test_a_one_line_apns_key_with_escaped_newlines_is_accepted() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    settings = Settings(
        _env_file=None,
        apns_key=pem.replace("\n", "\\n"),
        apns_key_id="K",
        apns_team_id="T",
        apns_topic="x",
    )
    providers, missing = build_providers(settings)
    try:
        assert set(providers) == {"apns"}
        assert "apns" not in missing
    finally:
        for provider in providers.values():
            await provider.close()
