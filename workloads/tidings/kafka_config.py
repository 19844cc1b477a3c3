"""What every Kafka client of the workloads shares: connection options and topic names.

A leaf module (it imports only the settings) so the bus, the membership records, the
push requests and the topic admin can all use it without importing each other.

Topic names are wire-level names: the operator creates the same topics and keeps its own
copy of these three functions on purpose, pinned equal by a test.
"""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from tidings.settings import Settings


def inbox_topic(prefix: str) -> str:
    """Inbox events, keyed by the recipient's user id; P partitions."""
    return f"{prefix}.inbox"


def members_topic(prefix: str) -> str:
    """Chat-server membership records, keyed by server id; compacted, one partition."""
    return f"{prefix}.members"


def push_topic(prefix: str) -> str:
    """Push requests for offline devices, keyed by user id."""
    return f"{prefix}.push"


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin).

    Connection, security (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL with PLAIN or SCRAM)
    and the request timeout, all from ``settings``.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.server_id,
        "request_timeout_ms": int(settings.kafka_request_timeout_s * 1000),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options
