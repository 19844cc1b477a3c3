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
  reconcile, in three steps: ``_observe`` reads the ChatCluster (once), its children
  (from the watches), the chat servers' membership records and what the last tick kept
  into one :class:`~tidings_operator.plan.Observation`; the pure
  :func:`~tidings_operator.plan.plan` decides the size, the next rollout step, what was
  lost, a drain asked for, whether to apply, the status and the Events; ``_act`` carries
  the plan out (an eviction or an apply it asks about first, then the status, the Events).

Everything a decision needs between two looks that must survive an operator restart is
in the status (the replacement in flight, the last disruption); the rest (the scale
history, the pods seen last time: a :class:`~tidings_operator.plan.Memory`; the
membership reader) lives in a :class:`ClusterState` per ChatCluster. One lock per
ChatCluster orders the status writes.

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
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import kopf

from tidings_operator import metrics, names
from tidings_operator.children import Departures, Indexes
from tidings_operator.conflicts import Claimant, conflict, postgres_database
from tidings_operator.controls import paused
from tidings_operator.engine_tls import kafka_protocol_problem
from tidings_operator.expose import PRUNED_KINDS, certificate_name, expose_selector
from tidings_operator.kube import KINDS, Kube, KubeError
from tidings_operator.media import ensure_bucket
from tidings_operator.members import Member, MembershipReader, current_members
from tidings_operator.names import ANNOTATION_DRAIN, ANNOTATION_POSTGRES
from tidings_operator.observe import PodView, pod_view
from tidings_operator.plan import (
    Applied,
    Apply,
    Evict,
    Memory,
    Observation,
    Readings,
    plan,
    rewire_due,
    wiring_due,
)
from tidings_operator.report import conditions_after
from tidings_operator.secret_digest import stamp_secrets_hash
from tidings_operator.spec import (
    ClusterSpec,
    EngineTls,
    SecretKeyRef,
    SpecError,
    check_name,
    parse_spec,
)
from tidings_operator.status import Verdict, merge_patch
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
    memory: Memory = field(default_factory=Memory)  # what the last tick decided to keep
    # A reconcile kopf ran while paused did nothing: the ticks wire once resumed (kopf
    # counts that reconcile as done and will not run it again).
    skipped_while_paused: bool = False
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


def _database_named(url: str | None) -> str | None:
    """``host:port/database`` of a PostgreSQL URL (None when it names none)."""
    found = postgres_database(url) if url else None
    return f"{found[0]}/{found[1]}" if found is not None else None


Child = dict[str, Any] | None  # a child workload as the API server has it, or none
Annotations = Mapping[str, str]  # a ChatCluster's metadata.annotations

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
            annotations = obj["metadata"].get("annotations") or {}
            verdicts = await self._wire(namespace, state, spec, annotations)
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
        self,
        namespace: str,
        state: ClusterState,
        spec: ClusterSpec,
        annotations: Annotations,
        *,
        again: bool = False,
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
                namespace,
                state,
                spec,
                annotations,
                secrets[spec.postgres_url.name].get(spec.postgres_url.key),
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
        self,
        namespace: str,
        state: ClusterState,
        spec: ClusterSpec,
        annotations: Annotations,
        url: str | None,
    ) -> None:
        """The PostgreSQL database is fixed at creation, like the topics and the keyspace:
        the first one wired is written into the annotation ``tidings.dev/postgres-database``;
        a Secret that later names another is refused (``DatabaseChanged``) and nothing is
        wired or applied — the pods would otherwise roll onto an empty directory.
        ``annotations``: the ChatCluster's, as read by the reconcile or tick wiring."""
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

    def _rewire_when_due(
        self, namespace: str, state: ClusterState, spec: ClusterSpec, annotations: Annotations
    ) -> None:
        """Every ``rewire_s``, wire the same spec again in the background: a topic deleted
        out of band is made again, drifted configs are set back, and ``KafkaReady`` and
        ``CassandraReady`` say what the engines say now (the next tick writes them)."""
        if rewire_due(
            rewire_s=self.options.rewire_s,
            wired=state.wired_key == wiring_key(spec),
            since_wired=time.monotonic() - state.wired_at,
            rewiring=state.rewiring is not None and not state.rewiring.done(),
        ):
            state.rewiring = asyncio.create_task(self._rewire(namespace, state, spec, annotations))

    async def _rewire(
        self, namespace: str, state: ClusterState, spec: ClusterSpec, annotations: Annotations
    ) -> None:
        try:
            state.rewire_verdicts = await self._wire(
                namespace, state, spec, annotations, again=True
            )
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
            conditions = conditions_after(
                status.get("conditions") or [],
                verdicts,
                parts=[*self._claims(state), *state.memory.parts],
                spec_error=state.spec_error,
                generation=int(obj["metadata"].get("generation") or 0),
                now=datetime.now(UTC),
            )
            patch = merge_patch(status, {"conditions": conditions})
            if patch:
                await self.kube.patch_status(namespace, name, patch)

    @staticmethod
    def _claims(state: ClusterState) -> list[Verdict]:
        """Parts of the Ready summary that are no conditions: a missing Secret, a claim
        another ChatCluster holds (or a changed database)."""
        out = []
        if state.blocked:
            out.append(Verdict("Secrets", "False", "SecretNotFound", state.blocked))
        if state.conflict:
            out.append(Verdict("Claims", "False", state.conflict_reason, state.conflict))
        return out

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
        self, namespace: str, state: ClusterState, spec: ClusterSpec, annotations: Annotations
    ) -> list[Verdict]:
        """Wire now when :func:`~tidings_operator.plan.wiring_due` says the tick should
        (a spec changed since the last failed attempt, a pause, a conflict to look at
        again); the conditions wiring produced."""
        key = wiring_key(spec)
        if state.wired_key == key:
            state.skipped_while_paused = False
            return []
        due = wiring_due(
            wired_key=state.wired_key,
            key=key,
            last_attempt_key=state.last_attempt_key,
            skipped_while_paused=state.skipped_while_paused,
            conflict=state.conflict,
            conflict_check_at=state.conflict_check_at,
            mono=time.monotonic(),
            wiring=state.wire_lock.locked(),
        )
        if not due:
            return []
        if state.conflict is not None:
            state.conflict_check_at = time.monotonic() + CONFLICT_RECHECK_S
        try:
            verdicts = await self._wire(namespace, state, spec, annotations)
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
        """One tick for a ChatCluster: observe, plan, act."""
        state = self._states.get(uid)
        if state is None:  # forgotten: deleted meanwhile
            return
        async with state.lock:
            with metrics.timed("sync"):
                obj = await self._get_cluster(namespace, name)
                if obj is None:
                    return
                observation = await self._observe(obj, state, force_apply=force_apply)
                await self._act(observation, state)

    async def _observe(
        self, obj: dict[str, Any], state: ClusterState, *, force_apply: bool
    ) -> Observation:
        """Every read of the tick, in one value: the ChatCluster (read once, by the caller),
        the spec, wiring as it stands (wiring a changed spec first, and starting the
        periodic re-wire when due), the children (from the watches), the membership
        records, and what the operator remembers."""
        meta = obj["metadata"]
        name, namespace = str(meta["name"]), str(meta["namespace"])
        now, mono, stamp = time.time(), time.monotonic(), datetime.now(UTC)
        blank = Observation(
            cluster=obj,
            spec=None,
            spec_error=None,
            wired=False,
            inbox_partitions=None,
            wired_now=(),
            claims=(),
            wire_events=(),
            chat=None,
            api=None,
            push=None,
            raw_pods=(),
            pods=(),
            readings=Readings(),
            memory=state.memory,
            deletion_began={},
            now=now,
            mono=mono,
            stamp_now=stamp,
        )
        if paused(obj):  # hands off: nothing more is read
            return blank
        try:
            check_name(name)
            spec = parse_spec(
                obj.get("spec") or {},
                default_tls_secret=certificate_name(name),
                cluster=(namespace, name),
            )
        except SpecError as exc:
            return replace(blank, spec_error=str(exc))

        annotations = meta.get("annotations") or {}
        wired_now = [
            *await self._wire_changed_spec(namespace, state, spec, annotations),
            *state.rewire_verdicts,
        ]
        state.rewire_verdicts = []
        self._rewire_when_due(namespace, state, spec, annotations)
        events, state.wire_events = state.wire_events, []

        sts, raw_pods, api, push = await self._children(namespace, name)
        pods = sorted((pod_view(p) for p in raw_pods), key=lambda p: p.ordinal)
        members, total = await self._connections(state, spec, pods)
        history = None
        if state.reader is not None and members is not None:
            recent = state.reader.history()
            history = {sid: tuple(recent.get(sid, ())) for sid in members}
        began = {
            seen.uid: at
            for seen in state.memory.pods_seen.values()
            if (at := self.departures.began(seen.uid)) is not None
        }
        return replace(
            blank,
            spec=spec,
            spec_error=state.spec_error,
            wired=state.wired_key == wiring_key(spec),
            inbox_partitions=state.inbox_partitions,
            wired_now=tuple(wired_now),
            claims=tuple(self._claims(state)),
            wire_events=tuple(events),
            chat=sts,
            api=api,
            push=push,
            raw_pods=tuple(raw_pods),
            pods=tuple(pods),
            readings=Readings(members, total, history),
            deletion_began=began,
            force_apply=force_apply,
            resync_s=self.options.resync_s,
        )

    async def _act(self, observation: Observation, state: ClusterState) -> None:
        """Carry out the plan: answer its questions (an eviction, an apply) and plan again,
        then scale, remove a refused drain annotation, write the status, post the Events."""
        meta = observation.meta
        name, namespace = str(meta["name"]), str(meta["namespace"])
        if observation.spec is None and observation.spec_error is not None:
            state.spec_error = observation.spec_error
        counted = False
        while True:
            step = plan(observation)
            if step.memory is not None:
                state.memory = step.memory
            if step.lost and not counted:
                metrics.DISRUPTIONS.labels(namespace, name).inc(step.lost)
                counted = True
            answers = observation.answers
            if isinstance(step.ask, Evict):
                went = await self._evict(namespace, name, step.ask)
                evicted = {**answers.evicted, (step.ask.why, step.ask.uid): went}
                answers = replace(answers, evicted=evicted)
            elif isinstance(step.ask, Apply):
                assert observation.spec is not None  # an apply is planned for a spec
                applied = await self._apply(observation, observation.spec, state, step.ask)
                answers = replace(answers, applied=applied)
            else:
                break
            observation = replace(observation, answers=answers)

        if step.scale_to is not None:
            await self.kube.request(
                "PATCH",
                KINDS["StatefulSet"].path(namespace, names.chat_name(name), "scale"),
                {"spec": {"replicas": step.scale_to}},
                content_type="application/merge-patch+json",
            )
        if step.remove_drain:
            await self._remove_annotation(namespace, name, ANNOTATION_DRAIN)
        if step.status_patch:
            await self.kube.patch_status(namespace, name, dict(step.status_patch))
        if step.gauges is not None:
            self._set_gauges(namespace, name, step.gauges)
        for kind, reason, message in step.events:
            log.info("%s/%s %s: %s", namespace, name, reason, message)
            await self.kube.post_event(
                dict(observation.cluster), type_=kind, reason=reason, message=message
            )

    async def _evict(self, namespace: str, name: str, ask: Evict) -> bool:
        """Evict a chat pod; False when the disruption budget says not now. A drain asked
        for is done once: its annotation goes when the eviction went through."""
        went = await self.kube.evict(namespace, ask.pod, ask.uid)
        if went and ask.why == "drain":
            await self._remove_annotation(namespace, name, ANNOTATION_DRAIN)
        if went and ask.why == "rollout":
            metrics.ROLLOUT_REPLACEMENTS.labels(namespace, name).inc()
        return went

    async def _apply(
        self, observation: Observation, spec: ClusterSpec, state: ClusterState, ask: Apply
    ) -> Applied:
        """Apply the children unless the PostgreSQL database the pods would be given is not
        the cluster's (``DatabaseChanged``: nothing applied); stamp the Secrets' hash on
        the pod templates; prune the exposure children the spec no longer asks for."""
        meta = observation.meta
        name, namespace = str(meta["name"]), str(meta["namespace"])
        pod_secrets = await self._pod_secrets(namespace, state, spec)
        try:
            self._check_database(
                state,
                spec,
                meta.get("annotations") or {},
                (pod_secrets.get(spec.postgres_url.name) or {}).get(spec.postgres_url.key),
            )
        except _Conflict:
            return Applied(False, claims=tuple(self._claims(state)))
        manifests = list(ask.manifests)
        kept = stamp_secrets_hash(manifests, pod_secrets, ask.current)  # in place
        for manifest in manifests:
            await self.kube.apply(manifest)
        await self._prune_exposed(namespace, name, manifests)
        return Applied(True, tuple(kept), tuple(self._claims(state)))

    @staticmethod
    def _set_gauges(namespace: str, name: str, gauges: Mapping[str, int | None]) -> None:
        metrics.CHAT_REPLICAS_DESIRED.labels(namespace, name).set(gauges["desired"] or 0)
        metrics.CHAT_REPLICAS_ACTUAL.labels(namespace, name).set(gauges["replicas"] or 0)
        metrics.CHAT_REPLICAS_READY.labels(namespace, name).set(gauges["ready"] or 0)
        metrics.ROLLOUT_HALTED.labels(namespace, name).set(gauges["halted"] or 0)
        total = gauges["total"]
        if total is None:
            with contextlib.suppress(KeyError):
                metrics.CONNECTIONS.remove(namespace, name)
        else:
            metrics.CONNECTIONS.labels(namespace, name).set(total)
