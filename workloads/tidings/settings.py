"""Settings for every process, from the environment (prefix ``TIDINGS_``) and flags.

One :class:`Settings` is built in ``main()`` and passed down; none is made at import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(Exception):
    """The settings cannot work; the message says which one to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="ignore")

    # Where to listen (tidings up / api / chat).
    host: str = "127.0.0.1"
    port: int = 8080
    # The WebSocket URL clients are told to use; derived from the request when unset. It
    # may hold placeholders, filled in once at start (public_url.py): {ordinal} (worker_id,
    # a chat pod's StatefulSet ordinal), {pod} (server_id), {hostIP} (host_ip) and
    # {nodePort} (public_node_port_base + ordinal).
    public_chat_url: str | None = None
    server_id: str = "tidings-0"
    # The pod's uid (the operator sets it from the downward API); in the membership record.
    pod_uid: str | None = None
    worker_id: int = Field(0, ge=0, le=1023)
    # The node's address (the operator fills it from the downward API, status.hostIP) and
    # the first of a range of node ports, one per chat server: for {hostIP} and {nodePort}.
    host_ip: str | None = None
    public_node_port_base: int | None = Field(None, ge=1, le=65535)
    # TLS on the public port (HTTPS and WSS; the metrics port stays plain HTTP): a PEM
    # certificate chain and its private key, both or neither. The files are read again
    # every tls_reload_every_s and a changed, valid pair is served to new connections
    # (tls.py; docs/security.md, "TLS").
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_reload_every_s: float = Field(10.0, gt=0)
    # Prometheus text on http://<metrics_host>:<metrics_port>/metrics, a port of its own
    # (never the public one); unset: no metrics endpoint at all. Loopback unless told
    # otherwise; in a pod the operator sets 0.0.0.0 and 9464.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(None, ge=1, le=65535)

    # Embedded storage.
    data_dir: Path = Path("tidings-data")
    sqlite_synchronous: str = Field("FULL", pattern="^(FULL|NORMAL|EXTRA)$")
    # Tests only (fault injection): SIGKILL the process before the COMMIT of the batch in
    # which the message store has run this many operations. Never set it in production.
    fault_kill_before_commit_after: int | None = Field(None, ge=1)

    # The event loop: uvloop where it is installed ("auto"), or asyncio's own.
    event_loop: str = Field("auto", pattern="^(auto|uvloop|asyncio)$")

    # Auth: HS256 signing secret for access tokens; `tidings up` generates one if unset.
    jwt_secret: str | None = None
    # Earlier signing secrets, still accepted (each at least 32 bytes): tokens they signed
    # keep working until they expire. Env: comma-separated (or a JSON list). Rotating is
    # moving jwt_secret here and setting a new one (docs/security.md, "Tokens").
    jwt_previous_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    token_ttl_s: int = Field(30 * 24 * 3600, gt=0)
    # argon2 cost; the defaults are argon2-cffi's (RFC 9106 low-memory profile).
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65536, ge=8)
    # At most this many hashes/verifies run at once (each holds argon2_memory_kib), this
    # many more wait; the rest of a login flood is answered 503 with Retry-After.
    argon2_workers: int = Field(2, ge=1)
    argon2_waiting: int = Field(64, ge=0)
    # Failed logins (wrong password or unknown user) per account and per source address:
    # this many at once, then one more every *_every_s; while either is used up every
    # login of that account or from that address gets 429 rate_limited (core/login_throttle.py).
    login_failures_per_account: int = Field(10, ge=1)
    login_failure_account_every_s: float = Field(60.0, gt=0)
    login_failures_per_address: int = Field(100, ge=1)
    login_failure_address_every_s: float = Field(1.0, gt=0)

    # Presence (seconds).
    heartbeat_s: int = Field(5, ge=1)
    presence_offline_after_s: float = Field(30.0, gt=0)
    presence_fanout_limit: int = Field(1000, ge=0)
    # A cluster stores "online" as a lease its chat server renews; if the server dies
    # the lease lapses and its users read as offline.
    presence_lease_s: int = Field(60, ge=3)
    hello_timeout_s: float = Field(10.0, gt=0)
    sweep_interval_s: float = Field(1.0, gt=0)

    # /docs, /redoc and /openapi.json on the API port (off: docs/security.md).
    api_docs: bool = False
    # HTTP: a request's head must arrive within http_head_timeout_s (slowloris, silent
    # sockets); a keep-alive connection idle for http_idle_timeout_s is closed.
    http_head_timeout_s: float = Field(10.0, gt=0)
    http_idle_timeout_s: float = Field(5.0, gt=0)
    # A request body over this is refused (413 payload_too_large) before it is parsed.
    max_body_bytes: int = Field(1 << 20, ge=1024)

    # Limits.
    max_frame_bytes: int = 1 << 20
    # Sends per user (all its sockets on the server together).
    rate_limit_per_s: float = Field(20.0, gt=0)
    rate_limit_burst: float = Field(40.0, ge=1)
    # A message to a group also costs this many tokens of that bucket per recipient beyond
    # a 1:1's two inboxes: at the defaults a message to 100 members costs 10.8, so one
    # sender reaches at most ~1,900 inboxes a second (a 1:1 sender ~40). 0: off.
    send_cost_per_recipient: float = Field(0.1, ge=0)
    # How long after sending a message its sender may edit it, or delete it for everyone
    # (docs/protocol.md, "Everyday messaging"; WhatsApp's are about the same).
    edit_window_s: int = Field(900, ge=0)
    delete_window_s: int = Field(172_800, ge=0)
    # A device's sockets at once; a new hello closes the oldest beyond this (4011).
    max_sockets_per_device: int = Field(2, ge=1)
    max_write_buffer_bytes: int = 4 << 20
    # Per user, shared by every API process (counted in the directory): devices at once,
    # and actions per sliding hour; more get 409 too_many_devices / 429 rate_limited.
    max_devices_per_user: int = Field(10, ge=1)
    groups_per_hour: int = Field(20, ge=1)
    friend_requests_per_hour: int = Field(50, ge=1)
    # Invitations of people who are not the inviter's friends (a group of 100 strangers
    # takes 99), per sliding hour.
    group_invites_per_hour: int = Field(200, ge=1)
    # Username look-ups, and profile look-ups that find nobody (enumeration), per hour.
    user_lookups_per_hour: int = Field(100, ge=1)
    # End-to-end encryption's key directory: uploads per user, and bundle claims (each
    # uses up a peer device's one-time prekey: a flood would drain them) per user.
    key_uploads_per_hour: int = Field(60, ge=1)
    key_claims_per_hour: int = Field(1000, ge=1)
    # How often a chat server writes when its devices were last seen (a batch).
    device_last_seen_every_s: float = Field(60.0, gt=0)
    # Admission control: while the event loop runs later than this (ms, smoothed) or this
    # many hellos are being answered, new hellos and /v1/discover are told to come back
    # later (reconnect{after_ms} with jitter) instead of queueing. max_hellos 0 admits no
    # new client at all (shedding a server by hand).
    admission_max_lag_ms: float = Field(250.0, gt=0)
    admission_max_hellos: int = Field(256, ge=0)

    # Drain: clients are told to reconnect after a jittered delay within this budget.
    drain_budget_s: float = Field(10.0, ge=0)
    # `tidings up` is the only server, so its drain is a restart: every client is told at
    # once to come back after a delay drawn evenly from this window (seconds after the
    # SIGTERM), which starts about when the next process listens and spreads the
    # hellos over the rest. (A chat server in a cluster paces its drain instead.)
    restart_reconnect_min_s: float = Field(1.0, ge=0)
    restart_reconnect_max_s: float = Field(4.0, ge=0)
    # A chat server among peers spreads its drained clients over as long as the peers
    # need to admit them at this rate (hellos per second), at least drain_min_spread_s
    # and at most half the drain budget: 10,000 clients at 2,000/s take 5 s, one takes
    # 0.5 s (not a fixed fraction of the budget).
    drain_admit_per_s: float = Field(2000.0, gt=0)
    drain_min_spread_s: float = Field(0.5, ge=0)
    # Devices that reconnect within this grace get no push.
    push_grace_s: float = Field(5.0, ge=0)

    # --- push notifications (tidings up / push; docs/push.md) -----------------------
    # Put a preview of the body in the notification (off: channel and message ids only,
    # which suits end-to-end encryption); previews are cut to push_preview_chars.
    push_preview: bool = False
    push_preview_chars: int = Field(100, ge=1, le=1000)
    # In-flight requests per provider; attempts per push (1 = no retry) and their backoff.
    push_concurrency: int = Field(64, ge=1)
    push_retry_attempts: int = Field(5, ge=1)
    push_retry_base_s: float = Field(0.5, gt=0)
    push_retry_max_s: float = Field(30.0, gt=0)
    push_timeout_s: float = Field(10.0, gt=0)
    # `tidings push` drops requests older than this (a worker back after an outage).
    push_max_age_s: float = Field(3600.0, gt=0)
    # APNs token auth: the .p8 signing key (a file, or the PEM itself), its key id, the
    # team id and the app's bundle id (apns-topic).
    apns_key_file: Path | None = None
    apns_key: SecretStr | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    apns_use_sandbox: bool = False
    apns_push_type: str = Field("alert", pattern="^(alert|background)$")
    # Overrides the production/sandbox endpoint (tests point it at a stand-in).
    apns_endpoint: str | None = None
    # FCM HTTP v1: the service-account JSON (a file, or the JSON itself).
    fcm_service_account_file: Path | None = None
    fcm_service_account: SecretStr | None = None
    fcm_project_id: str | None = None  # default: the service account's project_id
    fcm_token_uri: str | None = None  # default: the service account's token_uri
    fcm_endpoint: str = "https://fcm.googleapis.com"
    # A signed webhook (HMAC-SHA256) to a self-hosted relay such as UnifiedPush.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None

    # --- cluster backends (tidings api / chat / push / migrate) ---------------------
    # PostgreSQL for the Directory (SQLAlchemy URL, e.g. postgresql+asyncpg://u:p@h/db).
    postgres_url: str | None = None
    # Cassandra for the MessageStore.
    cassandra_contact_points: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    cassandra_port: int = 9042
    cassandra_keyspace: str = "tidings"
    cassandra_username: str | None = None
    cassandra_password: str | None = None
    cassandra_local_dc: str | None = None
    cassandra_consistency: str = "LOCAL_QUORUM"
    cassandra_request_timeout_s: float = Field(10.0, gt=0)
    # v4: the highest the message store's C++ driver speaks (v5 is beta there).
    cassandra_protocol_version: int = Field(4, ge=3, le=4)
    # Speculative execution (storage/cassandra/io.py): when a request has had no answer
    # after this many ms, the driver asks the next replica too (at most once more). Every
    # statement of the store is idempotent, so a duplicate is harmless; 0 (the default)
    # is off: on a saturated cluster it doubles the load of exactly the slow requests.
    cassandra_speculative_delay_ms: int = Field(0, ge=0)
    # Replication for `tidings migrate` when it creates the keyspace (CQL map literal).
    cassandra_replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    # TLS to Cassandra, both drivers (docs/security.md, "TLS to Kafka and Cassandra"): the
    # nodes' certificates are checked against cassandra_ssl_cafile, a PEM bundle (every
    # certificate in it is trusted), which TLS needs: the message store's C++ driver
    # never reads the system's CAs. With cassandra_ssl_verify_hostname each node's
    # certificate must also name the address the client connects to; nodes are found by
    # IP address, so that takes IP SANs, and it is off by default (the chain is always
    # checked). The C++ driver speaks TLS 1.2 at most.
    cassandra_ssl: bool = False
    cassandra_ssl_cafile: str | None = None
    cassandra_ssl_verify_hostname: bool = False
    # Kafka for the inbox bus, membership and push requests.
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = "tidings"
    kafka_inbox_partitions: int = Field(64, ge=1)
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_security_protocol: str = Field(
        "PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$"
    )
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    # TLS to Kafka (kafka_security_protocol SSL or SASL_SSL): the brokers' certificates
    # are checked against kafka_ssl_cafile (PEM, every certificate in it trusted; unset:
    # the system's CAs) and must name the broker's address. kafka_ssl_certfile and
    # kafka_ssl_keyfile: a client certificate and its key (PEM) for mutual TLS, e.g. a
    # Strimzi KafkaUser's user.crt and user.key (the key may also sit in the certfile).
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_request_timeout_s: float = Field(30.0, gt=0)
    # The inbox producer (bus/kafka.py): how long a batch may wait for more records, the
    # batch size per partition, and the codec ("lz4", "zstd", "snappy" need the cramjam
    # package, a dependency; "gzip" costs too much CPU for ~400-byte events; "none").
    kafka_linger_ms: int = Field(2, ge=0)
    kafka_max_batch_bytes: int = Field(256 * 1024, ge=1024)
    kafka_compression: str = Field("lz4", pattern="^(none|lz4|zstd|snappy|gzip)$")
    # The inbox consumer (bus/kafka.py): offsets are committed at most this often (a
    # commit is a broker round trip; what a crash leaves uncommitted is redelivered and
    # skipped by the inbox appends), and a fetch waits up to kafka_fetch_wait_ms for
    # kafka_fetch_min_bytes to gather (fewer, fuller fetches under load).
    kafka_commit_interval_ms: int = Field(200, ge=0)
    kafka_fetch_wait_ms: int = Field(5, ge=0)
    kafka_fetch_min_bytes: int = Field(4096, ge=1)
    # The chat servers' inbox consumer group (docs/architecture.md, "Failover"): a chat
    # server that stops heartbeating for kafka_session_timeout_s is dropped from the
    # group and its partitions move, so this bounds failover after a crash; too short
    # and a stalled (not dead) server loses its partitions and its clients. The broker
    # refuses a session below its group.min.session.timeout.ms (6000 by default), so 6
    # works with any stock broker. Heartbeats go every kafka_heartbeat_interval_s, at
    # most a third of the session (a member then misses two before it is dropped).
    kafka_session_timeout_s: float = Field(6.0, gt=0)
    kafka_heartbeat_interval_s: float = Field(1.0, gt=0)
    # Dedupe of sends on a chat server (chat/message_log.py): the recent (sender,
    # client_msg_id) kept in memory; a resend beyond it costs one read.
    sent_cache_size: int = Field(200_000, ge=0)
    # Membership records: how often a chat server publishes, when a record is stale. A
    # SIGKILLed server's record is stale within the TTL; keep the TTL at most the Kafka
    # session (above) so discovery stops naming a dead server before its partitions
    # move, and a few intervals long so a live server's late publish is not taken for
    # its death.
    membership_interval_s: float = Field(1.0, gt=0)
    membership_ttl_s: float = Field(3.0, gt=0)
    # The directory cache in front of the Directory (storage/sql/directory_cache.py): entries
    # kept per cache (users, devices, device lists and presence audiences by user;
    # channels and known DMs by channel), how often each process reads the change log of
    # the others' writes (a write is seen everywhere within this plus one query), and how
    # long change rows are kept (a process away longer flushes its whole cache).
    directory_cache_users: int = Field(200_000, ge=1)
    directory_cache_channels: int = Field(100_000, ge=1)
    directory_cache_refresh_s: float = Field(0.5, gt=0)
    directory_change_retention_s: float = Field(3600.0, gt=0)
    # A write that changes a group's members, friends or push tokens returns once every
    # other process's cache has applied it (so the next send already fans out to a new
    # member), waiting at most this long; 0 returns at once (seen within the bound above).
    directory_write_confirm_s: float = Field(5.0, ge=0)

    # --- media (docs/media.md) ---------------------------------------------------------
    # Where attachments' bytes live: "local" (under media_dir, default <data_dir>/media;
    # uploads and downloads through HMAC-signed routes on the public port: one process
    # only), "s3" (any S3-compatible store), "none" (media endpoints answer 503), or
    # "auto": s3 when media_s3_bucket is set, else local for `tidings up`, else none.
    media_store: str = Field("auto", pattern="^(auto|local|s3|none)$")
    media_dir: Path | None = None
    # Signs the local store's URLs; derived from the JWT secret when unset.
    media_url_secret: SecretStr | None = None
    # S3: the endpoint this process reaches (unset: AWS), the one clients reach (the
    # presigned URLs name it; unset: the same), bucket, region, credentials (unset: the
    # usual AWS chain) and addressing ("path" for SeaweedFS, MinIO and in-cluster names).
    media_s3_endpoint: str | None = None
    media_s3_public_endpoint: str | None = None
    media_s3_bucket: str | None = None
    media_s3_region: str = "us-east-1"
    media_s3_access_key_id: str | None = None
    media_s3_secret_access_key: SecretStr | None = None
    media_s3_addressing_style: str = Field("path", pattern="^(path|virtual|auto)$")
    # Caps per kind (bytes), checked when the slot is made and again on completion.
    media_max_image_bytes: int = Field(16 << 20, ge=1)
    media_max_video_bytes: int = Field(100 << 20, ge=1)
    media_max_audio_bytes: int = Field(16 << 20, ge=1)
    media_max_file_bytes: int = Field(100 << 20, ge=1)
    # Above media_multipart_threshold an upload is multipart, in parts of
    # media_part_size (S3 refuses parts under 5 MiB but the last).
    media_part_size: int = Field(8 << 20, ge=5 << 20)
    media_multipart_threshold: int = Field(16 << 20, ge=1)
    # How long an upload URL and a download URL are valid.
    media_upload_ttl_s: float = Field(3600.0, gt=0)
    media_download_ttl_s: float = Field(300.0, gt=0)
    # An upload no message refers to is deleted this long after its slot was made; the
    # sweeper looks every media_sweep_every_s.
    media_unreferenced_ttl_s: float = Field(86_400.0, gt=0)
    media_sweep_every_s: float = Field(600.0, gt=0)
    # Per user: upload slots and MiB an hour, and bytes stored in all.
    media_uploads_per_hour: int = Field(100, ge=1)
    media_mib_per_hour: int = Field(2048, ge=1)
    media_quota_bytes: int = Field(20 << 30, ge=1)

    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("jwt_previous_secrets", mode="before")
    @classmethod
    def _split_previous_secrets(cls, value: object) -> object:
        """``TIDINGS_JWT_PREVIOUS_SECRETS=a,b`` (secrets are base64 or hex: no commas) or a
        JSON list; blanks are dropped, so an empty variable means none."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list | tuple):
            items = [item.strip() if isinstance(item, str) else item for item in value]
            return [item for item in items if item != ""]
        return value

    @model_validator(mode="after")
    def _check_tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given, missing = (
                ("TIDINGS_TLS_CERT_FILE", "TIDINGS_TLS_KEY_FILE")
                if self.tls_key_file is None
                else ("TIDINGS_TLS_KEY_FILE", "TIDINGS_TLS_CERT_FILE")
            )
            raise ValueError(
                f"{given} is set but {missing} is not: TLS needs both the certificate "
                "and its private key (or neither, for plain HTTP)"
            )
        return self

    @model_validator(mode="after")
    def _check_backend_tls(self) -> Settings:
        kafka_files = [
            name
            for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
            if getattr(self, name)
        ]
        if kafka_files and self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                f"TIDINGS_{kafka_files[0].upper()} is set but TIDINGS_KAFKA_SECURITY_PROTOCOL "
                f"is {self.kafka_security_protocol}, which does not use TLS: set it to SSL "
                "(or SASL_SSL)"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError(
                "TIDINGS_KAFKA_SSL_KEYFILE is set but TIDINGS_KAFKA_SSL_CERTFILE is not: a "
                "client key needs its certificate"
            )
        if not self.cassandra_ssl:
            for name in ("cassandra_ssl_cafile", "cassandra_ssl_verify_hostname"):
                if getattr(self, name):
                    raise ValueError(
                        f"TIDINGS_{name.upper()} is set but TIDINGS_CASSANDRA_SSL is not: set "
                        "TIDINGS_CASSANDRA_SSL=true for TLS to Cassandra"
                    )
        elif not self.cassandra_ssl_cafile:
            raise ValueError(
                "TIDINGS_CASSANDRA_SSL needs TIDINGS_CASSANDRA_SSL_CAFILE, the CA certificates "
                "(PEM) that signed the nodes' certificates (the C++ driver does not read the "
                "system's CAs; for a publicly signed server, name the system bundle, e.g. "
                "/etc/ssl/certs/ca-certificates.crt)"
            )
        return self

    @model_validator(mode="after")
    def _check_group_timing(self) -> Settings:
        if self.kafka_heartbeat_interval_s * 3 > self.kafka_session_timeout_s:
            raise ValueError(
                f"kafka_heartbeat_interval_s ({self.kafka_heartbeat_interval_s}) must be at "
                f"most a third of kafka_session_timeout_s ({self.kafka_session_timeout_s}): "
                "a member must be able to miss a heartbeat without being dropped from the group"
            )
        return self

    def drain_spread_s(self, clients: int) -> float:
        """How long a chat server among peers spreads the reconnects of ``clients``."""
        needed = clients / self.drain_admit_per_s
        return min(max(needed, self.drain_min_spread_s), self.drain_budget_s / 2)

    @property
    def restart_reconnect_window_ms(self) -> tuple[int, int]:
        """``restart_reconnect_min_s``..``max_s`` in milliseconds (in order, whichever way
        round they were given)."""
        low, high = sorted((self.restart_reconnect_min_s, self.restart_reconnect_max_s))
        return int(low * 1000), int(high * 1000)
