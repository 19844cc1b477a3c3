"""Prometheus metrics of the workloads, served on a metrics port of their own.

:func:`serve_metrics` serves them on ``http://<metrics_host>:<metrics_port>/metrics`` when
``TIDINGS_METRICS_PORT`` is set; the public API/WebSocket port never serves them
(docs/security.md).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

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
SENDS_MOVED = Counter(
    "tidings_sends_moved_total",
    "sends left unanswered because the sender's partition moved (the device resends them)",
)
INBOX_LAG = Gauge(
    "tidings_inbox_consumer_lag",
    "Inbox records this chat server has not handled yet, over its partitions (the brokers' "
    "end minus what it handled, as of its last fetch; 0 when caught up)",
)
LOOP_LAG = Gauge("tidings_event_loop_lag_seconds", "How late the event loop runs (smoothed)")
ADMISSION_REFUSED = Counter(
    "tidings_admission_refused_total", "hellos and discovers told to come back later (saturated)"
)
STORE_BATCH_SIZE = Histogram(
    "tidings_store_batch_operations",
    "Operations per group commit of the embedded store",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
STORE_COMMIT_SECONDS = Histogram(
    "tidings_store_batch_seconds",
    "One group commit of the embedded store: its statements, COMMIT and fsync",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
HELLO_SECONDS = Histogram(
    "tidings_hello_seconds",
    "From hello received to welcome and the catch-up sent",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

# Push notifications (tidings up and tidings push; docs/push.md).
PUSH_SUPPRESSED = Counter(
    "tidings_push_suppressed_total", "Pushes not sent: the device reconnected within the grace"
)
PUSH_COLLAPSED = Counter(
    "tidings_push_collapsed_total", "Pushes folded into a pending one (same device and channel)"
)
PUSH_SENT = Counter("tidings_push_sent_total", "Notifications a provider accepted", ["provider"])
PUSH_FAILED = Counter(
    "tidings_push_failed_total", "Notifications given up on, by reason", ["provider", "reason"]
)
PUSH_PRUNED = Counter(
    "tidings_push_pruned_total", "Push tokens removed because the provider said dead", ["provider"]
)
PUSH_RETRIES = Counter("tidings_push_retries_total", "Attempts made again", ["provider"])
PUSH_LATENCY = Histogram(
    "tidings_push_latency_seconds",
    "Round trip of one request to a push provider",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# The directory cache (storage/sql/directory_cache.py): one count per lookup.
DIRECTORY_CACHE = Counter(
    "tidings_directory_cache_total", "Directory cache lookups", ["cache", "result"]
)

# TLS on the public port (tls.py): certificate reloads, and when the one served expires.
TLS_RELOADS = Counter(
    "tidings_tls_reloads_total",
    "Changed certificate/key files: loaded (ok) or refused, the old certificate kept (failed)",
    ["result"],
)
TLS_CERT_NOT_AFTER = Gauge(
    "tidings_tls_certificate_not_after_seconds",
    "notAfter of the certificate served to new connections, in seconds since the epoch",
)


def serve_metrics(host: str, port: int | None) -> bool:
    """Serve the registry as Prometheus text on ``http://host:port/metrics``; nothing when
    ``port`` is None (the default: no metrics endpoint at all).

    prometheus_client's own server, on a daemon thread: a scrape never runs on the event
    loop, and between scrapes the thread only polls its socket (twice a second). A port
    that cannot be bound raises (OSError), like the public port: a misconfigured process
    fails at start.
    """
    if port is None:
        return False
    start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return True


MEDIA_UPLOADS = Counter(
    "tidings_media_uploads_total",
    "Media uploads by outcome (created, ready, or the code that refused one)",
    ["outcome"],
)
MEDIA_BYTES = Counter("tidings_media_bytes_total", "Bytes of media uploads completed")
MEDIA_SWEPT = Counter(
    "tidings_media_swept_total", "Uploads deleted because no message referred to them in time"
)
