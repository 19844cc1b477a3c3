"""A ChatCluster's spec as typed values, with the CRD's defaults, checked.

The API server applies the CRD's defaults and bounds before the operator sees an object;
:func:`parse_spec` applies the same defaults again (an object stored under an older CRD
may lack a field) and checks what a schema cannot say. A spec that cannot work raises
:class:`SpecError` (the handlers turn it into ``kopf.PermanentError``). The defaults here
are pinned to the CRD's by ``tests/unit/operator/test_operator_spec.py``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tidings_operator import names
from tidings_operator.expose_spec import (
    ExposeError,
    ExposeSpec,
    TlsSpec,
    parse_expose,
    parse_tls,
)
from tidings_operator.media_spec import MediaError, MediaSpec, parse_media
from tidings_operator.podtemplate import PodTemplate, PodTemplateError, parse_pod_template

__all__ = [
    "ApiSpec",
    "CassandraSpec",
    "ChatSpec",
    "ClusterSpec",
    "EngineTls",
    "KafkaSpec",
    "PushSpec",
    "SecretKeyRef",
    "SpecError",
    "check_name",
    "default_keyspace",
    "default_topic_prefix",
    "parse_spec",
    "seconds_text",
]

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_TOPIC_PREFIX = re.compile(r"^[a-zA-Z0-9._-]{1,100}$")
_KEYSPACE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,47}$")

# The chat servers' inbox consumer group (spec.kafka.sessionTimeoutSeconds and
# heartbeatIntervalSeconds). Unset, nothing is passed and the servers run their own
# defaults, these (the workloads' Settings.kafka_session_timeout_s and
# kafka_heartbeat_interval_s; tests/unit/operator/test_operator_kafka_group.py pins them).
CHAT_SESSION_TIMEOUT_S = 6.0
CHAT_HEARTBEAT_INTERVAL_S = 1.0
# The session's bounds, as the CRD's. At least the chat servers' membership TTL (3 s, the
# operator does not change it: discovery must stop naming a dead server before its
# partitions move) and more than Cassandra's write_request_timeout (2 s: a dead server's
# writes are applied or dropped before a new owner reads; docs/architecture.md).
MIN_SESSION_TIMEOUT_S = 3.0
MAX_SESSION_TIMEOUT_S = 300.0
MIN_HEARTBEAT_INTERVAL_S = 0.1
MAX_HEARTBEAT_INTERVAL_S = 100.0


class SpecError(ValueError):
    """The spec cannot work as written; the message says what to change."""


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class Resources:
    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


@dataclass(frozen=True, slots=True)
class ChatSpec:
    replicas: int | None = None
    min_replicas: int = 1
    max_replicas: int = 10
    autoscaling: bool = True
    target_connections_per_pod: int = 50_000
    scale_down_stabilization_s: int = 300
    drain_budget_s: int = 30
    progress_deadline_s: int = 600
    port: int = 8080
    resources: Resources = field(default_factory=Resources)
    pod_template: PodTemplate = field(default_factory=PodTemplate)
    expose: ExposeSpec = field(default_factory=ExposeSpec)


@dataclass(frozen=True, slots=True)
class ApiSpec:
    replicas: int = 2
    port: int = 8080
    resources: Resources = field(default_factory=Resources)
    pod_template: PodTemplate = field(default_factory=PodTemplate)


@dataclass(frozen=True, slots=True)
class PushSpec:
    replicas: int = 1
    credentials_secret: str | None = None
    resources: Resources = field(default_factory=Resources)
    pod_template: PodTemplate = field(default_factory=PodTemplate)


@dataclass(frozen=True, slots=True)
class EngineTls:
    """TLS to Kafka or Cassandra: the CA that signed the brokers' or nodes' certificates,
    from a Secret (Strimzi: ``<cluster>-cluster-ca-cert``, key ``ca.crt``); None for
    Kafka: the system's CAs. ``verify_hostname`` (Cassandra): the nodes' certificates must
    also name their addresses (Kafka always checks that)."""

    ca: SecretKeyRef | None = None
    verify_hostname: bool = False


@dataclass(frozen=True, slots=True)
class KafkaSpec:
    bootstrap_servers: str
    topic_prefix: str = "tidings"
    inbox_partitions: int = 64
    replication_factor: int = 3
    retention_hours: int = 168
    auth_secret: str | None = None
    tls: EngineTls | None = None  # None: the auth Secret's protocol decides
    # The chat servers' consumer group; None: the servers' default (not passed).
    session_timeout_s: float | None = None
    heartbeat_interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class CassandraSpec:
    contact_points: tuple[str, ...]
    port: int = 9042
    keyspace: str = "tidings"
    replication_factor: int = 3
    local_datacenter: str | None = None
    consistency: str = "LOCAL_QUORUM"
    auth_secret: str | None = None
    tls: EngineTls | None = None

    def replication(self) -> str:
        """The CQL replication map for a new keyspace."""
        if self.local_datacenter:
            return (
                "{'class': 'NetworkTopologyStrategy', "
                f"'{self.local_datacenter}': {self.replication_factor}}}"
            )
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {self.replication_factor}}}"


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    image: str
    kafka: KafkaSpec
    cassandra: CassandraSpec
    postgres_url: SecretKeyRef
    jwt_secret: SecretKeyRef
    image_pull_policy: str = "IfNotPresent"
    chat: ChatSpec = field(default_factory=ChatSpec)
    api: ApiSpec = field(default_factory=ApiSpec)
    push: PushSpec = field(default_factory=PushSpec)
    heartbeat_s: int = 5
    offline_after_s: int = 30
    tls: TlsSpec | None = None
    media: MediaSpec | None = None  # spec.media: None, no media store

    def secret_names(self) -> list[str]:
        """Every Secret the spec refers to, sorted."""
        found = {self.postgres_url.name, self.jwt_secret.name}
        for optional in (self.kafka.auth_secret, self.cassandra.auth_secret):
            if optional:
                found.add(optional)
        if self.push.credentials_secret:
            found.add(self.push.credentials_secret)
        if self.tls is not None and self.tls.issuer is None:
            found.add(self.tls.secret_name)
        if self.media is not None:
            found.update(self.media.secret_names())
        for tls in (self.kafka.tls, self.cassandra.tls):
            if tls is not None and tls.ca is not None:
                found.add(tls.ca.name)
        return sorted(found)


def check_name(name: str) -> None:
    """A ChatCluster's name must make valid child names (Services want DNS-1035 labels)."""
    if len(name) > names.MAX_NAME_LENGTH or not _DNS_1035.match(name):
        raise SpecError(
            f"metadata.name {name!r} must be a DNS-1035 label of at most "
            f"{names.MAX_NAME_LENGTH} characters (lower-case letters, digits and '-', starting "
            "with a letter): it names the Services and the chat pods' host names"
        )


def _obj(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{key} must be an object")
    return value


def _int(raw: Mapping[str, Any], key: str, default: int, path: str, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}.{key} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(f"{path}.{key} must be within {lo}..{hi}, got {value}")
    return value


def _seconds(raw: Mapping[str, Any], key: str, path: str, lo: float, hi: float) -> float | None:
    """An optional number of seconds (an integer or not); None when unset."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{path}.{key} must be a number, got {value!r}")
    if not lo <= value <= hi:  # NaN fails too
        raise SpecError(
            f"{path}.{key} must be within {seconds_text(lo)}..{seconds_text(hi)}, got {value}"
        )
    return float(value)


def seconds_text(value: float) -> str:
    """Seconds as the environment and messages show them: ``6``, ``2.5``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _str(raw: Mapping[str, Any], key: str, default: str | None, path: str) -> str | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError(f"{path}.{key} must be a string, got {value!r}")
    return value


def _required_str(raw: Mapping[str, Any], key: str, path: str) -> str:
    value = _str(raw, key, None, path)
    if not value:
        raise SpecError(f"{path}.{key} is required")
    return value


def _secret_name(raw: Mapping[str, Any], key: str, path: str) -> str | None:
    ref = _obj(raw, key)
    return _required_str(ref, "name", f"{path}.{key}") if ref else None


def _key_ref(raw: Mapping[str, Any], key: str, path: str) -> SecretKeyRef:
    ref = _obj(raw, key)
    if not ref:
        raise SpecError(f"{path}.{key} is required (a Secret name and key)")
    return SecretKeyRef(
        _required_str(ref, "name", f"{path}.{key}"), _required_str(ref, "key", f"{path}.{key}")
    )


def _engine_tls(raw: Mapping[str, Any], path: str, *, ca_required: bool) -> EngineTls | None:
    if raw.get("tls") is None:
        return None
    tls, p = _obj(raw, "tls"), f"{path}.tls"
    ref = _obj(tls, "caSecretRef")
    ca = None
    if ref:
        key = _str(ref, "key", "ca.crt", f"{p}.caSecretRef") or "ca.crt"
        ca = SecretKeyRef(_required_str(ref, "name", f"{p}.caSecretRef"), key)
    elif ca_required:
        raise SpecError(
            f"{p}.caSecretRef is required: the message store's driver trusts no CA by itself "
            "(name the Secret with the CA that signed the nodes' certificates)"
        )
    verify = tls.get("verifyHostname", False)
    if not isinstance(verify, bool):
        raise SpecError(f"{p}.verifyHostname must be true or false")
    return EngineTls(ca=ca, verify_hostname=verify)


def _resources(raw: Mapping[str, Any]) -> Resources:
    res = _obj(raw, "resources")
    return Resources(
        requests={str(k): str(v) for k, v in _obj(res, "requests").items()},
        limits={str(k): str(v) for k, v in _obj(res, "limits").items()},
    )


def _chat(raw: Mapping[str, Any]) -> ChatSpec:
    p = "spec.chat"
    d = ChatSpec()
    top = names.MAX_CHAT_REPLICAS
    replicas = raw.get("replicas")
    if replicas is not None:
        replicas = _int(raw, "replicas", 0, p, 0, top)
    autoscaling = raw.get("autoscaling", d.autoscaling)
    if not isinstance(autoscaling, bool):
        raise SpecError(f"{p}.autoscaling must be true or false")
    chat = ChatSpec(
        replicas=replicas,
        min_replicas=_int(raw, "minReplicas", d.min_replicas, p, 1, top),
        max_replicas=_int(raw, "maxReplicas", d.max_replicas, p, 1, top),
        autoscaling=autoscaling,
        target_connections_per_pod=_int(
            raw, "targetConnectionsPerPod", d.target_connections_per_pod, p, 1, 1_000_000
        ),
        scale_down_stabilization_s=_int(
            raw, "scaleDownStabilizationSeconds", d.scale_down_stabilization_s, p, 0, 86_400
        ),
        drain_budget_s=_int(raw, "drainBudgetSeconds", d.drain_budget_s, p, 1, 3600),
        progress_deadline_s=_int(
            raw, "progressDeadlineSeconds", d.progress_deadline_s, p, 10, 86_400
        ),
        port=_int(raw, "port", d.port, p, 1, 65535),
        resources=_resources(raw),
        pod_template=_pod_template(raw, p),
        expose=_checked(parse_expose, _obj(raw, "expose"), max_replicas=_max_ordinals(raw)),
    )
    if chat.min_replicas > chat.max_replicas:
        raise SpecError(
            f"{p}.minReplicas ({chat.min_replicas}) is more than "
            f"{p}.maxReplicas ({chat.max_replicas})"
        )
    return chat


def _max_ordinals(raw: Mapping[str, Any]) -> int:
    """How many chat pods may need an address: maxReplicas, or replicas if more."""
    most = raw.get("maxReplicas", ChatSpec().max_replicas)
    replicas = raw.get("replicas")
    if isinstance(replicas, int) and isinstance(most, int):
        return max(most, replicas)
    return int(most) if isinstance(most, int) else ChatSpec().max_replicas


def _checked(parse: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return parse(*args, **kwargs)
    except (ExposeError, PodTemplateError, MediaError) as exc:
        raise SpecError(str(exc)) from None


def _pod_template(raw: Mapping[str, Any], path: str) -> PodTemplate:
    template: PodTemplate = _checked(
        parse_pod_template, raw.get("podTemplate"), f"{path}.podTemplate"
    )
    return template


def _kafka(raw: Mapping[str, Any], default_prefix: str) -> KafkaSpec:
    p = "spec.kafka"
    d = KafkaSpec(bootstrap_servers="")
    prefix = _str(raw, "topicPrefix", default_prefix, p) or default_prefix
    if not _TOPIC_PREFIX.match(prefix):
        raise SpecError(f"{p}.topicPrefix {prefix!r} is not a valid Kafka topic name prefix")
    session = _seconds(
        raw, "sessionTimeoutSeconds", p, MIN_SESSION_TIMEOUT_S, MAX_SESSION_TIMEOUT_S
    )
    heartbeat = _seconds(
        raw, "heartbeatIntervalSeconds", p, MIN_HEARTBEAT_INTERVAL_S, MAX_HEARTBEAT_INTERVAL_S
    )
    _check_group_timing(session, heartbeat)
    return KafkaSpec(
        bootstrap_servers=_required_str(raw, "bootstrapServers", p),
        topic_prefix=prefix,
        inbox_partitions=_int(raw, "inboxPartitions", d.inbox_partitions, p, 1, 10_000),
        replication_factor=_int(raw, "replicationFactor", d.replication_factor, p, 1, 10),
        retention_hours=_int(raw, "retentionHours", d.retention_hours, p, 1, 87_600),
        auth_secret=_secret_name(raw, "authSecretRef", p),
        tls=_engine_tls(raw, p, ca_required=False),
        session_timeout_s=session,
        heartbeat_interval_s=heartbeat,
    )


def _check_group_timing(session: float | None, heartbeat: float | None) -> None:
    """The chat servers' own check (Settings refuses to start otherwise), on the values
    they would run: a field left unset is their default."""
    run_session = CHAT_SESSION_TIMEOUT_S if session is None else session
    run_heartbeat = CHAT_HEARTBEAT_INTERVAL_S if heartbeat is None else heartbeat
    if run_heartbeat * 3 > run_session:
        unset = " (unset: the chat servers' default)"
        raise SpecError(
            f"spec.kafka.heartbeatIntervalSeconds ({seconds_text(run_heartbeat)}"
            f"{unset if heartbeat is None else ''}) must be at most a third of "
            f"spec.kafka.sessionTimeoutSeconds ({seconds_text(run_session)}"
            f"{unset if session is None else ''}): a chat server must be able to miss a "
            "heartbeat without being dropped from the consumer group (and its clients "
            "sent away); lower the heartbeat or raise the session"
        )


def _cassandra(raw: Mapping[str, Any], default_keyspace: str) -> CassandraSpec:
    p = "spec.cassandra"
    d = CassandraSpec(contact_points=(), keyspace=default_keyspace)
    points = raw.get("contactPoints")
    if (
        not isinstance(points, list)
        or not points
        or not all(isinstance(x, str) and x for x in points)
    ):
        raise SpecError(f"{p}.contactPoints must be a non-empty list of host names")
    keyspace = _str(raw, "keyspace", d.keyspace, p) or d.keyspace
    if not _KEYSPACE.match(keyspace):
        raise SpecError(f"{p}.keyspace {keyspace!r} is not a valid Cassandra keyspace name")
    consistency = _str(raw, "consistency", d.consistency, p) or d.consistency
    if consistency not in ("ONE", "LOCAL_ONE", "LOCAL_QUORUM", "QUORUM", "EACH_QUORUM", "ALL"):
        raise SpecError(f"{p}.consistency {consistency!r} is not a consistency level")
    return CassandraSpec(
        contact_points=tuple(points),
        port=_int(raw, "port", d.port, p, 1, 65535),
        keyspace=keyspace,
        replication_factor=_int(raw, "replicationFactor", d.replication_factor, p, 1, 10),
        local_datacenter=_str(raw, "localDatacenter", None, p) or None,
        consistency=consistency,
        auth_secret=_secret_name(raw, "authSecretRef", p),
        tls=_engine_tls(raw, p, ca_required=True),
    )


def default_topic_prefix(namespace: str, name: str) -> str:
    """``<namespace>.<name>``: unique per ChatCluster (both are DNS labels, so valid)."""
    return f"{namespace}.{name}"


def default_keyspace(namespace: str, name: str) -> str:
    """``<namespace>_<name>`` as a keyspace name: '-' as '_', a letter first, and past 48
    characters shortened with a hash of both (so still unique)."""
    base = f"{namespace}_{name}".replace("-", "_")
    if not base[0].isalpha():
        base = f"t_{base}"
    if len(base) > 48:
        digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
        base = f"{base[:39]}_{digest}"
    return base


def parse_spec(
    raw: Mapping[str, Any],
    *,
    default_tls_secret: str = "tidings-tls",
    cluster: tuple[str, str] | None = None,
) -> ClusterSpec:
    """The typed spec; :class:`SpecError` when it cannot work. ``default_tls_secret`` names
    the Secret cert-manager writes when ``spec.tls`` gives an issuer and no secretName;
    ``cluster`` (namespace, name) gives the defaults of the topic prefix and keyspace
    (without it: ``tidings``, as before those defaults)."""
    image = _required_str(raw, "image", "spec")
    pull = _str(raw, "imagePullPolicy", "IfNotPresent", "spec") or "IfNotPresent"
    if pull not in ("Always", "IfNotPresent", "Never"):
        raise SpecError(f"spec.imagePullPolicy {pull!r} is not Always, IfNotPresent or Never")
    api_raw, push_raw, presence = _obj(raw, "api"), _obj(raw, "push"), _obj(raw, "presence")
    d_api, d_push = ApiSpec(), PushSpec()
    api = ApiSpec(
        replicas=_int(api_raw, "replicas", d_api.replicas, "spec.api", 0, names.MAX_API_REPLICAS),
        port=_int(api_raw, "port", d_api.port, "spec.api", 1, 65535),
        resources=_resources(api_raw),
        pod_template=_pod_template(api_raw, "spec.api"),
    )
    push = PushSpec(
        replicas=_int(push_raw, "replicas", d_push.replicas, "spec.push", 0, 100),
        credentials_secret=_secret_name(push_raw, "credentialsSecretRef", "spec.push"),
        resources=_resources(push_raw),
        pod_template=_pod_template(push_raw, "spec.push"),
    )
    chat = _chat(_obj(raw, "chat"))
    heartbeat = _int(presence, "heartbeatSeconds", 5, "spec.presence", 1, 60)
    offline = _int(presence, "offlineAfterSeconds", 30, "spec.presence", 5, 600)
    if offline <= heartbeat:
        raise SpecError(
            f"spec.presence.offlineAfterSeconds ({offline}) must be more than "
            f"heartbeatSeconds ({heartbeat}), or every device would flap offline"
        )
    for path, port in (("spec.chat.port", chat.port), ("spec.api.port", api.port)):
        if port == names.METRICS_PORT:
            raise SpecError(
                f"{path} {port} is the port the pods serve their metrics on; choose another"
            )
    postgres = _obj(raw, "postgres")
    tls: TlsSpec | None = _checked(parse_tls, _obj(raw, "tls"), default_secret=default_tls_secret)
    _check_tls_names(chat.expose, tls)
    return ClusterSpec(
        image=image,
        image_pull_policy=pull,
        chat=chat,
        api=api,
        push=push,
        heartbeat_s=heartbeat,
        offline_after_s=offline,
        kafka=_kafka(_obj(raw, "kafka"), default_topic_prefix(*cluster) if cluster else "tidings"),
        cassandra=_cassandra(
            _obj(raw, "cassandra"), default_keyspace(*cluster) if cluster else "tidings"
        ),
        postgres_url=_key_ref(postgres, "urlSecretRef", "spec.postgres"),
        jwt_secret=_key_ref(raw, "jwtSecretRef", "spec"),
        tls=tls,
        media=_checked(parse_media, raw.get("media")),
    )


def _check_tls_names(expose: ExposeSpec, tls: TlsSpec | None) -> None:
    if tls is None or tls.issuer is None:
        return
    if not (expose.host_template or expose.api.host or tls.dns_names or tls.ip_addresses):
        raise SpecError(
            "spec.tls.issuerRef: the certificate would name no host; set "
            "spec.chat.expose.hostTemplate, spec.chat.expose.api.host, spec.tls.dnsNames or "
            "spec.tls.ipAddresses"
        )
