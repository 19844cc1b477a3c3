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

This module parses those two blocks (pure) and builds their manifests (pure).
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tidings_operator import names

__all__ = [
    "MODES",
    "ROUTE_KINDS",
    "TLS_MOUNT",
    "ExposeSpec",
    "TlsSpec",
    "build_expose",
    "chat_url_template",
    "parse_expose",
    "parse_tls",
    "pod_service_name",
]

MODES = ("none", "nodePort", "loadBalancer", "ingress", "gateway")
ROUTE_KINDS = ("HTTPRoute", "TLSRoute")
# What a chat server fills into its public URL when it starts (workloads' settings).
URL_FIELDS = frozenset({"ordinal", "pod", "hostIP", "nodePort"})
HOST_FIELDS = frozenset({"ordinal"})
# The default node port range of a kube-apiserver (--service-node-port-range).
NODE_PORTS = (30000, 32767)
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

_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


class ExposeError(ValueError):
    """The block cannot work as written (spec.SpecError wraps it)."""


@dataclass(frozen=True, slots=True)
class ApiExpose:
    host: str | None = None
    node_port: int | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ExposeSpec:
    mode: str = "none"
    url_template: str | None = None
    host_template: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    node_port_base: int | None = None
    load_balancer_class: str | None = None
    load_balancer_source_ranges: tuple[str, ...] = ()
    ingress_class_name: str | None = None
    parent_refs: tuple[dict[str, Any], ...] = ()
    route_kind: str = "HTTPRoute"
    api: ApiExpose = field(default_factory=ApiExpose)

    def host(self, ordinal: int) -> str | None:
        return self.host_template.replace("{ordinal}", str(ordinal)) if self.host_template else None


@dataclass(frozen=True, slots=True)
class IssuerRef:
    name: str
    kind: str = "Issuer"
    group: str = "cert-manager.io"


@dataclass(frozen=True, slots=True)
class TlsSpec:
    secret_name: str
    issuer: IssuerRef | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


# --- parsing ------------------------------------------------------------------------------


def _placeholders(template: str, path: str, allowed: frozenset[str]) -> set[str]:
    try:
        found = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ExposeError(f"{path} {template!r} is not a valid template: {exc}") from None
    unknown = found - allowed
    if unknown:
        raise ExposeError(
            f"{path} {template!r} uses {', '.join(sorted('{' + u + '}' for u in unknown))}; "
            f"it may use {', '.join(sorted('{' + a + '}' for a in allowed))}"
        )
    return found


def _str_map(raw: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ExposeError(f"{path}.{key} must map names to strings")
    return {str(k): v for k, v in value.items()}


def _obj(raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise ExposeError(f"{path}.{key} must be an object")
    return value


def _opt_str(raw: Mapping[str, Any], key: str, path: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ExposeError(f"{path}.{key} must be a string")
    return value


def _node_port(raw: Mapping[str, Any], key: str, path: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ExposeError(f"{path}.{key} must be a port number, got {value!r}")
    return value


def _dns_name(value: str, path: str) -> None:
    if not _DNS_NAME.match(value):
        raise ExposeError(f"{path} {value!r} is not a DNS name (lower case, dots between labels)")


def parse_expose(raw: Mapping[str, Any], *, max_replicas: int) -> ExposeSpec:
    """``spec.chat.expose``; ``max_replicas`` bounds the ordinals that need an address."""
    p = "spec.chat.expose"
    mode = raw.get("mode", "none")
    if mode not in MODES:
        raise ExposeError(f"{p}.mode {mode!r} is not one of {', '.join(MODES)}")
    url_template = _opt_str(raw, "urlTemplate", p)
    if url_template is not None:
        used = _placeholders(url_template, f"{p}.urlTemplate", URL_FIELDS)
        if "nodePort" in used and mode != "nodePort":
            raise ExposeError(f"{p}.urlTemplate uses {{nodePort}}, which only mode nodePort has")
        if not url_template.startswith(("ws://", "wss://")):
            raise ExposeError(f"{p}.urlTemplate {url_template!r} must start with ws:// or wss://")
    host_template = _opt_str(raw, "hostTemplate", p)
    if host_template is not None:
        if "{ordinal}" not in host_template:
            raise ExposeError(
                f"{p}.hostTemplate {host_template!r} must contain {{ordinal}}: every chat "
                "server needs a host name of its own"
            )
        _placeholders(host_template, f"{p}.hostTemplate", HOST_FIELDS)
        _dns_name(host_template.replace("{ordinal}", "0"), f"{p}.hostTemplate")
    api_raw = _obj(raw, "api", p)
    api = ApiExpose(
        host=_opt_str(api_raw, "host", f"{p}.api"),
        node_port=_node_port(api_raw, "nodePort", f"{p}.api"),
        url=_opt_str(api_raw, "url", f"{p}.api"),
    )
    if api.host is not None:
        _dns_name(api.host, f"{p}.api.host")
    node_port = _obj(raw, "nodePort", p)
    lb = _obj(raw, "loadBalancer", p)
    ingress = _obj(raw, "ingress", p)
    gateway = _obj(raw, "gateway", p)
    refs = gateway.get("parentRefs") or []
    if not isinstance(refs, list) or not all(
        isinstance(r, Mapping) and r.get("name") for r in refs
    ):
        raise ExposeError(f"{p}.gateway.parentRefs must be a list of objects with a name")
    ranges = lb.get("sourceRanges") or []
    if not isinstance(ranges, list):
        raise ExposeError(f"{p}.loadBalancer.sourceRanges must be a list of CIDRs")
    for cidr in ranges:
        try:
            ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise ExposeError(f"{p}.loadBalancer.sourceRanges: {cidr!r} is not a CIDR") from None
    route_kind = gateway.get("routeKind", "HTTPRoute")
    if route_kind not in ROUTE_KINDS:
        raise ExposeError(f"{p}.gateway.routeKind {route_kind!r} is not HTTPRoute or TLSRoute")
    spec = ExposeSpec(
        mode=str(mode),
        url_template=url_template,
        host_template=host_template,
        annotations=_str_map(raw, "annotations", p),
        node_port_base=_node_port(node_port, "basePort", f"{p}.nodePort"),
        load_balancer_class=_opt_str(lb, "className", f"{p}.loadBalancer"),
        load_balancer_source_ranges=tuple(str(r) for r in ranges),
        ingress_class_name=_opt_str(ingress, "className", f"{p}.ingress"),
        parent_refs=tuple(dict(r) for r in refs),
        route_kind=str(route_kind),
        api=api,
    )
    _check_mode(spec, max_replicas)
    return spec


def _check_mode(spec: ExposeSpec, max_replicas: int) -> None:
    p = "spec.chat.expose"
    if spec.mode == "nodePort":
        base = spec.node_port_base
        if base is None:
            raise ExposeError(
                f"{p}.nodePort.basePort is required in mode nodePort: chat pod N is reached "
                "on node port basePort+N"
            )
        lo, hi = NODE_PORTS
        if base < lo or base + max_replicas - 1 > hi:
            raise ExposeError(
                f"{p}.nodePort.basePort {base} with maxReplicas {max_replicas} needs node ports "
                f"{base}..{base + max_replicas - 1}, outside the default range {lo}..{hi}"
            )
        api_port = spec.api.node_port
        if api_port is not None and base <= api_port < base + max_replicas:
            raise ExposeError(
                f"{p}.api.nodePort {api_port} is one of the chat pods' node ports "
                f"({base}..{base + max_replicas - 1})"
            )
    if spec.mode in ("ingress", "gateway") and spec.host_template is None:
        raise ExposeError(f"{p}.hostTemplate is required in mode {spec.mode} (a host per pod)")
    if spec.mode == "loadBalancer" and spec.host_template is None and spec.url_template is None:
        raise ExposeError(
            f"{p}: mode loadBalancer needs hostTemplate (or urlTemplate): a load balancer's "
            "address is known only after it is made, and the pods must tell clients theirs"
        )
    if spec.mode == "gateway" and not spec.parent_refs:
        raise ExposeError(f"{p}.gateway.parentRefs is required in mode gateway (the Gateway)")


def parse_tls(raw: Mapping[str, Any], *, default_secret: str) -> TlsSpec | None:
    """``spec.tls``: None when absent."""
    if not raw:
        return None
    p = "spec.tls"
    issuer_raw = _obj(raw, "issuerRef", p)
    issuer = None
    if issuer_raw:
        name = _opt_str(issuer_raw, "name", f"{p}.issuerRef")
        if not name:
            raise ExposeError(f"{p}.issuerRef.name is required")
        kind = _opt_str(issuer_raw, "kind", f"{p}.issuerRef") or "Issuer"
        if kind not in ("Issuer", "ClusterIssuer"):
            raise ExposeError(f"{p}.issuerRef.kind {kind!r} is not Issuer or ClusterIssuer")
        group = _opt_str(issuer_raw, "group", f"{p}.issuerRef") or "cert-manager.io"
        issuer = IssuerRef(name, kind, group)
    secret = _opt_str(raw, "secretName", p)
    if secret is None and issuer is None:
        raise ExposeError(f"{p} needs secretName (a kubernetes.io/tls Secret) or issuerRef")
    dns = raw.get("dnsNames") or []
    ips = raw.get("ipAddresses") or []
    if not isinstance(dns, list) or not isinstance(ips, list):
        raise ExposeError(f"{p}.dnsNames and {p}.ipAddresses must be lists")
    for name in dns:
        _dns_name(str(name).removeprefix("*."), f"{p}.dnsNames")
    for ip in ips:
        try:
            ipaddress.ip_address(str(ip))
        except ValueError:
            raise ExposeError(f"{p}.ipAddresses: {ip!r} is not an IP address") from None
    return TlsSpec(
        secret_name=secret or default_secret,
        issuer=issuer,
        dns_names=tuple(str(d) for d in dns),
        ip_addresses=tuple(str(i) for i in ips),
    )


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
