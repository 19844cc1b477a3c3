"""spec.kafka.tls and spec.cassandra.tls: parsed, and what they add to the pods."""

from __future__ import annotations

from typing import Any

import pytest

from tidings_operator.builders import Owner, build_all
from tidings_operator.engine_tls import kafka_protocol_problem
from tidings_operator.secret_digest import secret_reads
from tidings_operator.spec import EngineTls, SecretKeyRef, SpecError, parse_spec

OWNER: Owner = {"name": "demo", "namespace": "chat", "uid": "0000-1111"}
STRIMZI_CA = {"caSecretRef": {"name": "my-cluster-cluster-ca-cert"}}


def raw(kafka: dict[str, Any] | None = None, cassandra: dict[str, Any] | None = None) -> Any:
    return {
        "image": "registry.example/tidings:1.2.3",
        "kafka": {"bootstrapServers": "my-cluster-kafka-bootstrap:9093", **(kafka or {})},
        "cassandra": {"contactPoints": ["cass-0"], **(cassandra or {})},
        "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
    }


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_ca_key_defaults_to_strimzis_and_cassandra_needs_a_ca() -> None:
    spec = parse_spec(raw(kafka={"tls": STRIMZI_CA}))
    assert spec.kafka.tls == EngineTls(SecretKeyRef("my-cluster-cluster-ca-cert", "ca.crt"))
    assert "my-cluster-cluster-ca-cert" in spec.secret_names()
    assert parse_spec(raw(kafka={"tls": {}})).kafka.tls == EngineTls()  # the system's CAs
    with pytest.raises(SpecError, match=r"spec.cassandra.tls.caSecretRef is required"):
        parse_spec(raw(cassandra={"tls": {}}))
    with pytest.raises(SpecError, match="verifyHostname must be true or false"):
        parse_spec(raw(cassandra={"tls": {**STRIMZI_CA, "verifyHostname": "yes"}}))


def test_every_server_gets_the_ca_mounted_and_its_settings() -> None:
    spec = parse_spec(
        raw(
            kafka={"tls": STRIMZI_CA},
            cassandra={"tls": {"caSecretRef": {"name": "cass-ca", "key": "root.pem"}}},
        )
    )
    workloads = [m for m in build_all(OWNER, spec, chat_replicas=1, inbox_partitions=8)
                 if m["kind"] in ("StatefulSet", "Deployment")]  # fmt: skip
    assert len(workloads) == 3
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        (main,) = pod["containers"]
        env = env_of(main)
        assert env["TIDINGS_KAFKA_SECURITY_PROTOCOL"] == "SSL"  # no auth Secret says otherwise
        assert env["TIDINGS_KAFKA_SSL_CAFILE"] == "/etc/tidings/kafka-ca/ca.crt"
        assert env["TIDINGS_CASSANDRA_SSL"] == "true"
        assert env["TIDINGS_CASSANDRA_SSL_CAFILE"] == "/etc/tidings/cassandra-ca/ca.crt"
        mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
        assert mounts["kafka-ca"] == "/etc/tidings/kafka-ca"
        volumes = {v["name"]: v.get("secret") for v in pod["volumes"]}
        assert volumes["cassandra-ca"] == {
            "secretName": "cass-ca",
            "items": [{"key": "root.pem", "path": "ca.crt"}],
        }
        # A renewed CA is a new secrets hash: the pods roll onto it.
        reads = secret_reads(pod)
        assert reads["my-cluster-cluster-ca-cert"] == {"ca.crt": False}
        assert reads["cass-ca"] == {"root.pem": False}
        for init in pod.get("initContainers", []):  # PostgreSQL only: no engine settings
            assert "TIDINGS_KAFKA_SSL_CAFILE" not in env_of(init)


def test_without_tls_nothing_is_added() -> None:
    for workload in build_all(OWNER, parse_spec(raw()), chat_replicas=1, inbox_partitions=8):
        pod = (workload.get("spec") or {}).get("template", {}).get("spec")
        if pod is None:
            continue
        assert not any("-ca" in v["name"] for v in pod["volumes"])
        assert "TIDINGS_CASSANDRA_SSL" not in env_of(pod["containers"][0])


def test_an_auth_secret_must_speak_tls_when_the_spec_asks_for_it() -> None:
    spec = parse_spec(raw(kafka={"tls": STRIMZI_CA, "authSecretRef": {"name": "kafka-auth"}}))
    chat = next(m for m in build_all(OWNER, spec, chat_replicas=1, inbox_partitions=8)
                if m["kind"] == "StatefulSet" and m["metadata"]["name"] == "demo-chat")  # fmt: skip
    env = env_of(chat["spec"]["template"]["spec"]["containers"][0])
    assert "TIDINGS_KAFKA_SECURITY_PROTOCOL" not in env  # the Secret's (envFrom) decides
    problem = kafka_protocol_problem(spec, {"TIDINGS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    assert problem is not None and "is SASL_PLAINTEXT, which does not use TLS" in problem
    assert kafka_protocol_problem(spec, {"TIDINGS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}) is None
