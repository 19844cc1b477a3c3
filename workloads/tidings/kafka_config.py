"""What every Kafka client of the workloads shares: connection options and topic names.

A leaf module (it imports only the settings and the wire names) so the bus, the
membership records, the push requests and the topic admin can all use it without
importing each other.

The topic names are :mod:`tidings.wire.topics`' (the operator creates the same topics
from there), re-exported here for the workloads' Kafka clients.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from tidings.settings import Settings, SettingsError
from tidings.wire.topics import inbox_topic, members_topic, push_topic

__all__ = [
    "inbox_topic",
    "kafka_client_options",
    "kafka_ssl_context",
    "members_topic",
    "push_topic",
]


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin).

    Connection, security (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL with PLAIN or SCRAM;
    TLS from :func:`kafka_ssl_context`) and the request timeout, all from ``settings``.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.server_id,
        "request_timeout_ms": int(settings.kafka_request_timeout_s * 1000),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = kafka_ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context for SSL and SASL_SSL: the brokers' certificates must chain to one
    of ``kafka_ssl_cafile`` (the system's CAs when unset) and name the broker's address
    (aiokafka always checks); ``kafka_ssl_certfile``/``kafka_ssl_keyfile`` are offered as
    the client's certificate (mutual TLS).

    A file that cannot be loaded is a :class:`SettingsError` naming the setting and the
    file, raised when the first client is built (at start).
    """
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"TIDINGS_KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile}: cannot load CA "
            f"certificates from it: {exc}"
        ) from exc
    if settings.kafka_ssl_certfile:
        try:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"TIDINGS_KAFKA_SSL_CERTFILE={settings.kafka_ssl_certfile}, "
                f"TIDINGS_KAFKA_SSL_KEYFILE={settings.kafka_ssl_keyfile}: cannot load the "
                f"client certificate and its key: {exc}"
            ) from exc
    return context
