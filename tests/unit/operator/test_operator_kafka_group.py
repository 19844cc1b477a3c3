"""spec.kafka.sessionTimeoutSeconds / heartbeatIntervalSeconds: the chat servers' consumer
group timings, passed to the chat pods only when set, refused when the servers would be."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
import yaml

from tidings.settings import Settings
from tidings_operator import members
from tidings_operator.builders import (
    Owner,
    build_all,
    build_api_statefulset,
    build_chat_statefulset,
    build_push_deployment,
)
from tidings_operator.kube import Kube
from tidings_operator.reconciler import Options, Reconciler, wiring_key
from tidings_operator.spec import (
    CHAT_HEARTBEAT_INTERVAL_S,
    CHAT_SESSION_TIMEOUT_S,
    MAX_HEARTBEAT_INTERVAL_S,
    MAX_SESSION_TIMEOUT_S,
    MIN_HEARTBEAT_INTERVAL_S,
    MIN_SESSION_TIMEOUT_S,
    ClusterSpec,
    SpecError,
    parse_spec,
)

CRD = Path(__file__).resolve().parents[3] / "crds" / "chatclusters.tidings.dev.yaml"
OWNER: Owner = {"name": "demo", "namespace": "chat", "uid": "0000-1111"}
SESSION, HEARTBEAT = "TIDINGS_KAFKA_SESSION_TIMEOUT_S", "TIDINGS_KAFKA_HEARTBEAT_INTERVAL_S"


def raw_spec(**kafka: Any) -> dict[str, Any]:
    return {
        "image": "tidings:1",
        "kafka": {"bootstrapServers": "kafka:9092", **kafka},
        "cassandra": {"contactPoints": ["cassandra"]},
        "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
    }


def spec(**kafka: Any) -> ClusterSpec:
    return parse_spec(raw_spec(**kafka))


def chat_env(s: ClusterSpec) -> dict[str, Any]:
    sts = build_chat_statefulset(OWNER, s, 3, "cafe")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def kafka_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    # The stored version; the others share its schema (test_operator_crd.py).
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    kafka: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["kafka"]
    return kafka


# --- set: in the chat pods' env; unset: absent ----------------------------------------------


def test_set_reaches_the_chat_pods_env() -> None:
    env = chat_env(spec(sessionTimeoutSeconds=3, heartbeatIntervalSeconds=0.5))
    assert env[SESSION] == "3"
    assert env[HEARTBEAT] == "0.5"
    env = chat_env(spec(sessionTimeoutSeconds=4.5))
    assert env[SESSION] == "4.5"
    assert HEARTBEAT not in env


def test_unset_is_absent_and_the_servers_run_their_default() -> None:
    s = spec()
    assert (s.kafka.session_timeout_s, s.kafka.heartbeat_interval_s) == (None, None)
    env = chat_env(s)
    assert SESSION not in env
    assert HEARTBEAT not in env
    only_heartbeat = chat_env(spec(heartbeatIntervalSeconds=2))
    assert only_heartbeat[HEARTBEAT] == "2"
    assert SESSION not in only_heartbeat
    # Not in the shared ConfigMap either (api and push: below).
    children = build_all(OWNER, spec(sessionTimeoutSeconds=3), chat_replicas=1, inbox_partitions=64)
    assert SESSION not in children[0]["data"]


def test_only_the_chat_servers_get_them() -> None:
    s = spec(sessionTimeoutSeconds=3, heartbeatIntervalSeconds=1)
    for manifest in (
        build_api_statefulset(OWNER, s, "cafe"),
        build_push_deployment(OWNER, s, "cafe"),
    ):
        names = {e["name"] for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert not names & {SESSION, HEARTBEAT}


def test_the_env_values_parse_as_the_workloads_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = chat_env(spec(sessionTimeoutSeconds=3.5, heartbeatIntervalSeconds=1))
    monkeypatch.setenv(SESSION, env[SESSION])
    monkeypatch.setenv(HEARTBEAT, env[HEARTBEAT])
    settings = Settings()  # type: ignore[call-arg]
    assert settings.kafka_session_timeout_s == 3.5
    assert settings.kafka_heartbeat_interval_s == 1.0


def test_a_change_rolls_the_chat_servers_but_rewires_nothing() -> None:
    before, after = spec(), spec(sessionTimeoutSeconds=3)
    assert chat_env(before) != chat_env(after)  # a new StatefulSet revision: a rollout
    assert wiring_key(before) == wiring_key(after)


# --- invalid: refused, with the message -----------------------------------------------------


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        (
            {"sessionTimeoutSeconds": 6, "heartbeatIntervalSeconds": 2.5},
            r"spec.kafka.heartbeatIntervalSeconds \(2.5\) must be at most a third of "
            r"spec.kafka.sessionTimeoutSeconds \(6\)",
        ),
        # An unset field is the chat servers' default, which they would run.
        (
            {"heartbeatIntervalSeconds": 2.5},
            r"sessionTimeoutSeconds \(6 \(unset: the chat servers' default\)\)",
        ),
        (
            {"sessionTimeoutSeconds": 2.9},
            r"spec.kafka.sessionTimeoutSeconds must be within 3..300, got 2.9",
        ),
        (
            {"sessionTimeoutSeconds": 301},
            r"spec.kafka.sessionTimeoutSeconds must be within 3..300",
        ),
        (
            {"heartbeatIntervalSeconds": 0},
            r"spec.kafka.heartbeatIntervalSeconds must be within 0.1..100, got 0",
        ),
        ({"sessionTimeoutSeconds": "6"}, r"spec.kafka.sessionTimeoutSeconds must be a number"),
        ({"heartbeatIntervalSeconds": True}, r"heartbeatIntervalSeconds must be a number"),
        ({"sessionTimeoutSeconds": float("nan")}, r"sessionTimeoutSeconds must be within"),
    ],
)
def test_invalid_is_refused_with_the_message(kafka: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(**kafka)


def test_the_servers_own_check_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the operator accepts the chat servers accept, and the other way round."""
    cases = [(3, 1), (3.3, 1.1), (6, 2), (6, 2.01), (9, 3), (4, 1.5), (None, 2), (None, 2.5)]
    for session, heartbeat in cases:
        kafka = {"heartbeatIntervalSeconds": heartbeat}
        if session is not None:
            kafka["sessionTimeoutSeconds"] = session
        try:
            chat_env(spec(**kafka))
            operator_ok = True
        except SpecError:
            operator_ok = False
        values: dict[str, Any] = {"kafka_heartbeat_interval_s": heartbeat}
        if session is not None:
            values["kafka_session_timeout_s"] = session
        try:
            Settings(**values)
            server_ok = True
        except ValueError:
            server_ok = False
        assert operator_ok == server_ok, (session, heartbeat)


def test_invalid_is_reported_as_invalid_spec_and_nothing_applied() -> None:
    """Reconcile and the ticker's sync: Degraded/InvalidSpec with the message, no child applied."""
    obj = {
        "metadata": {"name": "timing", "namespace": "ns-t", "uid": "u-t", "generation": 3},
        "spec": raw_spec(sessionTimeoutSeconds=3, heartbeatIntervalSeconds=1.5),
    }
    kube = _FakeKube(obj)
    reconciler = Reconciler(cast(Kube, kube), Options())

    async def run() -> None:
        with pytest.raises(kopf.PermanentError, match="at most a third"):
            await reconciler.reconcile(name="timing", namespace="ns-t", uid="u-t", retry=0)
        await reconciler.sync(name="timing", namespace="ns-t", uid="u-t")
        await reconciler.close()

    asyncio.run(run())
    assert kube.applied == []
    assert kube.status_patches
    for patch in kube.status_patches:
        degraded = next(c for c in patch["conditions"] if c["type"] == "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
        assert degraded["message"].startswith(
            "spec.kafka.heartbeatIntervalSeconds (1.5) must be at most a third of "
            "spec.kafka.sessionTimeoutSeconds (3)"
        )


class _FakeKube:
    """A ChatCluster with no children; records status patches and applies."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.status_patches: list[dict[str, Any]] = []
        self.applied: list[Any] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == "ChatCluster" and name == self.obj["metadata"]["name"]:
            return self.obj
        return None

    async def list(self, kind: str, namespace: str, selector: str | None = None) -> list[Any]:
        return []

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.status_patches.append(status)
        self.obj["status"] = {**(self.obj.get("status") or {}), **status}

    async def apply(self, manifest: Any) -> dict[str, Any]:
        self.applied.append(manifest)
        return dict(manifest)

    async def post_event(self, obj: Any, **_: Any) -> None:
        return None


# --- the CRD says the same -------------------------------------------------------------------


def test_the_crd_fields_bounds_and_rule() -> None:
    kafka = kafka_schema()
    props = kafka["properties"]
    session, heartbeat = props["sessionTimeoutSeconds"], props["heartbeatIntervalSeconds"]
    assert session["type"] == heartbeat["type"] == "number"
    # No default: unset means nothing is passed and the servers run theirs.
    assert "default" not in session and "default" not in heartbeat
    assert (session["minimum"], session["maximum"]) == (
        MIN_SESSION_TIMEOUT_S,
        MAX_SESSION_TIMEOUT_S,
    )
    assert (heartbeat["minimum"], heartbeat["maximum"]) == (
        MIN_HEARTBEAT_INTERVAL_S,
        MAX_HEARTBEAT_INTERVAL_S,
    )
    (rule,) = [v for v in kafka["x-kubernetes-validations"] if "heartbeat" in v["rule"]]
    # The rule counts an unset field as the servers' default, as the operator does.
    text = " ".join(rule["rule"].split())
    assert f"self.heartbeatIntervalSeconds : {CHAT_HEARTBEAT_INTERVAL_S})" in text
    assert f"self.sessionTimeoutSeconds : {CHAT_SESSION_TIMEOUT_S})" in text
    assert "* 3.0 <=" in text
    assert "at most a third" in rule["message"]


def test_defaults_and_minimum_match_the_workloads() -> None:
    fields = Settings.model_fields
    assert fields["kafka_session_timeout_s"].default == CHAT_SESSION_TIMEOUT_S
    assert fields["kafka_heartbeat_interval_s"].default == CHAT_HEARTBEAT_INTERVAL_S
    # The shortest session still covers the membership TTL the servers (and the operator) use.
    assert MIN_SESSION_TIMEOUT_S >= fields["membership_ttl_s"].default == members.MEMBER_TTL_S
