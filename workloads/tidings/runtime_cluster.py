"""The cluster processes' runtimes: PostgreSQL, Cassandra and Kafka behind the same core.

- ``tidings api``: the HTTP API; answers login and ``/v1/discover`` from the membership
  view (the owner of the user's inbox partition).
- ``tidings chat``: the HTTP API too, plus the WebSocket gateway, the inbox consumer of
  the partitions the consumer group gives it, and its membership record.

A composition root beside :mod:`tidings.runtime` (the embedded one, whose ``assemble``
both share): the package :mod:`tidings.cluster` holds the parts a cluster runs on
(membership, ownership, topics), this module wires them to everything else.
"""

from __future__ import annotations

import asyncio
import logging

from tidings.bus.kafka import KafkaBus
from tidings.bus.partitioning import partition_for_user
from tidings.chat.message_log import BusMessageLog, SentCache, Tenure
from tidings.cluster.membership import MemberRecord, MembershipPublisher, MembershipView
from tidings.cluster.ownership import PartitionOwnership
from tidings.kafka_config import push_topic
from tidings.public_url import with_public_chat_url
from tidings.push.kafka import KafkaPushSink
from tidings.runtime import Runtime, add_media, assemble
from tidings.settings import Settings, SettingsError
from tidings.storage.cassandra.store import CassandraMessageStore
from tidings.storage.sql.directory_cache import CachedDirectory

log = logging.getLogger(__name__)


async def warm_directory(directory: CachedDirectory, settings: Settings) -> None:
    """Load devices and presence audiences into the cache in two reads, so the
    ``hello``s and ``/v1/discover``s that follow (a start, a failover, a drained peer's
    clients arriving) find them in memory instead of each waiting for a query."""
    try:
        devices = await directory.warm_devices(settings.directory_cache_users)
        audiences = await directory.warm_audiences(
            directory.warmed_users, settings.presence_fanout_limit
        )
        await directory.warm_blocks()
    except Exception:
        log.warning("warming the directory cache failed; reads fill it", exc_info=True)
        return
    log.info("directory cache warmed", extra={"devices": devices, "audiences": audiences})


def require_cluster_settings(settings: Settings, *, chat: bool) -> tuple[str, str]:
    """The JWT secret and the PostgreSQL url a cluster process needs (and, for a chat server, a
    public chat url that can be filled in); :class:`SettingsError` naming what is missing."""
    if not settings.jwt_secret:
        raise SettingsError(
            "TIDINGS_JWT_SECRET is not set: cluster processes share one signing secret "
            "(only `tidings up` generates one)"
        )
    if not settings.postgres_url:
        raise SettingsError("TIDINGS_POSTGRES_URL is not set (postgresql+asyncpg://...)")
    if chat and not settings.public_chat_url:
        raise SettingsError(
            "TIDINGS_PUBLIC_CHAT_URL is not set: a chat server must tell clients its own "
            "WebSocket URL (e.g. ws://chat-0.chat.ns.svc:8080/v1/ws)"
        )
    if chat:
        with_public_chat_url(settings)  # its placeholders can be filled in, or say why not
    return settings.jwt_secret, settings.postgres_url


async def open_api(settings: Settings) -> Runtime:
    """Open the parts of ``tidings api``: the cached directory, the Cassandra store, a publish-
    only Kafka bus, the membership view (to answer discover) and media."""
    secret, postgres_url = require_cluster_settings(settings, chat=False)
    directory = await CachedDirectory.from_settings(postgres_url, settings, migrate=False)
    await warm_directory(directory, settings)
    messages = await CassandraMessageStore.open(settings)
    bus = KafkaBus(settings)  # publish only: the API is in no consumer group
    await bus.start()
    view = MembershipView(settings)
    await view.start()
    ownership = PartitionOwnership(lambda _: False, lambda: bus.partition_count, view)
    runtime = assemble(
        settings,
        directory,
        messages,
        bus,
        secret,
        ownership,
        push=None,
        serve_websockets=False,
    )
    runtime.closers.insert(0, view.close)
    runtime.background.append(directory.run_refresher)  # others' writes, within the bound
    await add_media(runtime, embedded=False, secret=secret, sweep=True)
    return runtime


async def open_chat(settings: Settings) -> Runtime:
    """Open the parts of ``tidings chat``: those of the API plus the WebSocket gateway, the inbox
    consumer of the partitions it is given, its membership record and the push sink."""
    secret, postgres_url = require_cluster_settings(settings, chat=True)
    # Filled in once: the membership record, login, discover and redirects all say this.
    settings = with_public_chat_url(settings)
    assert settings.public_chat_url is not None
    directory = await CachedDirectory.from_settings(postgres_url, settings, migrate=False)
    await warm_directory(directory, settings)
    messages = await CassandraMessageStore.open(settings)
    messages.cache_heads()  # the single writer of its owned partitions' inboxes
    view = MembershipView(settings)
    await view.start()
    push = KafkaPushSink(settings)
    await push.start()
    holder: dict[str, Runtime] = {}
    publisher_ref: list[MembershipPublisher] = []

    owned_before: set[int] = set()
    buses: list[KafkaBus] = []
    # The partitions this server holds, with a term per tenure: a send publishes only if
    # its sender's partition is still held in the term it began in (chat/message_log.py).
    tenure = Tenure(lambda user_id: partition_for_user(user_id, buses[0].partition_count))
    sent_cache = SentCache(settings.sent_cache_size, settings.kafka_inbox_partitions)

    def new_tenure() -> None:
        """Ownership changes: heads cached for users another server may have appended to
        are stale, and which message ids are known new starts over."""
        messages.forget_heads()
        runtime = holder.get("runtime")
        if runtime is not None and runtime.inbox is not None:
            runtime.inbox.new_ids.restart()

    async def on_assigned(partitions: set[int]) -> None:
        new_tenure()
        # Dedupe entries of senders now elsewhere would go stale: forget them.
        sent_cache.forget(tenure.assigned(partitions))
        gained = partitions - owned_before
        had_partitions = bool(owned_before)  # not this server's first assignment
        owned_before.clear()
        owned_before.update(partitions)
        runtime = holder.get("runtime")
        if runtime is not None and runtime.gateway is not None:
            gateway = runtime.gateway
            gateway.release_unowned()
            if gained and had_partitions:
                # Users moved here (a peer drained or died): their hellos are coming.
                gateway.spawn(warm_directory(directory, settings))
            if gained:
                # Give the moved users half the presence window to come back first.
                delay = settings.presence_offline_after_s / 2

                async def announce_later() -> None:
                    await asyncio.sleep(delay)
                    await gateway.announce_orphans(gained)

                gateway.spawn(announce_later())
        for publisher in publisher_ref:
            publisher.poke()
        log.info("owning inbox partitions", extra={"partitions": sorted(partitions)})

    async def on_revoked(partitions: set[int]) -> None:
        new_tenure()
        tenure.revoked()  # sends write and publish again once we know what we hold
        # Eager rebalancing takes everything away before handing the new set out; the
        # consumer is paused meanwhile, so nothing is written for those users. Who
        # really moved is known in on_assigned, which sends only them away.
        for publisher in publisher_ref:
            publisher.poke()

    def sockets_by_partition() -> dict[int, int]:
        # Asked once per group join: in a rebalance this server keeps the partitions its
        # clients are on and gives up the emptiest (bus/_sticky.py).
        runtime = holder.get("runtime")
        if runtime is None or runtime.gateway is None:
            return {}
        return runtime.gateway.connections_by_partition()

    # The group's session timeout (kafka_session_timeout_s, read by the bus) bounds how
    # long a crashed server's partitions, and so its clients, wait for a new owner
    # (docs/architecture.md, "Failover").
    bus = KafkaBus(
        settings,
        group_id=f"{settings.kafka_topic_prefix}.chat",
        on_assigned=on_assigned,
        on_revoked=on_revoked,
        partition_weights=sockets_by_partition,
    )
    buses.append(bus)
    await bus.start()
    ownership = PartitionOwnership(bus.owns_partition, lambda: bus.partition_count, view)
    message_log = BusMessageLog(messages, bus, tenure=tenure, sent_cache=sent_cache)
    runtime = assemble(
        settings, directory, messages, bus, secret, ownership, push, message_log=message_log
    )
    holder["runtime"] = runtime
    gateway = runtime.gateway
    assert gateway is not None

    def snapshot() -> MemberRecord:
        return MemberRecord(
            server_id=settings.server_id,
            url=settings.public_chat_url or "",
            partitions=tuple(sorted(bus.owned_partitions())),
            connections=gateway.connection_count,
            draining=gateway.draining,
            partition_count=bus.partition_count,
            pod_uid=settings.pod_uid or "",
        )

    publisher = MembershipPublisher(settings, snapshot)
    await publisher.start()
    publisher_ref.append(publisher)

    async def announce_draining() -> None:
        gateway.draining = True
        await publisher.publish_now()

    async def leave_group() -> None:
        await bus.leave_group()
        # No new assignment follows: end every term, so sends waiting to publish answer
        # `unavailable` now (their devices resend to the new owners) instead of waiting.
        sent_cache.forget(tenure.assigned(set()))

    # On SIGTERM: say we are draining, hand the partitions over, then send clients away.
    runtime.drainers[:0] = [announce_draining, leave_group]
    # (assemble put the push sink behind the grace, whose close flushes and closes it)
    runtime.closers[:0] = [publisher.close, view.close]
    runtime.background.append(directory.run_refresher)  # others' writes, within the bound
    await add_media(runtime, embedded=False, secret=secret, sweep=False)  # sweeps: the API's
    log.info("push requests go to %s", push_topic(settings.kafka_topic_prefix))
    return runtime
