"""``spec.chat.expose`` and ``spec.tls`` as typed values, checked (pure).

What the operator makes of them is in :mod:`tidings_operator.expose`; the modes are
described there and in docs/operator.md, "Reaching the cluster from outside".
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MODES",
    "ROUTE_KINDS",
    "ApiExpose",
    "ExposeError",
    "ExposeSpec",
    "IssuerRef",
    "TlsSpec",
    "parse_expose",
    "parse_tls",
]

MODES = ("none", "nodePort", "loadBalancer", "ingress", "gateway")
ROUTE_KINDS = ("HTTPRoute", "TLSRoute")
# What a chat server fills into its public URL when it starts (workloads' settings).
URL_FIELDS = frozenset({"ordinal", "pod", "hostIP", "nodePort"})
HOST_FIELDS = frozenset({"ordinal"})
# The default node port range of a kube-apiserver (--service-node-port-range).
NODE_PORTS = (30000, 32767)

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
