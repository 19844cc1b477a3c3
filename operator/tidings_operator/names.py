"""Names and labels of everything the operator makes for a ChatCluster.

The Kafka topic names are the workloads' own (:mod:`tidings.wire.topics`, the package
both sides speak), imported here so the operator's modules find every name in one place.
"""

from __future__ import annotations

from tidings.wire.topics import inbox_topic as inbox_topic
from tidings.wire.topics import members_topic as members_topic
from tidings.wire.topics import push_topic as push_topic

GROUP = "tidings.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ChatCluster"
PLURAL = "chatclusters"

FIELD_MANAGER = "tidings-operator"
MANAGED_BY = "tidings-operator"

# Standard labels (app.kubernetes.io/*) plus one of ours naming the owning ChatCluster.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_VERSION = "app.kubernetes.io/version"
LABEL_CLUSTER = f"{GROUP}/chatcluster"
# Set by the StatefulSet controller on every pod (Kubernetes 1.28+): the pod's ordinal.
LABEL_POD_INDEX = "apps.kubernetes.io/pod-index"
# Set by the StatefulSet controller: the revision a pod was made from.
LABEL_REVISION = "controller-revision-hash"
# On pod templates: a hash of the ConfigMap, so a config change rolls the pods.
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
# On pod templates: a hash of the Secret keys the pods read (secret_digest.py), so a
# rotated password or signing key rolls them (the chat pods through the paced rollout).
ANNOTATION_SECRETS_HASH = f"{GROUP}/secrets-hash"
# On a ChatCluster: "true" stops every change the operator would make (an incident
# control, like Strimzi's strimzi.io/pause-reconciliation; controls.py).
ANNOTATION_PAUSE = f"{GROUP}/pause-reconciliation"
# On a ChatCluster, copied onto the chat pod template: a new value (a timestamp) rolls
# every chat pod through the paced rollout (controls.py).
ANNOTATION_RESTART = f"{GROUP}/restart"
# On a ChatCluster: a chat pod's name; the operator drains that pod once (an eviction,
# paced like a rollout step), reports it in status.lastDisruption and removes this.
ANNOTATION_DRAIN = f"{GROUP}/drain"
# On a ChatCluster, written by the operator when it first wires it: the PostgreSQL database
# (host:port/name) it was made on; a Secret naming another later is refused (reconciler).
ANNOTATION_POSTGRES = f"{GROUP}/postgres-database"

CHAT = "chat"
API = "api"
PUSH = "push"

# Every workload pod (chat, api, push) serves its Prometheus metrics on this container
# port, named ``metrics`` (TIDINGS_METRICS_PORT; the public ``http`` port never serves
# them). spec.chat.port and spec.api.port may not take it.
METRICS_PORT = 9464
METRICS_PORT_NAME = "metrics"

# Snowflake worker ids are 10 bits (0..1023). Chat pods use their ordinal (0..895); api
# pods are a StatefulSet whose ordinals start at 896, so their ordinal is their worker id
# too (896..1023). The CRD bounds the replica counts to fit.
MAX_CHAT_REPLICAS = 896
API_ORDINAL_START = MAX_CHAT_REPLICAS
MAX_API_REPLICAS = 1024 - API_ORDINAL_START

# A ChatCluster's name becomes part of every child's name and of pod host names
# (`<name>-chat-895.<name>-chat`): 40 characters leave room for the suffixes.
MAX_NAME_LENGTH = 40


def chat_name(cluster: str) -> str:
    """The chat StatefulSet, its headless Service and its PodDisruptionBudget."""
    return f"{cluster}-{CHAT}"


def api_name(cluster: str) -> str:
    """The api StatefulSet, its Service and its PodDisruptionBudget."""
    return f"{cluster}-{API}"


def push_name(cluster: str) -> str:
    return f"{cluster}-{PUSH}"


def config_name(cluster: str) -> str:
    return f"{cluster}-config"


def chat_pod_name(cluster: str, ordinal: int) -> str:
    return f"{chat_name(cluster)}-{ordinal}"


def selector_labels(cluster: str, component: str) -> dict[str, str]:
    """The labels a component's selector matches (never change: selectors are immutable)."""
    return {
        LABEL_NAME: "tidings",
        LABEL_INSTANCE: cluster,
        LABEL_COMPONENT: component,
    }


def labels(cluster: str, component: str) -> dict[str, str]:
    return {
        **selector_labels(cluster, component),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_CLUSTER: cluster,
    }


def selector_string(cluster: str, component: str) -> str:
    """A label selector in the string form (``status.selector``, for ``/scale``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(cluster, component).items()))


def pod_ordinal(pod_name: str) -> int | None:
    """The ordinal at the end of a StatefulSet pod's name, if it has one."""
    _, _, tail = pod_name.rpartition("-")
    return int(tail) if tail.isdigit() else None
