"""Pure builders: the manifests of a ChatCluster's children, from its spec.

No I/O and no clock: the same inputs give the same dicts, which the operator applies
with server-side apply (so applying an unchanged manifest changes nothing). Every child
carries a controller owner reference to its ChatCluster, so deleting the ChatCluster
deletes them (the Kafka topics and the Cassandra keyspace stay: data is never dropped).

- ConfigMap ``<name>-config``: the ``TIDINGS_*`` settings every process shares.
- chat: a StatefulSet ``<name>-chat`` (``OnDelete``: the operator replaces pods one at a
  time) with a headless Service of the same name, a ``preStop`` pause before the drain,
  readiness from the gateway's ``/readyz`` and a grace period from the drain budget.
- api: a StatefulSet ``<name>-api`` whose ordinals start at 896, so each pod's ordinal is
  its unique Snowflake worker id (a Deployment has no stable, unique number per pod), and
  a Service ``<name>-api``.
- push: a Deployment ``<name>-push``.
- Every workload pod serves Prometheus metrics on its container port ``metrics``
  (``names.METRICS_PORT``, from the ConfigMap's ``TIDINGS_METRICS_*``), never on ``http``;
  the chat and api Services carry that port too, for a ServiceMonitor.
- PodDisruptionBudgets for chat and api: one pod at a time.
- ``spec.media``: the chat and api containers get the ``TIDINGS_MEDIA_*`` settings
  (:func:`~tidings_operator.media_spec.media_env`; the credentials by ``secretKeyRef``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NotRequired, TypedDict

from tidings_operator import names
from tidings_operator.engine_tls import add_engine_tls
from tidings_operator.expose import TLS_MOUNT, build_expose, chat_url_template, tls_at_pods
from tidings_operator.media_spec import media_env
from tidings_operator.podtemplate import PodTemplate, default_resources, default_spread
from tidings_operator.spec import ClusterSpec, Resources, SecretKeyRef, seconds_text

__all__ = [
    "DRAIN_MARGIN_S",
    "JWT_PREVIOUS_SECRETS_KEY",
    "PRESTOP_PAUSE_S",
    "Manifest",
    "Owner",
    "OwnerReference",
    "build_all",
    "build_api_pdb",
    "build_api_service",
    "build_api_statefulset",
    "build_chat_pdb",
    "build_chat_service",
    "build_chat_statefulset",
    "build_config_map",
    "build_owner_reference",
    "build_push_deployment",
    "config_data",
    "config_hash",
    "termination_grace_seconds",
]

Manifest = dict[str, Any]

# Before SIGTERM a chat pod pauses this long (preStop), so Services and load balancers
# stop sending it new connections before it starts sending clients away.
PRESTOP_PAUSE_S = 3
# On top of the drain budget: time to flush, leave the group and exit.
DRAIN_MARGIN_S = 10
RUN_AS = 10001


class OwnerReference(TypedDict):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict):
    name: str
    namespace: str
    labels: dict[str, str]
    ownerReferences: list[OwnerReference]
    annotations: NotRequired[dict[str, str]]


class Owner(TypedDict):
    """What the builders need to know about the ChatCluster itself."""

    name: str
    namespace: str
    uid: str


def build_owner_reference(owner: Owner) -> OwnerReference:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": owner["name"],
        "uid": owner["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(owner: Owner, name: str, component: str) -> ObjectMeta:
    return {
        "name": name,
        "namespace": owner["namespace"],
        "labels": names.labels(owner["name"], component),
        "ownerReferences": [build_owner_reference(owner)],
    }


def termination_grace_seconds(spec: ClusterSpec) -> int:
    """The preStop pause, the drain budget, and a margin to exit."""
    return PRESTOP_PAUSE_S + spec.chat.drain_budget_s + DRAIN_MARGIN_S


def config_data(spec: ClusterSpec, inbox_partitions: int) -> dict[str, str]:
    """The settings every process shares (``TIDINGS_*``), none of them secret.

    ``inbox_partitions`` is the inbox topic's real partition count, which may be more
    than the spec asks for (partitions never shrink): every process must hash users the
    same way.
    """
    kafka, cassandra = spec.kafka, spec.cassandra
    data = {
        "TIDINGS_HOST": "0.0.0.0",
        # Metrics on a port of their own (the public port does not serve them).
        "TIDINGS_METRICS_HOST": "0.0.0.0",
        "TIDINGS_METRICS_PORT": str(names.METRICS_PORT),
        "TIDINGS_LOG_JSON": "true",
        "TIDINGS_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "TIDINGS_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "TIDINGS_KAFKA_INBOX_PARTITIONS": str(inbox_partitions),
        "TIDINGS_KAFKA_REPLICATION_FACTOR": str(kafka.replication_factor),
        "TIDINGS_CASSANDRA_CONTACT_POINTS": json.dumps(list(cassandra.contact_points)),
        "TIDINGS_CASSANDRA_PORT": str(cassandra.port),
        "TIDINGS_CASSANDRA_KEYSPACE": cassandra.keyspace,
        "TIDINGS_CASSANDRA_CONSISTENCY": cassandra.consistency,
        "TIDINGS_CASSANDRA_REPLICATION": cassandra.replication(),
        "TIDINGS_HEARTBEAT_S": str(spec.heartbeat_s),
        "TIDINGS_PRESENCE_OFFLINE_AFTER_S": str(spec.offline_after_s),
        "TIDINGS_DRAIN_BUDGET_S": str(spec.chat.drain_budget_s),
    }
    if cassandra.local_datacenter:
        data["TIDINGS_CASSANDRA_LOCAL_DC"] = cassandra.local_datacenter
    return data


def config_hash(data: dict[str, str]) -> str:
    """A short, stable hash of the ConfigMap's data (pod templates carry it)."""
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def build_config_map(owner: Owner, spec: ClusterSpec, inbox_partitions: int) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(owner, names.config_name(owner["name"]), "config"),
        "data": config_data(spec, inbox_partitions),
    }


def _secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


# The key, in the Secret jwtSecretRef names, of the earlier signing secrets that are still
# accepted (comma-separated; optional). Rotation: docs/security.md, "Tokens".
JWT_PREVIOUS_SECRETS_KEY = "jwt-previous-secrets"


def _jwt_env(ref: SecretKeyRef) -> list[dict[str, Any]]:
    """The signing secret, and the previous ones from the same Secret if it has them."""
    previous = {"name": ref.name, "key": JWT_PREVIOUS_SECRETS_KEY, "optional": True}
    return [
        _secret_env("TIDINGS_JWT_SECRET", ref),
        {"name": "TIDINGS_JWT_PREVIOUS_SECRETS", "valueFrom": {"secretKeyRef": previous}},
    ]


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _common_env(spec: ClusterSpec) -> list[dict[str, Any]]:
    env = [
        _field_env("TIDINGS_SERVER_ID", "metadata.name"),
        _secret_env("TIDINGS_POSTGRES_URL", spec.postgres_url),
    ]
    if spec.cassandra.auth_secret:
        env.append(
            _secret_env(
                "TIDINGS_CASSANDRA_USERNAME", SecretKeyRef(spec.cassandra.auth_secret, "username")
            )
        )
        env.append(
            _secret_env(
                "TIDINGS_CASSANDRA_PASSWORD", SecretKeyRef(spec.cassandra.auth_secret, "password")
            )
        )
    return env


def _env_from(owner: Owner, spec: ClusterSpec, *extra_secrets: str | None) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = [{"configMapRef": {"name": names.config_name(owner["name"])}}]
    for secret in (spec.kafka.auth_secret, *extra_secrets):
        if secret:
            sources.append({"secretRef": {"name": secret}})
    return sources


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _http_probe(
    path: str, period: int, failures: int, timeout: int = 2, *, tls: bool = False
) -> dict[str, Any]:
    get = {"path": path, "port": "http", **({"scheme": "HTTPS"} if tls else {})}
    return {
        "httpGet": get,
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


_METRICS_CONTAINER_PORT = {
    "name": names.METRICS_PORT_NAME,
    "containerPort": names.METRICS_PORT,
    "protocol": "TCP",
}


def _ports(http_port: int) -> list[dict[str, Any]]:
    """The public port and the metrics port of a chat or api container."""
    return [
        {"name": "http", "containerPort": http_port, "protocol": "TCP"},
        dict(_METRICS_CONTAINER_PORT),
    ]


def _service_ports(http_port: int) -> list[dict[str, Any]]:
    return [
        {"name": "http", "port": http_port, "targetPort": "http", "protocol": "TCP"},
        {
            "name": names.METRICS_PORT_NAME,
            "port": names.METRICS_PORT,
            "targetPort": names.METRICS_PORT_NAME,
            "protocol": "TCP",
        },
    ]


def resources_of(
    spec: ClusterSpec, component: str, resources: Resources, template: PodTemplate
) -> dict[str, Any]:
    """podTemplate.resources, else the component's ``resources``, else the defaults."""
    if template.resources is not None:
        return template.resources
    return resources.as_dict() or default_resources(component, spec.chat.target_connections_per_pod)


def _with_resources(container: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
    if resources:
        container["resources"] = resources
    return container


def _pod_template(
    owner: Owner,
    component: str,
    containers: list[dict[str, Any]],
    config: str,
    template: PodTemplate,
    *,
    tls_secret: str | None = None,
    restart: str | None = None,
    **pod_spec: Any,
) -> dict[str, Any]:
    """``restart``: the ChatCluster's ``tidings.dev/restart`` value, copied onto the
    template, so a new value is a new revision: the paced rollout replaces every pod."""
    selector = names.selector_labels(owner["name"], component)
    annotations = {**template.annotations, names.ANNOTATION_CONFIG_HASH: config}
    if restart:
        annotations[names.ANNOTATION_RESTART] = restart
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if tls_secret is not None:
        volumes.append({"name": "tls", "secret": {"secretName": tls_secret}})
    return {
        "metadata": {
            # The operator's own keys win: selectors and the config hash depend on them.
            "labels": {**template.labels, **names.labels(owner["name"], component)},
            "annotations": annotations,
        },
        "spec": {
            "enableServiceLinks": False,
            "securityContext": _pod_security(),
            "containers": containers,
            "volumes": volumes,
            **template.pod_spec_fields(default_spread(selector)),
            **pod_spec,
        },
    }


_TMP_MOUNT = [{"name": "tmp", "mountPath": "/tmp"}]


def _tls_secret(spec: ClusterSpec) -> str | None:
    """The Secret the chat and api pods mount, when they end TLS themselves."""
    if spec.tls is not None and tls_at_pods(spec.chat.expose, spec.tls):
        return spec.tls.secret_name
    return None


def _tls_env(secret: str | None) -> list[dict[str, Any]]:
    if secret is None:
        return []
    return [
        {"name": "TIDINGS_TLS_CERT_FILE", "value": f"{TLS_MOUNT}/tls.crt"},
        {"name": "TIDINGS_TLS_KEY_FILE", "value": f"{TLS_MOUNT}/tls.key"},
    ]


def _mounts(secret: str | None) -> list[dict[str, Any]]:
    if secret is None:
        return list(_TMP_MOUNT)
    return [*_TMP_MOUNT, {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True}]


def _public_url_env(owner: Owner, spec: ClusterSpec) -> list[dict[str, Any]]:
    """The chat server's public URL (a template it fills in at start) and what it needs
    for that: the node's address and the node port base in mode nodePort."""
    chat, expose = spec.chat, spec.chat.expose
    url = chat_url_template(
        expose, spec.tls, cluster=owner["name"], namespace=owner["namespace"], port=chat.port
    )
    env = [{"name": "TIDINGS_PUBLIC_CHAT_URL", "value": url}]
    if "{hostIP}" in url:
        env.append(_field_env("TIDINGS_HOST_IP", "status.hostIP"))
    if "{nodePort}" in url and expose.node_port_base is not None:
        env.append({"name": "TIDINGS_PUBLIC_NODE_PORT_BASE", "value": str(expose.node_port_base)})
    return env


def _group_timing_env(spec: ClusterSpec) -> list[dict[str, Any]]:
    """The chat servers' consumer-group timings, only those the spec sets (unset: the
    servers' own defaults). Chat only: api joins no group, push has its own."""
    env = []
    if spec.kafka.session_timeout_s is not None:
        env.append(
            {
                "name": "TIDINGS_KAFKA_SESSION_TIMEOUT_S",
                "value": seconds_text(spec.kafka.session_timeout_s),
            }
        )
    if spec.kafka.heartbeat_interval_s is not None:
        env.append(
            {
                "name": "TIDINGS_KAFKA_HEARTBEAT_INTERVAL_S",
                "value": seconds_text(spec.kafka.heartbeat_interval_s),
            }
        )
    return env


def build_chat_statefulset(
    owner: Owner, spec: ClusterSpec, replicas: int, config: str, restart: str | None = None
) -> Manifest:
    """The chat servers: ``OnDelete`` (the operator replaces pods), parallel scaling."""
    name, chat = names.chat_name(owner["name"]), spec.chat
    tls = _tls_secret(spec)
    container = {
        "name": names.CHAT,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["tidings", "chat"],
        "ports": _ports(chat.port),
        "envFrom": _env_from(owner, spec),
        "env": [
            *_common_env(spec),
            _field_env("TIDINGS_WORKER_ID", f"metadata.labels['{names.LABEL_POD_INDEX}']"),
            # In its membership record: the operator tells a replaced pod's record from
            # its successor's (same name) by it.
            _field_env("TIDINGS_POD_UID", "metadata.uid"),
            {"name": "TIDINGS_PORT", "value": str(chat.port)},
            *_public_url_env(owner, spec),
            *_tls_env(tls),
            *_jwt_env(spec.jwt_secret),
            *_group_timing_env(spec),
            *media_env(spec.media),
        ],
        "startupProbe": _http_probe("/healthz", period=2, failures=60, tls=tls is not None),
        # /readyz answers 503 while the server drains: it leaves the Service at once.
        "readinessProbe": _http_probe("/readyz", period=2, failures=1, tls=tls is not None),
        "livenessProbe": _http_probe(
            "/healthz", period=10, failures=3, timeout=5, tls=tls is not None
        ),
        # SIGTERM starts the drain (hand partitions over, send clients away, exit 0);
        # the pause first lets endpoints and load balancers forget the pod.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_PAUSE_S}}},
        "securityContext": _container_security(),
        "volumeMounts": _mounts(tls),
    }
    resources = resources_of(spec, names.CHAT, chat.resources, chat.pod_template)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(owner, name, names.CHAT),
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": names.selector_labels(owner["name"], names.CHAT)},
            "template": _pod_template(
                owner,
                names.CHAT,
                [_with_resources(container, resources)],
                config,
                chat.pod_template,
                tls_secret=tls,
                restart=restart,
                terminationGracePeriodSeconds=termination_grace_seconds(spec),
            ),
        },
    }


def build_chat_service(owner: Owner, spec: ClusterSpec) -> Manifest:
    """Headless: each chat pod gets a DNS name, the one it tells its clients."""
    name = names.chat_name(owner["name"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, name, names.CHAT),
        "spec": {
            "clusterIP": "None",
            "selector": names.selector_labels(owner["name"], names.CHAT),
            "ports": _service_ports(spec.chat.port),
        },
    }


def _postgres_migration(spec: ClusterSpec) -> dict[str, Any]:
    """The PostgreSQL schema, before an api pod starts: ``tidings migrate --only postgres``
    (idempotent, and serialized by an advisory lock when several pods run it at once). The
    operator wires Kafka and Cassandra itself; PostgreSQL is reached only by the pods."""
    return {
        "name": "migrate",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["tidings", "migrate", "--only", "postgres"],
        "env": _common_env(spec),
        "securityContext": _container_security(),
        "volumeMounts": _TMP_MOUNT,
    }


def build_api_statefulset(owner: Owner, spec: ClusterSpec, config: str) -> Manifest:
    """The HTTP API. A StatefulSet for its ordinals: the worker ids of its Snowflakes."""
    name, api = names.api_name(owner["name"]), spec.api
    tls = _tls_secret(spec)
    container = {
        "name": names.API,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["tidings", "api"],
        "ports": _ports(api.port),
        "envFrom": _env_from(owner, spec),
        "env": [
            *_common_env(spec),
            _field_env("TIDINGS_WORKER_ID", f"metadata.labels['{names.LABEL_POD_INDEX}']"),
            {"name": "TIDINGS_PORT", "value": str(api.port)},
            *_tls_env(tls),
            *_jwt_env(spec.jwt_secret),
            *media_env(spec.media),
        ],
        "startupProbe": _http_probe("/healthz", period=2, failures=60, tls=tls is not None),
        "readinessProbe": _http_probe("/readyz", period=5, failures=2, tls=tls is not None),
        "livenessProbe": _http_probe(
            "/healthz", period=10, failures=3, timeout=5, tls=tls is not None
        ),
        "securityContext": _container_security(),
        "volumeMounts": _mounts(tls),
    }
    resources = resources_of(spec, names.API, api.resources, api.pod_template)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(owner, name, names.API),
        "spec": {
            "serviceName": name,
            "replicas": api.replicas,
            # Ordinals 896..1023 are the api pods' worker ids (chat pods use 0..895).
            "ordinals": {"start": names.API_ORDINAL_START},
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": names.selector_labels(owner["name"], names.API)},
            "template": _pod_template(
                owner,
                names.API,
                [_with_resources(container, resources)],
                config,
                api.pod_template,
                tls_secret=tls,
                terminationGracePeriodSeconds=30,
                initContainers=[_with_resources(_postgres_migration(spec), resources)],
            ),
        },
    }


def build_api_service(owner: Owner, spec: ClusterSpec) -> Manifest:
    name = names.api_name(owner["name"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, name, names.API),
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector_labels(owner["name"], names.API),
            "ports": _service_ports(spec.api.port),
        },
    }


def build_push_deployment(owner: Owner, spec: ClusterSpec, config: str) -> Manifest:
    name, push = names.push_name(owner["name"]), spec.push
    container = {
        "name": names.PUSH,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["tidings", "push"],
        # Its only port: the metrics (TIDINGS_METRICS_* from the ConfigMap), also probed.
        "ports": [dict(_METRICS_CONTAINER_PORT)],
        "envFrom": _env_from(owner, spec, push.credentials_secret),
        "env": _common_env(spec),
        "readinessProbe": {"tcpSocket": {"port": names.METRICS_PORT_NAME}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": names.METRICS_PORT_NAME}, "periodSeconds": 10},
        "securityContext": _container_security(),
        "volumeMounts": _TMP_MOUNT,
    }
    resources = resources_of(spec, names.PUSH, push.resources, push.pod_template)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, name, names.PUSH),
        "spec": {
            "replicas": push.replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": names.selector_labels(owner["name"], names.PUSH)},
            "template": _pod_template(
                owner,
                names.PUSH,
                [_with_resources(container, resources)],
                config,
                push.pod_template,
                terminationGracePeriodSeconds=30,
            ),
        },
    }


def _pdb(owner: Owner, name: str, component: str) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, name, component),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": names.selector_labels(owner["name"], component)},
            # A pod that is not ready serves nobody: evicting it (e.g. to roll back a bad
            # image) must not wait for it to become ready.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_chat_pdb(owner: Owner) -> Manifest:
    return _pdb(owner, names.chat_name(owner["name"]), names.CHAT)


def build_api_pdb(owner: Owner) -> Manifest:
    return _pdb(owner, names.api_name(owner["name"]), names.API)


def build_all(
    owner: Owner,
    spec: ClusterSpec,
    *,
    chat_replicas: int,
    inbox_partitions: int,
    exposed_ordinals: int | None = None,
    restart: str | None = None,
) -> list[Manifest]:
    """Every child, in the order to apply them (config first, workloads after).

    ``exposed_ordinals``: how many chat pods (0..n-1) get their own external address; by
    default ``chat_replicas`` (the reconciler keeps a shrinking pod's until it is gone).
    ``restart``: the ChatCluster's ``tidings.dev/restart`` (controls.py)."""
    config_map = build_config_map(owner, spec, inbox_partitions)
    digest = config_hash(config_map["data"])
    exposed = build_expose(
        owner,
        build_owner_reference(owner),
        spec.chat.expose,
        spec.tls,
        chat_port=spec.chat.port,
        api_port=spec.api.port,
        ordinals=chat_replicas if exposed_ordinals is None else exposed_ordinals,
        max_replicas=max(spec.chat.max_replicas, spec.chat.replicas or 0),
    )
    children = [
        *[m for m in exposed if m["kind"] == "Certificate"],
        config_map,
        build_chat_service(owner, spec),
        build_chat_statefulset(owner, spec, chat_replicas, digest, restart),
        build_chat_pdb(owner),
        build_api_service(owner, spec),
        build_api_statefulset(owner, spec, digest),
        build_api_pdb(owner),
        build_push_deployment(owner, spec, digest),
        *[m for m in exposed if m["kind"] != "Certificate"],
    ]
    add_engine_tls(children, spec)
    return children
