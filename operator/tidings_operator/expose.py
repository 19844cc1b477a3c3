"""Reaching the chat servers and the API from outside the cluster, and their TLS.

Clients are sent to the chat server that owns them (login and ``/v1/discover`` name it),
so each chat pod needs an address of its own, as each Kafka broker does behind Strimzi's
per-broker listeners. ``spec.chat.expose.mode`` picks how:

- ``none``: in-cluster only; a pod's address is its DNS name under the headless Service.
- ``nodePort``: a NodePort Service per pod, port ``nodePort.basePort + ordinal``; the pod
  tells its clients the address of the node it runs on (``{hostIP}``).
- ``loadBalancer``: a LoadBalancer Service per pod (annotations passed through, e.g. for
  external-dns); the host names come from ``hostTemplate``.
- ``ingress``: one Ingress with a host per pod (``hostTemplate``) and one for the API,
  each to a ClusterIP Service of its own; TLS ends at the ingress controller.
- ``gateway``: Gateway API routes per pod on the platform's Gateway: HTTPRoutes (TLS ends
  at the Gateway) or TLSRoutes (passthrough: the chat servers end TLS).

``spec.tls`` names the ``kubernetes.io/tls`` Secret, and with an ``issuerRef`` the
operator asks cert-manager for it (a Certificate for every host the mode needs). Where
TLS ends at the pods, the chat and api containers mount the Secret and re-read it when it
changes: new connections get the new certificate, open ones keep theirs.

This module builds their manifests (pure); :mod:`tidings_operator.expose_spec` parses
the two blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidings_operator import names
from tidings_operator.expose_spec import ExposeSpec, TlsSpec

__all__ = [
    "PRUNED_KINDS",
    "TLS_MOUNT",
    "build_expose",
    "certificate_name",
    "chat_url_template",
    "expose_selector",
    "pod_service_name",
    "tls_at_pods",
]

# Where the TLS Secret is mounted in chat and api containers.
TLS_MOUNT = "/etc/tidings/tls"
# A Service per chat pod selects exactly that pod by this label (StatefulSet-set).
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
# Marks the per-pod and external children, so those no longer wanted can be found.
ROLE_LABEL = f"{names.GROUP}/role"
ROLE_EXPOSE = "expose"
GATEWAY_API = "gateway.networking.k8s.io/v1"
# Every kind build_expose makes: what the operator prunes when no longer wanted.
PRUNED_KINDS = ("Service", "Ingress", "HTTPRoute", "TLSRoute", "Certificate")
CERT_MANAGER_API = "cert-manager.io/v1"


# --- what the pods are told ---------------------------------------------------------------


def tls_at_pods(expose: ExposeSpec, tls: TlsSpec | None) -> bool:
    """Whether the chat and api servers end TLS themselves: everywhere except behind an
    ingress controller or a Gateway's HTTPS listener, which end it for them."""
    if tls is None:
        return False
    if expose.mode == "ingress":
        return False
    return not (expose.mode == "gateway" and expose.route_kind == "HTTPRoute")


def chat_url_template(
    expose: ExposeSpec, tls: TlsSpec | None, *, cluster: str, namespace: str, port: int
) -> str:
    """The public WebSocket URL of chat pod ``{ordinal}``, as the pods fill it in."""
    if expose.url_template is not None:
        return expose.url_template
    scheme = "wss" if tls is not None else "ws"
    if expose.mode == "nodePort":
        return f"{scheme}://{{hostIP}}:{{nodePort}}/v1/ws"
    if expose.mode in ("loadBalancer", "ingress", "gateway"):
        return f"{scheme}://{expose.host_template}/v1/ws"
    # The kubelet fills in the pod's name (as before these modes: no new rollout).
    return (
        f"{scheme}://$(TIDINGS_SERVER_ID).{names.chat_name(cluster)}.{namespace}.svc:{port}/v1/ws"
    )


# --- manifests ----------------------------------------------------------------------------


def pod_service_name(cluster: str, ordinal: int) -> str:
    """A chat pod's own Service: the pod's name (a Service and a Pod may share one)."""
    return names.chat_pod_name(cluster, ordinal)


def api_external_name(cluster: str) -> str:
    return f"{names.api_name(cluster)}-external"


def expose_labels(cluster: str, component: str) -> dict[str, str]:
    return {**names.labels(cluster, component), ROLE_LABEL: ROLE_EXPOSE}


def expose_selector(cluster: str) -> str:
    """The children this module makes, to find those no longer wanted."""
    return f"{names.LABEL_INSTANCE}={cluster},{ROLE_LABEL}={ROLE_EXPOSE}"


def _meta(
    owner: Mapping[str, Any],
    owner_ref: Mapping[str, Any],
    name: str,
    component: str,
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner["namespace"],
        "labels": expose_labels(owner["name"], component),
        "ownerReferences": [dict(owner_ref)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _service(
    meta: dict[str, Any],
    selector: dict[str, str],
    *,
    kind: str,
    port: int,
    node_port: int | None,
    expose: ExposeSpec,
) -> dict[str, Any]:
    ports: dict[str, Any] = {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
    spec: dict[str, Any] = {"type": kind, "selector": selector, "ports": [ports]}
    if node_port is not None:
        ports["nodePort"] = node_port
    if kind in ("NodePort", "LoadBalancer"):
        # Straight to the pod on the node that got the packet: the client's address is
        # kept (rate limits are per source address), no second hop.
        spec["externalTrafficPolicy"] = "Local"
    if kind == "LoadBalancer":
        if expose.load_balancer_class:
            spec["loadBalancerClass"] = expose.load_balancer_class
        if expose.load_balancer_source_ranges:
            spec["loadBalancerSourceRanges"] = list(expose.load_balancer_source_ranges)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def build_expose(
    owner: Mapping[str, Any],
    owner_ref: Mapping[str, Any],
    expose: ExposeSpec,
    tls: TlsSpec | None,
    *,
    chat_port: int,
    api_port: int,
    ordinals: int,
    max_replicas: int,
) -> list[dict[str, Any]]:
    """The Services, Ingress, routes and Certificate of the mode, for chat pods
    ``0..ordinals-1`` (the Certificate covers up to ``max_replicas``)."""
    out: list[dict[str, Any]] = []
    if expose.mode != "none":
        out += _pod_services(owner, owner_ref, expose, tls, chat_port, ordinals)
        out += _api_external(owner, owner_ref, expose, tls, api_port)
    if expose.mode == "ingress":
        out.append(_ingress(owner, owner_ref, expose, tls, chat_port, api_port, ordinals))
    if expose.mode == "gateway":
        out += _routes(owner, owner_ref, expose, chat_port, api_port, ordinals)
    if tls is not None and tls.issuer is not None:
        out.append(_certificate(owner, owner_ref, expose, tls, max_replicas))
    return out


def _per_pod(annotations: Mapping[str, str], ordinal: int) -> dict[str, str]:
    """Annotations of a pod's own object: ``{ordinal}`` in a value is the pod's (e.g.
    external-dns's ``hostname: chat-{ordinal}.example.com``)."""
    return {k: v.replace("{ordinal}", str(ordinal)) for k, v in annotations.items()}


def _lb_port(tls: TlsSpec | None) -> int:
    return 443 if tls is not None else 80


def _pod_services(
    owner: Mapping[str, Any],
    owner_ref: Mapping[str, Any],
    expose: ExposeSpec,
    tls: TlsSpec | None,
    chat_port: int,
    ordinals: int,
) -> list[dict[str, Any]]:
    cluster = owner["name"]
    kind = {"nodePort": "NodePort", "loadBalancer": "LoadBalancer"}.get(expose.mode, "ClusterIP")
    annotations = expose.annotations if kind == "LoadBalancer" else {}
    out = []
    for ordinal in range(ordinals):
        pod = names.chat_pod_name(cluster, ordinal)
        selector = {**names.selector_labels(cluster, names.CHAT), POD_NAME_LABEL: pod}
        meta = _meta(
            owner,
            owner_ref,
            pod_service_name(cluster, ordinal),
            names.CHAT,
            _per_pod(annotations, ordinal),
        )
        port = _lb_port(tls) if kind == "LoadBalancer" else chat_port
        base = expose.node_port_base
        node_port = base + ordinal if kind == "NodePort" and base is not None else None
        out.append(
            _service(meta, selector, kind=kind, port=port, node_port=node_port, expose=expose)
        )
    return out


def _api_external(
    owner: Mapping[str, Any],
    owner_ref: Mapping[str, Any],
    expose: ExposeSpec,
    tls: TlsSpec | None,
    api_port: int,
) -> list[dict[str, Any]]:
    """The API behind a NodePort or LoadBalancer Service of its own (the cluster-internal
    one also carries the metrics port, which must not be exposed)."""
    if expose.mode not in ("nodePort", "loadBalancer"):
        return []
    cluster = owner["name"]
    kind = "NodePort" if expose.mode == "nodePort" else "LoadBalancer"
    annotations = expose.annotations if kind == "LoadBalancer" else {}
    meta = _meta(owner, owner_ref, api_external_name(cluster), names.API, annotations)
    port = _lb_port(tls) if kind == "LoadBalancer" else api_port
    return [
        _service(
            meta,
            names.selector_labels(cluster, names.API),
            kind=kind,
            port=port,
            node_port=expose.api.node_port if kind == "NodePort" else None,
            expose=expose,
        )
    ]


def _ingress_rule(host: str, service: str, port: int) -> dict[str, Any]:
    backend = {"service": {"name": service, "port": {"number": port}}}
    return {
        "host": host,
        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
    }


def _ingress(
    owner: Mapping[str, Any],
    owner_ref: Mapping[str, Any],
    expose: ExposeSpec,
    tls: TlsSpec | None,
    chat_port: int,
    api_port: int,
    ordinals: int,
) -> dict[str, Any]:
    cluster = owner["name"]
    rules = []
    if expose.api.host:
        rules.append(_ingress_rule(expose.api.host, names.api_name(cluster), api_port))
    for ordinal in range(ordinals):
        host = expose.host(ordinal)
        assert host is not None
        rules.append(_ingress_rule(host, pod_service_name(cluster, ordinal), chat_port))
    spec: dict[str, Any] = {"rules": rules}
    if expose.ingress_class_name:
        spec["ingressClassName"] = expose.ingress_class_name
    if tls is not None:
        spec["tls"] = [{"hosts": [r["host"] for r in rules], "secretName": tls.secret_name}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(owner, owner_ref, cluster, names.CHAT, expose.annotations),
        "spec": spec,
    }


def _route(
    owner: Mapping[str, Any],
    owner_ref: Mapping[str, Any],
    expose: ExposeSpec,
    name: str,
    component: str,
    host: str,
    service: str,
    port: int,
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY_API,
        "kind": expose.route_kind,
        "metadata": _meta(owner, owner_ref, name, component, annotations),
        "spec": {
            "parentRefs": [dict(r) for r in expose.parent_refs],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": service, "port": port}]}],
        },
    }


def _routes(
    owner: Mapping[str, Any],
    owner_ref: Mapping[str, Any],
    expose: ExposeSpec,
    chat_port: int,
    api_port: int,
    ordinals: int,
) -> list[dict[str, Any]]:
    cluster = owner["name"]
    out = []
    if expose.api.host:
        api = names.api_name(cluster)
        out.append(
            _route(
                owner,
                owner_ref,
                expose,
                api,
                names.API,
                expose.api.host,
                api,
                api_port,
                expose.annotations,
            )
        )
    for ordinal in range(ordinals):
        host = expose.host(ordinal)
        assert host is not None
        service = pod_service_name(cluster, ordinal)
        annotations = _per_pod(expose.annotations, ordinal)
        out.append(
            _route(
                owner,
                owner_ref,
                expose,
                service,
                names.CHAT,
                host,
                service,
                chat_port,
                annotations,
            )
        )
    return out


def certificate_name(cluster: str) -> str:
    return f"{cluster}-tls"


def certificate_hosts(expose: ExposeSpec, tls: TlsSpec, max_replicas: int) -> list[str]:
    """Every host name a client may meet: each chat pod's (up to maxReplicas), the API's,
    and the extra ones ``spec.tls.dnsNames`` lists."""
    hosts: list[str] = []
    if expose.host_template:
        hosts += [expose.host(i) or "" for i in range(max_replicas)]
    if expose.api.host:
        hosts.append(expose.api.host)
    hosts += [h for h in tls.dns_names if h not in hosts]
    return hosts


def _certificate(
    owner: Mapping[str, Any],
    owner_ref: Mapping[str, Any],
    expose: ExposeSpec,
    tls: TlsSpec,
    max_replicas: int,
) -> dict[str, Any]:
    assert tls.issuer is not None
    spec: dict[str, Any] = {
        "secretName": tls.secret_name,
        "issuerRef": {"name": tls.issuer.name, "kind": tls.issuer.kind, "group": tls.issuer.group},
        # A new key with every certificate (cert-manager's default keeps the first one).
        "privateKey": {"rotationPolicy": "Always"},
    }
    hosts = certificate_hosts(expose, tls, max_replicas)
    if hosts:
        spec["dnsNames"] = hosts
    if tls.ip_addresses:
        spec["ipAddresses"] = list(tls.ip_addresses)
    return {
        "apiVersion": CERT_MANAGER_API,
        "kind": "Certificate",
        "metadata": _meta(owner, owner_ref, certificate_name(owner["name"]), "tls", {}),
        "spec": spec,
    }
