"""spec.chat.expose, spec.tls and the pod templates: what the operator builds from them."""

from __future__ import annotations

from typing import Any

import pytest

from tidings_operator import names
from tidings_operator.builders import Owner, build_all
from tidings_operator.spec import ClusterSpec, SpecError, parse_spec

OWNER: Owner = {"name": "demo", "namespace": "chat", "uid": "0000-1111"}
TLS = {"secretName": "demo-cert"}


def spec(**overrides: Any) -> ClusterSpec:
    raw: dict[str, Any] = {
        "image": "registry.example/tidings:1.2.3",
        "kafka": {"bootstrapServers": "kafka:9092"},
        "cassandra": {"contactPoints": ["cass-0"]},
        "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
    }
    raw.update(overrides)
    return parse_spec(raw, default_tls_secret="demo-tls")


def chat(mode: str, **expose: Any) -> dict[str, Any]:
    return {"maxReplicas": 4, "expose": {"mode": mode, **expose}}


def children(s: ClusterSpec, replicas: int = 2, exposed: int | None = None) -> dict[str, Any]:
    built = build_all(
        OWNER, s, chat_replicas=replicas, inbox_partitions=8, exposed_ordinals=exposed
    )
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in built}


def container(objs: dict[str, Any], sts: str) -> dict[str, Any]:
    found: dict[str, Any] = objs[f"StatefulSet/{sts}"]["spec"]["template"]["spec"]["containers"][0]
    return found


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_none_keeps_the_in_cluster_address_and_adds_nothing() -> None:
    objs = children(spec())
    assert env(container(objs, "demo-chat"))["TIDINGS_PUBLIC_CHAT_URL"] == (
        "ws://$(TIDINGS_SERVER_ID).demo-chat.chat.svc:8080/v1/ws"
    )
    assert "Service/demo-chat-0" not in objs and "Ingress/demo" not in objs


def test_node_port_a_service_per_pod_and_the_node_address() -> None:
    objs = children(
        spec(chat=chat("nodePort", nodePort={"basePort": 30800}, api={"nodePort": 30443}), tls=TLS),
        replicas=2,
        exposed=3,  # a third pod still draining keeps its address
    )
    for ordinal in range(3):
        svc = objs[f"Service/demo-chat-{ordinal}"]
        assert svc["spec"]["type"] == "NodePort"
        assert svc["spec"]["externalTrafficPolicy"] == "Local"
        assert svc["spec"]["selector"] == {
            **names.selector_labels("demo", names.CHAT),
            "statefulset.kubernetes.io/pod-name": f"demo-chat-{ordinal}",
        }
        assert svc["spec"]["ports"] == [
            {
                "name": "http",
                "port": 8080,
                "targetPort": "http",
                "protocol": "TCP",
                "nodePort": 30800 + ordinal,
            }
        ]
        assert svc["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"
    assert "Service/demo-chat-3" not in objs
    api = objs["Service/demo-api-external"]
    assert api["spec"]["type"] == "NodePort"
    # Only the public port: the metrics port stays on the in-cluster Service.
    assert [p["name"] for p in api["spec"]["ports"]] == ["http"]
    assert api["spec"]["ports"][0]["nodePort"] == 30443
    chat_env = env(container(objs, "demo-chat"))
    assert chat_env["TIDINGS_PUBLIC_CHAT_URL"] == "wss://{hostIP}:{nodePort}/v1/ws"
    assert chat_env["TIDINGS_HOST_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert chat_env["TIDINGS_PUBLIC_NODE_PORT_BASE"] == "30800"


@pytest.mark.parametrize("sts", ["demo-chat", "demo-api"])
def test_tls_at_the_pods_mounts_the_secret_and_probes_https(sts: str) -> None:
    objs = children(spec(chat=chat("nodePort", nodePort={"basePort": 30800}), tls=TLS))
    c = container(objs, sts)
    assert env(c)["TIDINGS_TLS_CERT_FILE"] == "/etc/tidings/tls/tls.crt"
    assert env(c)["TIDINGS_TLS_KEY_FILE"] == "/etc/tidings/tls/tls.key"
    assert {"name": "tls", "mountPath": "/etc/tidings/tls", "readOnly": True} in c["volumeMounts"]
    volumes = objs[f"StatefulSet/{sts}"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "demo-cert"}} in volumes
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS"


def test_load_balancer_per_pod_with_annotations_filled_in() -> None:
    objs = children(
        spec(
            chat=chat(
                "loadBalancer",
                hostTemplate="chat-{ordinal}.example.com",
                annotations={
                    "external-dns.alpha.kubernetes.io/hostname": "chat-{ordinal}.example.com"
                },
                loadBalancer={"className": "lb.example/v1", "sourceRanges": ["10.0.0.0/8"]},
            ),
            tls=TLS,
        )
    )
    svc = objs["Service/demo-chat-1"]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == {
        "external-dns.alpha.kubernetes.io/hostname": "chat-1.example.com"
    }
    assert svc["spec"]["loadBalancerClass"] == "lb.example/v1"
    assert svc["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert svc["spec"]["ports"][0]["port"] == 443
    assert objs["Service/demo-api-external"]["spec"]["type"] == "LoadBalancer"
    url = env(container(objs, "demo-chat"))["TIDINGS_PUBLIC_CHAT_URL"]
    assert url == "wss://chat-{ordinal}.example.com/v1/ws"


def test_ingress_a_host_per_pod_and_tls_at_the_controller() -> None:
    objs = children(
        spec(
            chat=chat(
                "ingress",
                hostTemplate="chat-{ordinal}.example.com",
                ingress={"className": "nginx"},
                annotations={"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
                api={"host": "api.example.com"},
            ),
            tls=TLS,
        )
    )
    ingress = objs["Ingress/demo"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"
    }
    rules = {
        r["host"]: r["http"]["paths"][0]["backend"]["service"] for r in ingress["spec"]["rules"]
    }
    assert rules == {
        "api.example.com": {"name": "demo-api", "port": {"number": 8080}},
        "chat-0.example.com": {"name": "demo-chat-0", "port": {"number": 8080}},
        "chat-1.example.com": {"name": "demo-chat-1", "port": {"number": 8080}},
    }
    assert ingress["spec"]["tls"] == [{"hosts": list(rules), "secretName": "demo-cert"}]
    assert objs["Service/demo-chat-0"]["spec"]["type"] == "ClusterIP"
    assert "Service/demo-api-external" not in objs
    c = container(objs, "demo-chat")
    assert "TIDINGS_TLS_CERT_FILE" not in env(c)  # the controller ends TLS
    assert env(c)["TIDINGS_PUBLIC_CHAT_URL"] == "wss://chat-{ordinal}.example.com/v1/ws"


@pytest.mark.parametrize(("kind", "pods_end_tls"), [("HTTPRoute", False), ("TLSRoute", True)])
def test_gateway_routes_per_pod(kind: str, pods_end_tls: bool) -> None:
    parent = {"name": "edge", "namespace": "gateways", "sectionName": "chat"}
    objs = children(
        spec(
            chat=chat(
                "gateway",
                hostTemplate="chat-{ordinal}.example.com",
                gateway={"parentRefs": [parent], "routeKind": kind},
                api={"host": "api.example.com"},
            ),
            tls=TLS,
        )
    )
    route = objs[f"{kind}/demo-chat-1"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"] == {
        "parentRefs": [parent],
        "hostnames": ["chat-1.example.com"],
        "rules": [{"backendRefs": [{"name": "demo-chat-1", "port": 8080}]}],
    }
    assert objs[f"{kind}/demo-api"]["spec"]["hostnames"] == ["api.example.com"]
    assert ("TIDINGS_TLS_CERT_FILE" in env(container(objs, "demo-chat"))) is pods_end_tls


def test_cert_manager_certificate_names_every_host() -> None:
    objs = children(
        spec(
            chat=chat(
                "ingress",
                hostTemplate="chat-{ordinal}.example.com",
                api={"host": "api.example.com"},
            ),
            tls={
                "issuerRef": {"name": "ca", "kind": "ClusterIssuer"},
                "dnsNames": ["chat.example.com"],
            },
        )
    )
    cert = objs["Certificate/demo-tls"]
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["spec"]["secretName"] == "demo-tls"
    assert cert["spec"]["issuerRef"] == {
        "name": "ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    # Every pod up to maxReplicas (4), so scaling up needs no new certificate.
    assert cert["spec"]["dnsNames"] == [
        *(f"chat-{i}.example.com" for i in range(4)),
        "api.example.com",
        "chat.example.com",
    ]
    assert objs["Ingress/demo"]["spec"]["tls"][0]["secretName"] == "demo-tls"
    first = build_all(OWNER, spec(tls=TLS), chat_replicas=1, inbox_partitions=8)
    assert [m["kind"] for m in first].count("Certificate") == 0  # a Secret given: no issuing


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"chat": chat("nodePort")}, "basePort is required"),
        ({"chat": chat("nodePort", nodePort={"basePort": 32766})}, "outside the default range"),
        (
            {"chat": chat("nodePort", nodePort={"basePort": 30800}, api={"nodePort": 30801})},
            "one of the chat pods' node ports",
        ),
        ({"chat": chat("ingress")}, "hostTemplate is required"),
        ({"chat": chat("ingress", hostTemplate="chat.example.com")}, "must contain {ordinal}"),
        ({"chat": chat("ingress", hostTemplate="Chat_{ordinal}.example.com")}, "not a DNS name"),
        ({"chat": chat("gateway", hostTemplate="c-{ordinal}.example.com")}, "parentRefs"),
        ({"chat": chat("loadBalancer")}, "needs hostTemplate"),
        ({"chat": chat("none", urlTemplate="wss://x/{zone}")}, "uses {zone}"),
        ({"chat": chat("none", urlTemplate="wss://x:{nodePort}")}, "only mode nodePort"),
        ({"chat": chat("none", urlTemplate="https://x/v1/ws")}, "ws:// or wss://"),
        ({"chat": chat("sideways")}, "is not one of"),
        ({"tls": {"dnsNames": ["a.example.com"]}}, "secretName"),
        ({"tls": {"issuerRef": {"name": "ca"}}}, "would name no host"),
        ({"tls": {"secretName": "x", "ipAddresses": ["300.1.1.1"]}}, "not an IP address"),
        ({"chat": {"podTemplate": {"tolerations": "all"}}}, "list of objects"),
    ],
)
def test_specs_that_cannot_work_say_what_to_change(overrides: dict[str, Any], says: str) -> None:
    with pytest.raises(SpecError, match=says.replace("{", r"\{").replace("}", r"\}")):
        spec(**overrides)


def test_pod_templates_pass_scheduling_through_and_keep_our_labels() -> None:
    toleration = {"key": "chat", "operator": "Exists", "effect": "NoSchedule"}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}
    objs = children(
        spec(
            chat={
                "podTemplate": {
                    "metadata": {
                        "labels": {"team": "chat", names.LABEL_COMPONENT: "mine"},
                        "annotations": {"a": "b"},
                    },
                    "tolerations": [toleration],
                    "affinity": affinity,
                    "nodeSelector": {"pool": "sockets"},
                    "priorityClassName": "chat-critical",
                    "resources": {"requests": {"cpu": "2"}},
                }
            },
            api={"podTemplate": {"topologySpreadConstraints": []}},
        )
    )
    template = objs["StatefulSet/demo-chat"]["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "chat"
    assert template["metadata"]["labels"][names.LABEL_COMPONENT] == names.CHAT
    assert template["metadata"]["annotations"]["a"] == "b"
    assert names.ANNOTATION_CONFIG_HASH in template["metadata"]["annotations"]
    pod = template["spec"]
    assert pod["tolerations"] == [toleration]
    assert pod["affinity"] == affinity
    assert pod["nodeSelector"] == {"pool": "sockets"}
    assert pod["priorityClassName"] == "chat-critical"
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "2"}}
    # Unset: spread over zones then nodes, where the scheduler can.
    spread = pod["topologySpreadConstraints"]
    assert [(c["topologyKey"], c["whenUnsatisfiable"]) for c in spread] == [
        ("topology.kubernetes.io/zone", "ScheduleAnyway"),
        ("kubernetes.io/hostname", "ScheduleAnyway"),
    ]
    assert spread[0]["labelSelector"] == {"matchLabels": names.selector_labels("demo", names.CHAT)}
    # Set to an empty list: none.
    assert (
        "topologySpreadConstraints" not in objs["StatefulSet/demo-api"]["spec"]["template"]["spec"]
    )
