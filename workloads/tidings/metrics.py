"""Prometheus metrics of the workloads (served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("tidings_connections", "Open WebSocket connections (authenticated or not)")
AUTHENTICATED = Gauge("tidings_connections_authenticated", "Connections past hello")
FRAMES_IN = Counter("tidings_frames_received_total", "Client frames received", ["type"])
ERRORS_SENT = Counter("tidings_errors_total", "error frames sent to clients", ["code"])
MESSAGES_SENT = Counter("tidings_messages_sent_total", "Messages stored and acked")
INBOX_APPENDS = Counter("tidings_inbox_appends_total", "Inbox entries appended")
DELIVERIES = Counter("tidings_deliveries_total", "msg frames written to devices")
SEND_TO_DELIVER = Histogram(
    "tidings_send_to_deliver_seconds",
    "From a message's server timestamp to its live delivery to a device",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PUSH_REQUESTS = Counter("tidings_push_requests_total", "Pushes asked for offline devices")
PRESENCE_CHANGES = Counter("tidings_presence_changes_total", "Presence transitions", ["status"])
SLOW_CONSUMERS = Counter("tidings_slow_consumers_total", "Connections dropped for backlog")
