"""What the handlers do: compare, apply, report — the decisions are in the pure modules.

Two entry points per ChatCluster:

- :meth:`Reconciler.reconcile` on create, on spec change and when the operator starts:
  check the spec, the Secrets it names, wire Kafka and Cassandra, and the media bucket
  with ``spec.media.s3.createBucket`` (only when their part of the spec changed since the
  last success), then :meth:`sync`. It raises
  ``kopf.TemporaryError`` (with backoff) while an engine or a Secret is missing and
  ``kopf.PermanentError`` when the spec cannot work, after writing a condition that says
  so.
- :meth:`Reconciler.sync` every tick (:meth:`Reconciler.run_ticks`) and after each
  reconcile: read the
  ChatCluster, its children and the chat servers' membership records; decide the size
  (:mod:`~tidings_operator.autoscale`), the next rollout step
  (:mod:`~tidings_operator.rollout`) and what was lost (:mod:`~tidings_operator.disruption`);
  apply the children with server-side apply; write the status.

Everything a decision needs between two looks that must survive an operator restart is
in the status (the replacement in flight, the last disruption); the rest (the scale
history, the pods seen last time, the membership reader) lives in a :class:`ClusterState`
per ChatCluster. One lock per ChatCluster orders the status writes.

The ticks are the operator's own loop, not a kopf timer: kopf puts a finalizer on every
object that has a timer or daemon, so a ChatCluster (and its namespace) could not be
deleted while the operator is down. Nothing here needs finalizing — the children go with
their owner references, and the topics and keyspace are kept on purpose — so the
ChatClusters carry no finalizer, and the loop ticks those the watch has seen
(:meth:`Reconciler.track`, :meth:`Reconciler.forget`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from tidings_operator import metrics, names
from tidings_operator.autoscale import (
    Recommendation,
    ScaleDecision,
    clients_back,
    decide,
    manual_replicas,
)
from tidings_operator.builders import Owner, build_all, termination_grace_seconds
from tidings_operator.children import Departures, Indexes
from tidings_operator.conflicts import Claimant, conflict, postgres_database
from tidings_operator.controls import (
    drain_requested,
    newly_paused,
    pause_verdicts,
    paused,
    restart_requested,
)
from tidings_operator.disruption import Disruption, PodSeen, lost_pods, progress, start
from tidings_operator.engine_tls import kafka_protocol_problem
from tidings_operator.expose import PRUNED_KINDS, certificate_name, expose_selector
from tidings_operator.kube import KINDS, Kube, KubeError
from tidings_operator.media import ensure_bucket
from tidings_operator.members import Member, MembershipReader, current_members, first_reached
from tidings_operator.names import ANNOTATION_DRAIN, ANNOTATION_POSTGRES, ANNOTATION_RESTART
from tidings_operator.observe import PodView, failing_reason, lost_at, pod_view
from tidings_operator.report import (
    Look,
    disruption_from_status,
    disruption_status,
    in_flight_from_status,
    iso,
    look_verdicts,
    rollout_status,
    scale_ignored_message,
    summary,
    workload_part,
)
from tidings_operator.rollout import InFlight, RolloutStep, next_step
from tidings_operator.secret_digest import stamp_secrets_hash
from tidings_operator.spec import (
    ClusterSpec,
    EngineTls,
    SecretKeyRef,
    SpecError,
    check_name,
    parse_spec,
)
from tidings_operator.status import (
    Verdict,
    find,
    merge_conditions,
    merge_patch,
)
from tidings_operator.wiring import (
    EngineRejected,
    EngineUnavailable,
    ensure_cassandra,
    ensure_kafka,
    kafka_options,
)

__all__ = ["ClusterState", "Options", "Reconciler"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Options:
    tick_s: float = 2.0  # how often each ChatCluster is looked at (a GET, from memory else)
    resync_s: float = 60.0  # re-apply every child at least this often (drift repair)
    rewire_s: float = 300.0  # check the topics and keyspace again this often (0: never)
    retry_base_s: float = 5.0  # backoff while an engine or a Secret is missing
    retry_max_s: float = 60.0
    reader_retry_s: float = 10.0  # after the membership reader failed to start
    namespaces: tuple[str, ...] = ()  # the operator's scope (empty: every namespace)


@dataclass
class ClusterState:
    """What the operator remembers about one ChatCluster between looks (in memory)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # status writes, applies
    wire_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one wiring at a time
    last_attempt_key: str | None = None  # the spec the last wiring attempt was for
    spec_error: str | None = None
    blocked: str | None = None  # a missing Secret, say
    conflict: str | None = None  # another ChatCluster owns its topics or keyspace
    conflict_reason: str = "ResourceConflict"
    conflict_check_at: float = 0.0
    parts: list[Verdict] = field(default_factory=list)  # api and push, for the summary
    wired_key: str | None = None
    inbox_partitions: int | None = None
    kafka_key: str | None = None
    kafka_options: dict[str, Any] | None = None
    reader: MembershipReader | None = None
    reader_key: str | None = None
    reader_retry_at: float = 0.0
    name: str = ""
    namespace: str = ""
    ticking: asyncio.Task[None] | None = None
    history: tuple[Recommendation, ...] | None = None
    pods_seen: dict[str, PodSeen] = field(default_factory=dict)
    reported_uids: set[str] = field(default_factory=set)
    last_connections: dict[str, int] = field(default_factory=dict)
    last_total: int | None = None
    # The last scale-down step: (reported connections before it, monotonic time).
    shrink: tuple[int, float] | None = None
    applied_generation: int | None = None
    secrets_kept: tuple[str, ...] = ()  # workloads whose Secrets could not be read
    last_apply: float = -math.inf
    # A reconcile kopf ran while paused did nothing: the ticks wire once resumed (kopf
    # counts that reconcile as done and will not run it again).
    skipped_while_paused: bool = False
    # The tidings.dev/restart value the children were last applied with ("" before any
    # apply: a first apply with a value set is no new restart).
    applied_restart: str | None = ""
    # The periodic re-wire (drift): when the last wiring ended, the one under way, what
    # it found for the next tick to write, and the drift last told (said once).
    wired_at: float = -math.inf
    rewiring: asyncio.Task[None] | None = None
    rewire_verdicts: list[Verdict] = field(default_factory=list)
    wire_events: list[tuple[str, str, str]] = field(default_factory=list)
    drift_told: dict[str, str] = field(default_factory=dict)

    async def close(self) -> None:
        for task in (self.ticking, self.rewiring):
            if task is not None and task is not asyncio.current_task() and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.ticking = self.rewiring = None
        await self.close_reader()

    def tell_drift(self, reason: str, message: str | None) -> None:
        """A Warning Event for what wiring found, once per distinct finding."""
        if message is None:
            self.drift_told.pop(reason, None)
        elif self.drift_told.get(reason) != message:
            self.drift_told[reason] = message
            self.wire_events.append(("Warning", reason, message))

    async def close_reader(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            await reader.close()


# Parts of spec.kafka that only reach the chat pods' environment: changing them re-wires
# nothing (the new StatefulSet revision rolls the chat servers).
_NOT_WIRED = ("session_timeout_s", "heartbeat_interval_s")


def wiring_key(spec: ClusterSpec) -> str:
    """What wiring depends on: the kafka and cassandra parts of the spec, and the bucket's
    (spec.media.s3 but publicEndpoint, which only the pods use; not the limits)."""
    kafka = {k: v for k, v in asdict(spec.kafka).items() if k not in _NOT_WIRED}
    media = None
    if spec.media is not None:
        media = {k: v for k, v in asdict(spec.media.s3).items() if k != "public_endpoint"}
    return json.dumps([kafka, asdict(spec.cassandra), media], sort_keys=True)


def _ca(tls: EngineTls | None, secrets: Mapping[str, Mapping[str, str]]) -> str | None:
    """The PEM a ``tls.caSecretRef`` names (None without one, or when it is missing)."""
    if tls is None or tls.ca is None:
        return None
    return (secrets.get(tls.ca.name) or {}).get(tls.ca.key)


def _use_kafka(
    state: ClusterState, spec: ClusterSpec, secrets: Mapping[str, Mapping[str, str]]
) -> None:
    """The operator's own Kafka client options (the membership reader restarts when its
    key changes: a rotated password or CA reaches it too)."""
    auth = secrets.get(spec.kafka.auth_secret or "")
    ca = _ca(spec.kafka.tls, secrets)
    state.kafka_options = kafka_options(spec.kafka, auth, ca=ca)
    state.kafka_key = json.dumps(
        [spec.kafka.bootstrap_servers, spec.kafka.topic_prefix, auth, ca], sort_keys=True
    )


def _reached(
    reader: MembershipReader | None,
    members: Mapping[str, Member],
    threshold: float,
    *,
    since: float,
) -> float | None:
    """When the chat servers' records first added up to ``threshold`` after ``since``."""
    if reader is None:
        return None
    return first_reached(reader.history(), members, since=since, threshold=threshold)


def _database_named(url: str | None) -> str | None:
    """``host:port/database`` of a PostgreSQL URL (None when it names none)."""
    found = postgres_database(url) if url else None
    return f"{found[0]}/{found[1]}" if found is not None else None


Child = dict[str, Any] | None  # a child workload as the API server has it, or none

# The wiring conditions, by the engine they are about.
_ENGINES = {"KafkaReady": "Kafka", "CassandraReady": "Cassandra", "MediaReady": "Media"}


def _decode(secret: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            out[str(key)] = base64.b64decode(value).decode()
    for key, value in (secret.get("stringData") or {}).items():
        out[str(key)] = str(value)
    return out


class _Blocked(Exception):
    """A Secret the spec names is missing."""

    metrics_reason = "SecretNotFound"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


CONFLICT_RECHECK_S = 10.0


class _Conflict(Exception):
    """Another ChatCluster, created earlier, owns this one's topics, keyspace or database
    (``ResourceConflict``); or its PostgreSQL database is not the one it was made with
    (``DatabaseChanged``)."""

    def __init__(self, message: str, reason: str = "ResourceConflict") -> None:
        super().__init__(message)
        self.message = message
        self.metrics_reason = reason


class _WireFailed(Exception):
    """Kafka or Cassandra failed; ``verdicts`` are what succeeded before."""

    def __init__(
        self,
        condition: str,
        error: EngineUnavailable | EngineRejected,
        verdicts: list[Verdict],
    ) -> None:
        super().__init__(error.message)
        self.condition = condition
        self.error = error
        self.verdicts = verdicts

    @property
    def metrics_reason(self) -> str:
        if isinstance(self.error, EngineRejected):
            return "InvalidSpec"
        return f"{_ENGINES[self.condition]}Unavailable"

    def report(self, state: ClusterState, retrying: str) -> list[Verdict]:
        """The conditions to write (and the spec error to remember, when it is one)."""
        if isinstance(self.error, EngineRejected):
            state.spec_error = self.error.message
            failed = Verdict(self.condition, "False", "InvalidSpec", self.error.message)
        else:
            engine = _ENGINES[self.condition]
            failed = Verdict(
                self.condition,
                "False",
                f"{engine}Unavailable",
                f"{self.error.message}; {retrying}",
            )
        return [*self.verdicts, failed]


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        options: Options,
        *,
        indexes: Indexes | None = None,
        departures: Departures | None = None,
    ) -> None:
        self.kube = kube
        self.options = options
        self.indexes = indexes  # None: children are read from the API server every tick
        self.departures = departures or Departures()
        self._states: dict[str, ClusterState] = {}

    def state(self, uid: str) -> ClusterState:
        return self._states.setdefault(uid, ClusterState())

    def track(self, *, name: str, namespace: str, uid: str) -> None:
        """A ChatCluster exists (seen by the watch): tick it."""
        state = self.state(uid)
        state.name, state.namespace = name, namespace
        metrics.CLUSTERS.set(len(self._states))

    async def forget(self, uid: str) -> None:
        """A ChatCluster is gone: stop ticking it, close its membership reader."""
        state = self._states.pop(uid, None)
        metrics.CLUSTERS.set(len(self._states))
        if state is not None:
            if state.name:
                metrics.forget_cluster(state.namespace, state.name)
            await state.close()

    async def close(self) -> None:
        states, self._states = list(self._states.values()), {}
        for state in states:
            await state.close()

    async def run_ticks(self) -> None:
        """Every ``tick_s``, sync each tracked ChatCluster (a slow one is not stacked up)."""
        while True:
            for uid, state in list(self._states.items()):
                if not state.name or (state.ticking is not None and not state.ticking.done()):
                    continue
                state.ticking = asyncio.create_task(
                    self._tick(uid, state), name=f"tick:{state.namespace}/{state.name}"
                )
            await asyncio.sleep(self.options.tick_s)

    async def _tick(self, uid: str, state: ClusterState) -> None:
        try:
            await self.sync(name=state.name, namespace=state.namespace, uid=uid)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The next tick tries again.
            log.warning("sync of %s/%s failed", state.namespace, state.name, exc_info=True)

    def _backoff(self, retry: int) -> float:
        return float(
            min(self.options.retry_max_s, self.options.retry_base_s * 2.0 ** min(retry, 16))
        )

    # --- reconcile: spec, Secrets, wiring -------------------------------------------------

    async def reconcile(self, *, name: str, namespace: str, uid: str, retry: int) -> None:
        with metrics.timed("reconcile"):
            await self._reconcile(name=name, namespace=namespace, uid=uid, retry=retry)

    async def _reconcile(self, *, name: str, namespace: str, uid: str, retry: int) -> None:
        state = self.state(uid)
        state.name, state.namespace = name, namespace
        obj = await self._get_cluster(namespace, name)
        if obj is None:
            await self.forget(uid)
            return
        if paused(obj):  # hands off: the tick says so in the status
            log.info("%s/%s: reconciliation paused by annotation", namespace, name)
            state.skipped_while_paused = True
            return
        try:
            check_name(name)
            spec = parse_spec(
                obj.get("spec") or {},
                default_tls_secret=certificate_name(name),
                cluster=(namespace, name),
            )
        except SpecError as exc:
            state.spec_error = str(exc)
            await self._report(namespace, name, state, [])
            raise kopf.PermanentError(str(exc)) from exc
        state.spec_error = None
        try:
            verdicts = await self._wire(namespace, state, spec)
        except _Blocked as exc:
            await self._report(namespace, name, state, [])
            raise kopf.TemporaryError(exc.message, delay=self._backoff(retry)) from exc
        except _Conflict as exc:
            await self._report(namespace, name, state, [])
            # Looked at again now and then: the owner may be deleted.
            raise kopf.TemporaryError(exc.message, delay=self.options.retry_max_s) from exc
        except _WireFailed as exc:
            delay = self._backoff(retry)
            await self._report(
                namespace, name, state, exc.report(state, f"retrying in {delay:.0f}s")
            )
            if isinstance(exc.error, EngineRejected):
                raise kopf.PermanentError(exc.error.message) from exc
            raise kopf.TemporaryError(
                f"{exc.error.message}; retrying in {delay:.0f}s", delay=delay
            ) from exc
        if verdicts:
            await self._report(namespace, name, state, verdicts)
        try:
            await self.sync(name=name, namespace=namespace, uid=uid, force_apply=True)
        except KubeError as exc:
            raise kopf.TemporaryError(str(exc), delay=self._backoff(retry)) from exc

    async def _wire(
        self, namespace: str, state: ClusterState, spec: ClusterSpec, *, again: bool = False
    ) -> list[Verdict]:
        """Wire Kafka, Cassandra and the media bucket for this spec unless done already
        (``again``: check it all again, the periodic re-wire); the conditions to write.

        One at a time per ChatCluster (two migrators at once can leave Cassandra's nodes
        disagreeing about the schema). Raises :class:`_Blocked` (a Secret is missing) or
        :class:`_WireFailed`. What it finds out of the ordinary (a topic gone, config or
        partitions drifted, the keyspace's replication) goes out as Warning Events.
        """
        key = wiring_key(spec)
        async with state.wire_lock:
            if state.wired_key == key and not again:
                return []
            rewired = state.wired_key == key
            state.last_attempt_key = key
            if not rewired:
                await self._refuse_conflicts(namespace, state, spec)
            secrets = await self._read_secrets(namespace, spec)
            if isinstance(secrets, str):
                state.blocked = secrets
                raise _Blocked(secrets)
            state.blocked = None
            await self._keep_database(
                namespace, state, spec, secrets[spec.postgres_url.name].get(spec.postgres_url.key)
            )
            kafka_auth = secrets.get(spec.kafka.auth_secret or "")
            cassandra_auth = secrets.get(spec.cassandra.auth_secret or "")
            verdicts: list[Verdict] = []
            problem = kafka_protocol_problem(spec, kafka_auth)
            if problem is not None:
                raise _WireFailed("KafkaReady", EngineRejected("kafka", problem), verdicts)
            try:
                kafka = await ensure_kafka(spec.kafka, kafka_auth, ca=_ca(spec.kafka.tls, secrets))
            except (EngineUnavailable, EngineRejected) as exc:
                raise _WireFailed("KafkaReady", exc, verdicts) from exc
            _use_kafka(state, spec, secrets)
            verdicts.append(Verdict("KafkaReady", "True", "TopicsReady", kafka.message))
            if rewired and kafka.created:
                state.wire_events.append(
                    (
                        "Warning",
                        "TopicsRecreated",
                        f"{', '.join(kafka.created)} had been deleted: created again (empty)",
                    )
                )
            state.tell_drift("KafkaDrift", "; ".join(kafka.notes) or None)
            try:
                cassandra = await ensure_cassandra(
                    spec.cassandra, cassandra_auth, ca=_ca(spec.cassandra.tls, secrets)
                )
            except (EngineUnavailable, EngineRejected) as exc:
                raise _WireFailed("CassandraReady", exc, verdicts) from exc
            verdicts.append(Verdict("CassandraReady", "True", "SchemaReady", cassandra.message))
            change = cassandra.replication
            state.tell_drift(
                "KeyspaceReplicationRefused",
                cassandra.message if change is not None and change.refused else None,
            )
            if change is not None and not change.refused:
                state.wire_events.append(
                    ("Warning", "KeyspaceReplicationChanged", cassandra.message)
                )
            verdicts.append(await self._wire_media(spec, secrets, verdicts))
            state.wired_key, state.spec_error = key, None
            state.wired_at = time.monotonic()
            state.inbox_partitions = kafka.inbox_partitions
            log.info("%s wired: %s; %s", namespace, kafka.message, cassandra.message)
            return verdicts

    async def _refuse_conflicts(
        self, namespace: str, state: ClusterState, spec: ClusterSpec
    ) -> None:
        """Raise :class:`_Conflict` when a ChatCluster created earlier claims the same
        topics, keyspace or PostgreSQL database (conflicts.py): one LIST of the ChatClusters
        in scope, and a GET of each one's PostgreSQL Secret."""
        others: list[Claimant] = []
        me: Claimant | None = None
        for obj in await self._list_clusters():
            meta = obj.get("metadata") or {}
            ns, other_name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            mine = (ns, other_name) == (namespace, state.name)
            if meta.get("deletionTimestamp") and not mine:
                continue
            if mine:
                claimed = spec
            else:
                try:
                    claimed = parse_spec(obj.get("spec") or {}, cluster=(ns, other_name))
                except SpecError:
                    continue  # a spec that cannot work claims nothing
            claimant = Claimant(
                ns,
                other_name,
                str(meta.get("creationTimestamp") or ""),
                claimed,
                await self._secret_value(ns, claimed.postgres_url),
            )
            if mine:
                me = claimant
            else:
                others.append(claimant)
        found = conflict(me, others) if me is not None else None
        self._refuse(state, found, "ResourceConflict")

    def _refuse(self, state: ClusterState, found: str | None, reason: str) -> None:
        """Remember (and tell once) why this ChatCluster may not be wired; raise it."""
        if found != state.conflict and found is not None:
            state.wire_events.append(("Warning", reason, found))
        state.conflict, state.conflict_reason = found, reason
        if found is not None:
            state.conflict_check_at = time.monotonic() + CONFLICT_RECHECK_S
            raise _Conflict(found, reason)

    async def _keep_database(
        self, namespace: str, state: ClusterState, spec: ClusterSpec, url: str | None
    ) -> None:
        """The PostgreSQL database is fixed at creation, like the topics and the keyspace:
        the first one wired is written into the annotation ``tidings.dev/postgres-database``;
        a Secret that later names another is refused (``DatabaseChanged``) and nothing is
        wired or applied — the pods would otherwise roll onto an empty directory."""
        obj = await self._get_cluster(namespace, state.name)
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        named = _database_named(url)
        if named is not None and annotations.get(ANNOTATION_POSTGRES) is None:
            await self._annotate(namespace, state.name, {ANNOTATION_POSTGRES: named})
            return
        self._check_database(state, spec, annotations, url)

    def _check_database(
        self,
        state: ClusterState,
        spec: ClusterSpec,
        annotations: Mapping[str, str],
        url: str | None,
    ) -> None:
        """Raise :class:`_Conflict` (``DatabaseChanged``) when ``url`` names another
        database than the one recorded; clear that refusal when it no longer does."""
        named, recorded = _database_named(url), annotations.get(ANNOTATION_POSTGRES)
        if named is not None and recorded is not None and named != recorded:
            state.wired_key = None  # nothing more is applied until it is put back
            self._refuse(
                state,
                f"postgres.urlSecretRef ({spec.postgres_url.name}) now names the database "
                f"{named}, but this ChatCluster was made on {recorded}: its accounts, devices "
                "and groups are there. Point the Secret back; or, to start over on the new "
                f"database, remove the annotation {ANNOTATION_POSTGRES}",
                "DatabaseChanged",
            )
        if state.conflict_reason == "DatabaseChanged":
            state.conflict = None  # put back (or the annotation removed)

    async def _secret_value(self, namespace: str, ref: SecretKeyRef) -> str | None:
        """One key of a Secret, decoded; None when it cannot be read."""
        try:
            raw = await self.kube.get("Secret", namespace, ref.name)
        except KubeError:
            return None  # another namespace's Secret the operator may not read
        return _decode(raw).get(ref.key) if raw is not None else None

    async def _list_clusters(self) -> list[dict[str, Any]]:
        kind = KINDS[names.KIND]
        if not self.options.namespaces:
            listed = await self.kube.request("GET", f"/apis/{kind.api_version}/{kind.plural}")
            return list(listed.get("items") or [])
        items: list[dict[str, Any]] = []
        for ns in self.options.namespaces:
            items += await self.kube.list(names.KIND, ns)
        return items

    def _rewire_when_due(self, namespace: str, state: ClusterState, spec: ClusterSpec) -> None:
        """Every ``rewire_s``, wire the same spec again in the background: a topic deleted
        out of band is made again, drifted configs are set back, and ``KafkaReady`` and
        ``CassandraReady`` say what the engines say now (the next tick writes them)."""
        if self.options.rewire_s <= 0 or state.wired_key != wiring_key(spec):
            return
        if time.monotonic() - state.wired_at < self.options.rewire_s:
            return
        if state.rewiring is not None and not state.rewiring.done():
            return
        state.rewiring = asyncio.create_task(self._rewire(namespace, state, spec))

    async def _rewire(self, namespace: str, state: ClusterState, spec: ClusterSpec) -> None:
        try:
            state.rewire_verdicts = await self._wire(namespace, state, spec, again=True)
        except (_Blocked, _Conflict):
            state.wired_at = time.monotonic()  # reported (SecretNotFound, DatabaseChanged)
        except _WireFailed as exc:
            state.wired_at = time.monotonic()
            metrics.RECONCILE_ERRORS.labels("rewire", exc.metrics_reason).inc()
            state.rewire_verdicts = exc.report(
                state, f"checked again within {self.options.rewire_s:.0f}s"
            )
        except Exception as exc:
            state.wired_at = time.monotonic()
            metrics.RECONCILE_ERRORS.labels("rewire", metrics.error_reason(exc)).inc()
            log.exception("%s/%s: re-wiring failed", namespace, state.name)

    @staticmethod
    async def _wire_media(
        spec: ClusterSpec, secrets: Mapping[str, Mapping[str, str]], verdicts: list[Verdict]
    ) -> Verdict:
        """``MediaReady``: the bucket made and its lifecycle rule kept (createBucket), or
        what the pods are given; raises :class:`_WireFailed` when the store fails."""
        media = spec.media
        if media is None:
            return Verdict(
                "MediaReady",
                "True",
                "NotConfigured",
                "spec.media is not set: no media store (the media endpoints answer 503)",
            )
        s3 = media.s3
        where = f"bucket {s3.bucket} at {s3.endpoint or f'AWS ({s3.region})'}"
        if not s3.create_bucket or s3.credentials is None:
            return Verdict(
                "MediaReady",
                "True",
                "BucketNotManaged",
                f"{where}: passed to the servers; createBucket is false, so the operator "
                "neither creates nor checks it",
            )
        creds = secrets.get(s3.credentials.name) or {}
        try:
            outcome = await ensure_bucket(
                s3,
                creds.get(s3.credentials.access_key_id_key, ""),
                creds.get(s3.credentials.secret_access_key_key, ""),
            )
        except (EngineUnavailable, EngineRejected) as exc:
            raise _WireFailed("MediaReady", exc, verdicts) from exc
        return Verdict("MediaReady", "True", "BucketReady", f"{where}: {outcome.message}")

    async def _read_secrets(
        self, namespace: str, spec: ClusterSpec
    ) -> dict[str, dict[str, str]] | str:
        """The referenced Secrets, decoded; or a message naming what is missing."""
        found = await self._existing_secrets(namespace, spec)
        missing = [f"Secret {n}" for n in spec.secret_names() if n not in found]
        for ref, what in (
            (spec.postgres_url, "postgres.urlSecretRef"),
            (spec.jwt_secret, "jwtSecretRef"),
        ):
            if ref.name in found and ref.key not in found[ref.name]:
                missing.append(f"key {ref.key} in Secret {ref.name} ({what})")
        creds = spec.media.s3.credentials if spec.media is not None else None
        if creds is not None and creds.name in found:
            for key in (creds.access_key_id_key, creds.secret_access_key_key):
                if key not in found[creds.name]:
                    missing.append(
                        f"key {key} in Secret {creds.name} (media.s3.credentialsSecretRef)"
                    )
        if missing:
            return f"waiting for {', '.join(missing)} in namespace {namespace}"
        return found

    async def _children(
        self, namespace: str, name: str
    ) -> tuple[Child, list[dict[str, Any]], Child, Child]:
        """The chat StatefulSet, the chat pods, the api StatefulSet and the push Deployment:
        from the watch (children.py), or read now when there is none."""
        chat, api, push = names.chat_name(name), names.api_name(name), names.push_name(name)
        idx = self.indexes
        if idx is not None:
            return (
                idx.workload("StatefulSet", namespace, chat),
                idx.pods(namespace, name),
                idx.workload("StatefulSet", namespace, api),
                idx.workload("Deployment", namespace, push),
            )
        return (
            await self.kube.get("StatefulSet", namespace, chat),
            await self.kube.list("Pod", namespace, names.selector_string(name, names.CHAT)),
            await self.kube.get("StatefulSet", namespace, api),
            await self.kube.get("Deployment", namespace, push),
        )

    async def _pod_secrets(
        self, namespace: str, state: ClusterState, spec: ClusterSpec
    ) -> dict[str, dict[str, str]]:
        """The Secrets the spec names that exist now, decoded (for the pods' secrets hash);
        a changed Kafka auth Secret or CA also goes to the operator's own Kafka client."""
        found = await self._existing_secrets(namespace, spec)
        ca = spec.kafka.tls.ca if spec.kafka.tls is not None else None
        needed = [spec.kafka.auth_secret, ca.name if ca is not None else None]
        if state.kafka_options is not None and all(n in found for n in needed if n):
            _use_kafka(state, spec, found)
        return found

    async def _existing_secrets(
        self, namespace: str, spec: ClusterSpec
    ) -> dict[str, dict[str, str]]:
        """The Secrets the spec names that exist, decoded, by name."""
        found: dict[str, dict[str, str]] = {}
        for secret_name in spec.secret_names():
            raw = await self.kube.get("Secret", namespace, secret_name)
            if raw is not None:
                found[secret_name] = _decode(raw)
        return found

    # --- sync: observe, decide, apply, report ---------------------------------------------

    async def _get_cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = await self.kube.get(names.KIND, namespace, name)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return None
        return obj

    async def _report(
        self, namespace: str, name: str, state: ClusterState, verdicts: list[Verdict]
    ) -> None:
        """Write conditions (and the Ready summary) now, without a full sync."""
        async with state.lock:
            obj = await self._get_cluster(namespace, name)
            if obj is None:
                return
            status = obj.get("status") or {}
            generation = int(obj["metadata"].get("generation") or 0)
            now = datetime.now(UTC)
            conditions = merge_conditions(
                status.get("conditions") or [], verdicts, generation=generation, now=now
            )
            conditions = merge_conditions(
                conditions,
                summary(conditions, self._state_verdicts(state), state.spec_error),
                generation=generation,
                now=now,
            )
            patch = merge_patch(status, {"conditions": conditions})
            if patch:
                await self.kube.patch_status(namespace, name, patch)

    @staticmethod
    def _state_verdicts(state: ClusterState) -> list[Verdict]:
        """Parts of the Ready summary that are not conditions: a missing Secret, api, push."""
        out = []
        if state.blocked:
            out.append(Verdict("Secrets", "False", "SecretNotFound", state.blocked))
        if state.conflict:
            out.append(Verdict("Claims", "False", state.conflict_reason, state.conflict))
        return out + state.parts

    async def _connections(
        self, state: ClusterState, spec: ClusterSpec, pods: list[PodView]
    ) -> tuple[dict[str, Member] | None, int | None]:
        """The fresh membership records and their total; None when they cannot be read."""
        if state.kafka_options is None or state.kafka_key is None:
            return None, None
        if state.reader is None or state.reader_key != state.kafka_key:
            await state.close_reader()
            if time.monotonic() < state.reader_retry_at:
                return None, None
            reader = MembershipReader(
                state.kafka_options, names.members_topic(spec.kafka.topic_prefix)
            )
            try:
                await reader.start(catch_up_timeout_s=5.0)
            except Exception as exc:
                log.warning("cannot read the membership records: %s", exc)
                state.reader_retry_at = time.monotonic() + self.options.reader_retry_s
                await reader.close()
                return None, None
            state.reader, state.reader_key = reader, state.kafka_key
        if not state.reader.caught_up:
            return None, None
        members = current_members(state.reader.members(), pods)
        if not members and any(p.ready for p in pods):
            # Ready chat servers always publish: no record means we cannot see them
            # (Kafka down, say), not that nobody is connected.
            return members, None
        return members, sum(m.connections for m in members.values())

    async def _hold(
        self, obj: dict[str, Any], status: dict[str, Any], generation: int, stamp: datetime
    ) -> None:
        """Paused: write the condition (an event when the pause begins), nothing else."""
        meta = obj["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        conditions = merge_conditions(
            status.get("conditions") or [], pause_verdicts(obj), generation=generation, now=stamp
        )
        patch = merge_patch(status, {"conditions": conditions})
        if patch:
            await self.kube.patch_status(namespace, name, patch)
        if newly_paused(obj):
            (verdict,) = pause_verdicts(obj)
            await self.kube.post_event(
                obj, type_="Normal", reason="ReconciliationPaused", message=verdict.message
            )

    async def _drain_on_request(
        self,
        obj: dict[str, Any],
        state: ClusterState,
        spec: ClusterSpec,
        pods: list[PodView],
        disruption: Disruption | None,
        total: int | None,
        *,
        busy: bool,
        now: float,
        events: list[tuple[str, str, str]],
    ) -> Disruption | None:
        """``tidings.dev/drain: <pod>`` (controls.py): evict that chat pod once, report it
        as a disruption, remove the annotation. The disruption to track from here."""
        wanted = drain_requested(obj)
        if wanted is None:
            return disruption
        meta = obj["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        target = next((p for p in pods if p.name == wanted), None)
        if target is None:
            events.append(
                ("Warning", "DrainRefused", f"{ANNOTATION_DRAIN}={wanted}: no such chat pod")
            )
            await self._remove_annotation(namespace, name, ANNOTATION_DRAIN)
            return disruption
        if busy or any(p.terminating for p in pods) or not target.ready:
            return disruption  # one chat server out at a time: the next tick looks again
        if not await self.kube.evict(namespace, target.name, target.uid):
            return disruption  # the disruption budget says not now
        state.reported_uids.add(target.uid)  # not a loss: a drain asked for
        clients = state.last_connections.get(target.name, 0)
        before = state.last_total if state.last_total is not None else (total or 0)
        drained = start(
            target.name,
            at=now,
            clients=clients,
            connections_before=before,
            ongoing=disruption,
            now=now,
            drain_budget_s=spec.chat.drain_budget_s,
            cause="DrainRequested",
        )
        events.append(("Normal", "DrainRequested", drained.message))
        await self._remove_annotation(namespace, name, ANNOTATION_DRAIN)
        return drained

    async def _remove_annotation(self, namespace: str, name: str, key: str) -> None:
        await self._annotate(namespace, name, {key: None})

    async def _annotate(self, namespace: str, name: str, values: dict[str, str | None]) -> None:
        await self.kube.request(
            "PATCH",
            KINDS[names.KIND].path(namespace, name),
            {"metadata": {"annotations": values}},
            content_type="application/merge-patch+json",
        )

    async def _wire_changed_spec(
        self, namespace: str, state: ClusterState, spec: ClusterSpec
    ) -> list[Verdict]:
        """Wire now if the last attempt failed for an older spec (say, a fixed address).

        kopf retries a failed handler after its backoff even when the spec changed
        meanwhile; a fix should not wait for that. A spec that failed as it is keeps kopf's
        backoff (a down engine is not hammered every tick). After a pause kopf's reconcile
        was skipped and will not run again: the ticks wire (each tick, until it works).
        """
        key = wiring_key(spec)
        if state.wired_key == key:
            state.skipped_while_paused = False
            return []
        # Refused for a conflict: looked at again every CONFLICT_RECHECK_S (the owner may
        # have been deleted), not only on kopf's backoff.
        conflict_due = state.conflict is not None and time.monotonic() >= state.conflict_check_at
        if (
            state.last_attempt_key in (None, key)
            and not state.skipped_while_paused
            and not conflict_due
        ) or state.wire_lock.locked():
            return []
        if state.conflict is not None:
            state.conflict_check_at = time.monotonic() + CONFLICT_RECHECK_S
        try:
            verdicts = await self._wire(namespace, state, spec)
        except (_Blocked, _Conflict):
            return []
        except _WireFailed as exc:
            retry = "the next tick retries" if state.skipped_while_paused else "kopf retries"
            return exc.report(state, f"{retry} with backoff")
        state.skipped_while_paused = False
        return verdicts

    async def _prune_exposed(
        self, namespace: str, name: str, manifests: list[dict[str, Any]]
    ) -> None:
        """Delete the exposure children (per-pod Services, Ingress, routes, Certificate)
        the spec no longer asks for: a pod gone for good, a mode or TLS turned off."""
        wanted = {(m["kind"], m["metadata"]["name"]) for m in manifests}
        for kind in PRUNED_KINDS:
            try:
                found = await self.kube.list(kind, namespace, expose_selector(name))
            except KubeError as exc:
                # 404: that API is not installed; 403: the chart's rbac.expose leaves it
                # out. Either way the operator made none of them: nothing to prune.
                if exc.status in (403, 404):
                    continue
                raise
            for obj in found:
                meta = obj["metadata"]
                if (kind, meta["name"]) not in wanted:
                    log.info("%s/%s: deleting %s %s", namespace, name, kind, meta["name"])
                    await self.kube.delete(kind, namespace, meta["name"], uid=meta.get("uid"))

    async def sync(self, *, name: str, namespace: str, uid: str, force_apply: bool = False) -> None:
        state = self._states.get(uid)
        if state is None:  # forgotten: deleted meanwhile
            return
        async with state.lock:
            with metrics.timed("sync"):
                obj = await self._get_cluster(namespace, name)
                if obj is None:
                    return
                await self._sync(obj, state, force_apply=force_apply)

    async def _sync(self, obj: dict[str, Any], state: ClusterState, *, force_apply: bool) -> None:
        meta = obj["metadata"]
        name, namespace, uid = str(meta["name"]), str(meta["namespace"]), str(meta["uid"])
        generation = int(meta.get("generation") or 0)
        status: dict[str, Any] = obj.get("status") or {}
        now, mono, stamp = time.time(), time.monotonic(), datetime.now(UTC)
        if paused(obj):
            await self._hold(obj, status, generation, stamp)
            return
        try:
            check_name(name)
            spec = parse_spec(
                obj.get("spec") or {},
                default_tls_secret=certificate_name(name),
                cluster=(namespace, name),
            )
        except SpecError as exc:
            state.spec_error = str(exc)
            conditions = merge_conditions(
                status.get("conditions") or [],
                summary(status.get("conditions") or [], [], state.spec_error),
                generation=generation,
                now=stamp,
            )
            patch = merge_patch(status, {"conditions": conditions})
            if patch:
                await self.kube.patch_status(namespace, name, patch)
            return

        wired_now = [
            *await self._wire_changed_spec(namespace, state, spec),
            *pause_verdicts(obj),
            *state.rewire_verdicts,
        ]
        state.rewire_verdicts = []
        self._rewire_when_due(namespace, state, spec)

        owner: Owner = {"name": name, "namespace": namespace, "uid": uid}
        chat_name = names.chat_name(name)
        sts, raw_pods, api, push = await self._children(namespace, name)
        pods = sorted((pod_view(p) for p in raw_pods), key=lambda p: p.ordinal)
        by_name = {p.name: p for p in pods}
        wired = state.wired_key == wiring_key(spec)
        events, state.wire_events = state.wire_events, []

        members, total = await self._connections(state, spec, pods)
        for sid, member in (members or {}).items():
            if not member.draining:
                state.last_connections[sid] = member.connections

        previous_rollout: dict[str, Any] = status.get("rollout") or {}
        in_flight = in_flight_from_status(previous_rollout)
        current = int(sts["spec"].get("replicas", 1)) if sts else None

        # --- disruptions: ready pods lost without the operator asking for it ---------------
        planned: set[str] = set()
        if in_flight is not None:
            planned.add(in_flight.pod)
        if current is not None:
            planned |= {
                pod_name
                for pod_name in [*state.pods_seen, *by_name]
                if (names.pod_ordinal(pod_name) or 0) >= current
            }
        seen_now = {p.name: PodSeen(p.uid, p.ready, p.terminating) for p in pods}
        disruption = disruption_from_status(status.get("lastDisruption"))
        lost = lost_pods(state.pods_seen, seen_now, planned=planned, reported=state.reported_uids)
        for pod_name, pod_uid in lost:
            state.reported_uids.add(pod_uid)
            clients = state.last_connections.get(pod_name, 0)
            before = state.last_total if state.last_total is not None else (total or 0) + clients
            disruption = start(
                pod_name,
                at=lost_at(
                    by_name.get(pod_name),
                    pod_uid,
                    now,
                    deletion_began=self.departures.began(pod_uid),
                ),
                clients=clients,
                connections_before=before,
                ongoing=disruption,
                now=now,
                drain_budget_s=spec.chat.drain_budget_s,
            )
            events.append(("Warning", "ChatServerLost", disruption.message))
            metrics.DISRUPTIONS.labels(namespace, name).inc()
        for pod_name in planned:
            seen = state.pods_seen.get(pod_name)
            if seen is not None:
                state.reported_uids.add(seen.uid)
        disruption = await self._drain_on_request(
            obj,
            state,
            spec,
            pods,
            disruption,
            total,
            busy=in_flight is not None,
            now=now,
            events=events,
        )
        if disruption is not None:
            advanced = progress(
                disruption,
                total=total,
                now=now,
                drain_budget_s=spec.chat.drain_budget_s,
                reached_at=functools.partial(
                    _reached, state.reader, members or {}, since=disruption.at
                ),
            )
            if advanced.recovered_at is not None and disruption.recovered_at is None:
                events.append(("Normal", "ClientsRecovered", advanced.message))
            disruption = advanced
        state.pods_seen = seen_now

        # --- size -------------------------------------------------------------------------
        terminating = any(p.terminating for p in pods)
        # The last resize carried out: no pod beyond the size left (the StatefulSet
        # controller deletes it a moment after the size changes).
        settled = current is None or sum(1 for p in pods if not p.terminating) <= current
        # Back means on the servers that remain: a gone pod's last record (until its
        # tombstone) must not count its clients as back.
        on_pods = (
            sum(m.connections for sid, m in members.items() if sid in by_name)
            if members is not None and total is not None
            else None
        )
        if settled and clients_back(state.shrink, on_pods, mono, 2 * spec.chat.drain_budget_s):
            state.shrink = None
        # No two chat servers drain together, and the next goes only when the clients of
        # the last one are back (or it waited two drain budgets).
        can_scale_down = settled and not terminating and in_flight is None and state.shrink is None
        decision: ScaleDecision | None = None
        if spec.chat.autoscaling:
            base = current if current is not None else spec.chat.min_replicas
            if state.history is None:
                state.history = (Recommendation(mono, base),)
            decision = decide(
                current=base,
                total=total,
                target=spec.chat.target_connections_per_pod,
                min_replicas=spec.chat.min_replicas,
                max_replicas=spec.chat.max_replicas,
                window_s=spec.chat.scale_down_stabilization_s,
                history=state.history,
                now=mono,
                can_scale_down=can_scale_down,
            )
            state.history = decision.history
            desired = decision.replicas
        else:
            state.history = None
            desired = manual_replicas(
                spec.chat.replicas,
                spec.chat.min_replicas,
                current=current,
                can_scale_down=can_scale_down,
            )
        ignored = spec.chat.replicas if spec.chat.autoscaling else None
        was_ignored = find(status.get("conditions") or [], "ScaleIgnored")
        if ignored is not None and (was_ignored is None or was_ignored["status"] != "True"):
            events.append(("Warning", "ScaleIgnored", scale_ignored_message(ignored)))

        # --- rollout ----------------------------------------------------------------------
        step: RolloutStep | None = None
        sts_status = (sts or {}).get("status") or {}
        update_revision = str(sts_status.get("updateRevision") or "")
        fresh = sts is not None and int(sts_status.get("observedGeneration") or 0) >= int(
            sts["metadata"].get("generation") or 0
        )
        if sts is not None and fresh and update_revision and current is not None:
            step = next_step(
                pods=[p.state() for p in pods],
                replicas=current,
                update_revision=update_revision,
                in_flight=in_flight,
                members=(
                    {sid: m.connections for sid, m in members.items() if not m.draining}
                    if members is not None
                    else None
                ),
                total=total,
                now=now,
                drain_budget_s=spec.chat.drain_budget_s,
                grace_s=termination_grace_seconds(spec),
                progress_deadline_s=spec.chat.progress_deadline_s,
            )
            in_flight = step.in_flight
            if step.action == "replace" and step.pod:
                target = by_name[step.pod]
                if await self.kube.evict(namespace, target.name, target.uid):
                    in_flight = InFlight(target.name, now, total)
                    state.reported_uids.add(target.uid)
                    events.append(("Normal", "ReplacingChatServer", step.message))
                    metrics.ROLLOUT_REPLACEMENTS.labels(namespace, name).inc()
                    step = RolloutStep(
                        "wait",
                        "Draining",
                        f"{step.message}: draining",
                        step.pod,
                        in_flight,
                        step.updated,
                    )
                else:
                    step = RolloutStep(
                        "wait",
                        "EvictionRefused",
                        f"the disruption budget does not allow evicting {step.pod} yet",
                        step.pod,
                        None,
                        step.updated,
                    )
            elif step.action == "halt" and previous_rollout.get("reason") != step.reason:
                events.append(("Warning", "RolloutHalted", step.message))

        # --- apply ------------------------------------------------------------------------
        last_scale = status.get("lastScale")
        restart = restart_requested(obj)
        due = mono - state.last_apply > self.options.resync_s
        missing = sts is None or api is None or push is None
        if (
            wired
            and state.inbox_partitions is not None
            and (
                force_apply
                or due
                or missing
                or state.applied_generation != generation
                or state.applied_restart != restart
                or current != desired
            )
        ):
            # A shrinking server keeps its own address until its pod is gone.
            exposed = max(desired, current or 0, *(p.ordinal + 1 for p in pods))
            manifests = build_all(
                owner,
                spec,
                chat_replicas=desired,
                inbox_partitions=state.inbox_partitions,
                exposed_ordinals=exposed,
                restart=restart,
            )
            pod_secrets = await self._pod_secrets(namespace, state, spec)
            try:
                self._check_database(
                    state,
                    spec,
                    meta.get("annotations") or {},
                    (pod_secrets.get(spec.postgres_url.name) or {}).get(spec.postgres_url.key),
                )
            except _Conflict:
                pass  # refused (DatabaseChanged): nothing is applied; the status says why
            else:
                kept = stamp_secrets_hash(
                    manifests,
                    pod_secrets,
                    {
                        ("StatefulSet", chat_name): sts,
                        ("StatefulSet", names.api_name(name)): api,
                        ("Deployment", names.push_name(name)): push,
                    },
                )
                if tuple(kept) != state.secrets_kept and kept:
                    events.append(
                        (
                            "Warning",
                            "SecretsUnreadable",
                            f"a Secret or key the pods need is missing, so {', '.join(kept)} "
                            "keep their current environment (no roll until it is back)",
                        )
                    )
                state.secrets_kept = tuple(kept)
                for manifest in manifests:
                    await self.kube.apply(manifest)
                await self._prune_exposed(namespace, name, manifests)
                if restart is not None and state.applied_restart not in ("", restart):
                    events.append(
                        (
                            "Normal",
                            "RestartRequested",
                            f"{ANNOTATION_RESTART}={restart}: rolling every chat server",
                        )
                    )
                state.applied_generation, state.last_apply = generation, mono
                state.applied_restart = restart
        elif sts is not None and current != desired:
            await self.kube.request(
                "PATCH",
                KINDS["StatefulSet"].path(namespace, chat_name, "scale"),
                {"spec": {"replicas": desired}},
                content_type="application/merge-patch+json",
            )
        if current is not None and desired < current:
            state.shrink = (total if total is not None else state.last_total or 0, mono)
        if current is not None and current != desired:
            why = decision.reason if decision is not None else "ScaleSubresource"
            last_scale = {"from": current, "to": desired, "at": iso(now), "reason": why}
            message = decision.message if decision is not None else "spec.chat.replicas changed"
            events.append(("Normal", "Scaled", f"chat servers {current} -> {desired}: {message}"))

        # --- status -----------------------------------------------------------------------
        look = Look(
            wired=wired,
            spec_error=state.spec_error,
            chat_exists=sts is not None,
            pods=pods,
            current=current,
            desired=desired,
            step=step,
            decision=decision,
            ignored_replicas=ignored,
            failing=sorted(
                f"{p['metadata']['name']} ({reason})"
                for p in raw_pods
                if (reason := failing_reason(p)) is not None
            ),
        )
        verdicts = look_verdicts(look)
        conditions = merge_conditions(
            status.get("conditions") or [],
            [*wired_now, *verdicts],
            generation=generation,
            now=stamp,
        )
        state.parts = [
            workload_part("api", api, wired),
            workload_part("push", push, wired),
        ]
        conditions = merge_conditions(
            conditions,
            summary(conditions, self._state_verdicts(state), state.spec_error),
            generation=generation,
            now=stamp,
        )
        new_status: dict[str, Any] = {
            "observedGeneration": (
                generation if wired and state.applied_generation == generation else None
            )
            or status.get("observedGeneration"),
            "replicas": sum(1 for p in pods if not p.terminating),
            "readyReplicas": look.ready,
            "desiredReplicas": desired,
            "connections": total,
            "selector": names.selector_string(name, names.CHAT),
            "inboxPartitions": state.inbox_partitions or status.get("inboxPartitions"),
            "conditions": conditions,
            "rollout": rollout_status(step, in_flight, pods, update_revision, previous_rollout),
            "lastScale": last_scale,
            "lastDisruption": disruption_status(disruption) if disruption else None,
        }
        patch = merge_patch(status, new_status)
        if patch:
            await self.kube.patch_status(namespace, name, patch)
        metrics.CHAT_REPLICAS_DESIRED.labels(namespace, name).set(desired)
        metrics.CHAT_REPLICAS_ACTUAL.labels(namespace, name).set(new_status["replicas"])
        metrics.CHAT_REPLICAS_READY.labels(namespace, name).set(look.ready)
        halted = step is not None and step.action == "halt"
        metrics.ROLLOUT_HALTED.labels(namespace, name).set(1 if halted else 0)
        if total is None:
            with contextlib.suppress(KeyError):
                metrics.CONNECTIONS.remove(namespace, name)
        else:
            metrics.CONNECTIONS.labels(namespace, name).set(total)
        if total is not None:
            state.last_total = total
        for kind, reason, message in events:
            log.info("%s/%s %s: %s", namespace, name, reason, message)
            await self.kube.post_event(obj, type_=kind, reason=reason, message=message)
