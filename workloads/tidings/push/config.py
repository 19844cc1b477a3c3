"""The providers the settings give credentials for, and why the others are missing."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import SecretStr

from tidings.push.apns import PRODUCTION, SANDBOX, ApnsProvider, ApnsTokenSigner, load_signing_key
from tidings.push.base import Provider
from tidings.push.exceptions import CredentialsError
from tidings.push.fcm import FcmProvider, ServiceAccount
from tidings.push.webhook import WebhookProvider
from tidings.settings import Settings

log = logging.getLogger(__name__)

PROVIDERS = ("apns", "fcm", "webhook")


def _secret(inline: SecretStr | None, path: Path | None, what: str) -> str | None:
    if inline is not None and inline.get_secret_value().strip():
        return inline.get_secret_value()
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as exc:
        raise CredentialsError(f"cannot read {what} from {path}: {exc}") from exc


def _apns(settings: Settings) -> ApnsProvider:
    pem = _secret(settings.apns_key, settings.apns_key_file, "the APNs key")
    missing = [
        name
        for name, value in (
            ("TIDINGS_APNS_KEY_FILE or TIDINGS_APNS_KEY", pem),
            ("TIDINGS_APNS_KEY_ID", settings.apns_key_id),
            ("TIDINGS_APNS_TEAM_ID", settings.apns_team_id),
            ("TIDINGS_APNS_TOPIC", settings.apns_topic),
        )
        if not value
    ]
    if missing:
        raise CredentialsError(f"APNs is not configured: {', '.join(missing)} not set")
    assert pem and settings.apns_key_id and settings.apns_team_id and settings.apns_topic
    if "\n" not in pem and "\\n" in pem:  # a PEM squeezed onto one line with \n escapes
        pem = pem.replace("\\n", "\n")
    signer = ApnsTokenSigner(load_signing_key(pem), settings.apns_key_id, settings.apns_team_id)
    endpoint = settings.apns_endpoint or (SANDBOX if settings.apns_use_sandbox else PRODUCTION)
    return ApnsProvider(
        signer,
        settings.apns_topic,
        endpoint=endpoint,
        push_type=settings.apns_push_type,
        timeout_s=settings.push_timeout_s,
    )


def _fcm(settings: Settings) -> FcmProvider:
    text = _secret(
        settings.fcm_service_account, settings.fcm_service_account_file, "the service account"
    )
    if not text:
        raise CredentialsError(
            "FCM is not configured: TIDINGS_FCM_SERVICE_ACCOUNT_FILE or "
            "TIDINGS_FCM_SERVICE_ACCOUNT not set"
        )
    return FcmProvider(
        ServiceAccount.from_json(text),
        project_id=settings.fcm_project_id,
        token_uri=settings.fcm_token_uri,
        endpoint=settings.fcm_endpoint,
        timeout_s=settings.push_timeout_s,
    )


def _webhook(settings: Settings) -> WebhookProvider:
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not settings.webhook_url or not secret:
        raise CredentialsError(
            "the webhook is not configured: TIDINGS_WEBHOOK_URL and TIDINGS_WEBHOOK_SECRET "
            "are both needed"
        )
    return WebhookProvider(settings.webhook_url, secret, timeout_s=settings.push_timeout_s)


def build_providers(settings: Settings) -> tuple[dict[str, Provider], dict[str, str]]:
    """The usable providers by name, and for the others the reason they are unusable.

    Never raises: a provider without (usable) credentials is left out, with its reason,
    and pushes to its devices are counted as failed (``not_configured``).
    """
    providers: dict[str, Provider] = {}
    missing: dict[str, str] = {}
    for name, build in (("apns", _apns), ("fcm", _fcm), ("webhook", _webhook)):
        try:
            providers[name] = build(settings)
        except CredentialsError as exc:
            missing[name] = str(exc)
            log.info("push provider %s unavailable: %s", name, exc)
    if providers:
        log.info("push providers ready", extra={"providers": sorted(providers)})
    return providers, missing
