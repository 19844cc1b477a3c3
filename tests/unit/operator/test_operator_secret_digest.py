"""The Secrets hash on pod templates: which keys the pods read, and what a change rolls."""

from __future__ import annotations

from typing import Any

from tidings_operator import names
from tidings_operator.builders import JWT_PREVIOUS_SECRETS_KEY, Owner, build_all
from tidings_operator.secret_digest import secret_reads, secrets_hash, stamp_secrets_hash
from tidings_operator.spec import parse_spec

OWNER: Owner = {"name": "demo", "namespace": "chat", "uid": "0000-1111"}
SECRETS = {
    "pg": {"url": "postgresql://a", "unused": "x"},
    "jwt": {"secret": "s1", JWT_PREVIOUS_SECRETS_KEY: "s0", "note": "not read"},
    "kafka-auth": {"TIDINGS_KAFKA_SASL_PASSWORD": "p1"},
    "push-creds": {"TIDINGS_APNS_KEY": "k1"},
}


def children(**overrides: Any) -> list[dict[str, Any]]:
    raw: dict[str, Any] = {
        "image": "registry.example/tidings:1.2.3",
        "kafka": {"bootstrapServers": "kafka:9092", "authSecretRef": {"name": "kafka-auth"}},
        "cassandra": {"contactPoints": ["cass-0"]},
        "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
        "push": {"credentialsSecretRef": {"name": "push-creds"}},
    }
    raw.update(overrides)
    return build_all(OWNER, parse_spec(raw), chat_replicas=2, inbox_partitions=8)


def workloads(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if "template" in m.get("spec", {})}


def hashes(secrets: dict[str, dict[str, str]], live: Any = None) -> dict[str, str | None]:
    manifests = children()
    stamp_secrets_hash(manifests, secrets, live or {})
    return {
        name: w["spec"]["template"]["metadata"]["annotations"].get(names.ANNOTATION_SECRETS_HASH)
        for name, w in workloads(manifests).items()
    }


def changed(secret: str, key: str, value: str) -> dict[str, dict[str, str]]:
    return {**SECRETS, secret: {**SECRETS[secret], key: value}}


def test_the_reads_are_found_in_the_templates() -> None:
    chat = workloads(children())["demo-chat"]["spec"]["template"]["spec"]
    reads = secret_reads(chat)
    assert reads["pg"] == {"url": False}
    assert reads["jwt"] == {"secret": False, JWT_PREVIOUS_SECRETS_KEY: True}
    assert reads["kafka-auth"] is None  # envFrom: every key
    assert "push-creds" not in reads
    push = workloads(children())["demo-push"]["spec"]["template"]["spec"]
    assert secret_reads(push)["push-creds"] is None
    assert "jwt" not in secret_reads(push)


def test_a_key_the_pods_read_changes_the_hash_of_the_pods_that_read_it() -> None:
    before = hashes(SECRETS)
    assert all(before.values())
    rotated = hashes(changed("jwt", "secret", "s2"))
    assert rotated["demo-chat"] != before["demo-chat"]
    assert rotated["demo-api"] != before["demo-api"]
    assert rotated["demo-push"] == before["demo-push"]  # the push workers sign nothing
    pushed = hashes(changed("push-creds", "TIDINGS_APNS_KEY", "k2"))
    assert pushed["demo-push"] != before["demo-push"]
    assert pushed["demo-chat"] == before["demo-chat"]
    kafka = hashes(changed("kafka-auth", "TIDINGS_KAFKA_SASL_PASSWORD", "p2"))
    assert all(kafka[w] != before[w] for w in before)


def test_a_key_nobody_reads_changes_nothing() -> None:
    assert hashes(changed("jwt", "note", "edited")) == hashes(SECRETS)
    assert hashes(changed("pg", "unused", "y")) == hashes(SECRETS)


def test_an_optional_key_may_be_absent_and_its_arrival_rolls() -> None:
    without = {**SECRETS, "jwt": {"secret": "s1"}}
    assert hashes(without)["demo-chat"] is not None
    assert hashes(without)["demo-chat"] != hashes(SECRETS)["demo-chat"]


def test_a_missing_secret_keeps_the_live_hash_and_says_which_workloads() -> None:
    live_chat = {"spec": {"template": {"metadata": {"annotations": {
        names.ANNOTATION_SECRETS_HASH: "0123456789abcdef"}}}}}  # fmt: skip
    manifests = children()
    broken = {k: v for k, v in SECRETS.items() if k != "pg"}
    kept = stamp_secrets_hash(manifests, broken, {("StatefulSet", "demo-chat"): live_chat})
    assert kept == ["StatefulSet demo-chat", "StatefulSet demo-api", "Deployment demo-push"]
    got = workloads(manifests)
    annotations = got["demo-chat"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations[names.ANNOTATION_SECRETS_HASH] == "0123456789abcdef"
    # Never stamped before: nothing to keep, and no hash is made up.
    api = got["demo-api"]["spec"]["template"]["metadata"]["annotations"]
    assert names.ANNOTATION_SECRETS_HASH not in api
    missing_key = {**SECRETS, "pg": {"unused": "x"}}
    assert secrets_hash({"pg": {"url": False}}, missing_key) is None


def test_the_serving_certificate_is_not_hashed_it_is_reloaded_in_place() -> None:
    manifests = children(tls={"secretName": "chat-tls"})  # mode none: the pods end TLS
    chat = workloads(manifests)["demo-chat"]["spec"]["template"]["spec"]
    assert any((v.get("secret") or {}).get("secretName") == "chat-tls" for v in chat["volumes"])
    assert "chat-tls" not in secret_reads(chat)
