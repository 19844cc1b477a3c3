"""TLS from the pods (and the operator) to Kafka and Cassandra, with a CA from a Secret.

``spec.kafka.tls`` and ``spec.cassandra.tls`` name the Secret key holding the CA that signed
the brokers' or nodes' certificates (a Strimzi cluster's ``<cluster>-cluster-ca-cert``,
key ``ca.crt``: a private CA by default). Each api, chat and push container gets that key
mounted read-only under ``/etc/tidings/<engine>-ca/ca.crt`` and the servers' settings
pointing at it (docs/security.md, "TLS to Kafka and Cassandra"). The mount is a Secret
volume, so a renewed CA changes the pods' secrets hash and rolls them (secret_digest.py).

Kafka: with ``tls`` and no ``authSecretRef`` the pods speak ``SSL``; with an auth Secret,
its ``TIDINGS_KAFKA_SECURITY_PROTOCOL`` must be ``SSL`` or ``SASL_SSL`` (the operator
refuses the spec otherwise, see :func:`kafka_protocol_problem`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tidings_operator.spec import ClusterSpec, EngineTls

__all__ = ["CA_FILE", "add_engine_tls", "ca_mount", "kafka_protocol_problem"]

CA_FILE = "ca.crt"
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
PROTOCOL_KEY = "TIDINGS_KAFKA_SECURITY_PROTOCOL"


def ca_mount(engine: str) -> str:
    return f"/etc/tidings/{engine}-ca"


def _ca_parts(
    engine: str, tls: EngineTls | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    if tls is None or tls.ca is None:
        return [], [], None
    volume = f"{engine}-ca"
    items = [{"key": tls.ca.key, "path": CA_FILE}]
    return (
        [{"name": volume, "secret": {"secretName": tls.ca.name, "items": items}}],
        [{"name": volume, "mountPath": ca_mount(engine), "readOnly": True}],
        f"{ca_mount(engine)}/{CA_FILE}",
    )


def _value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def pod_parts(
    spec: ClusterSpec,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The volumes, volume mounts and environment TLS to the engines adds to a pod."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    env: list[dict[str, Any]] = []
    kafka, cassandra = spec.kafka.tls, spec.cassandra.tls
    if kafka is not None:
        v, m, ca = _ca_parts("kafka", kafka)
        volumes, mounts = volumes + v, mounts + m
        if spec.kafka.auth_secret is None:
            env.append(_value(PROTOCOL_KEY, "SSL"))
        if ca is not None:
            env.append(_value("TIDINGS_KAFKA_SSL_CAFILE", ca))
    if cassandra is not None:
        v, m, ca = _ca_parts("cassandra", cassandra)
        volumes, mounts = volumes + v, mounts + m
        env.append(_value("TIDINGS_CASSANDRA_SSL", "true"))
        if ca is not None:
            env.append(_value("TIDINGS_CASSANDRA_SSL_CAFILE", ca))
        if cassandra.verify_hostname:
            env.append(_value("TIDINGS_CASSANDRA_SSL_VERIFY_HOSTNAME", "true"))
    return volumes, mounts, env


def add_engine_tls(manifests: Iterable[dict[str, Any]], spec: ClusterSpec) -> None:
    """Add :func:`pod_parts` to every workload's pod template (in place): its main
    containers, which reach the engines; not the init container, which migrates
    PostgreSQL only."""
    volumes, mounts, env = pod_parts(spec)
    if not volumes and not env:
        return
    for manifest in manifests:
        template = (manifest.get("spec") or {}).get("template")
        if template is None:
            continue
        pod = template["spec"]
        pod["volumes"] = [*pod.get("volumes", []), *volumes]
        for container in pod["containers"]:
            container["volumeMounts"] = [*container.get("volumeMounts", []), *mounts]
            container["env"] = [*container.get("env", []), *env]


def kafka_protocol_problem(spec: ClusterSpec, auth: Mapping[str, str] | None) -> str | None:
    """Why ``spec.kafka.tls`` cannot work with the auth Secret's protocol (None if it can)."""
    if spec.kafka.tls is None or spec.kafka.auth_secret is None:
        return None
    protocol = (auth or {}).get(PROTOCOL_KEY, "PLAINTEXT")
    if protocol in TLS_PROTOCOLS:
        return None
    return (
        f"spec.kafka.tls is set but {PROTOCOL_KEY} in Secret {spec.kafka.auth_secret} "
        f"(kafka.authSecretRef) is {protocol}, which does not use TLS: make it SSL or "
        "SASL_SSL, or remove spec.kafka.tls"
    )
