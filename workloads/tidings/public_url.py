"""The WebSocket URL a chat server tells clients: ``public_chat_url`` with its placeholders
filled in, once, at start.

One template serves every pod of a StatefulSet; each fills in its own values:

- ``{ordinal}``: ``worker_id`` (a chat pod's StatefulSet ordinal);
- ``{pod}``: ``server_id`` (the pod's name);
- ``{hostIP}``: ``host_ip`` (the node's address, from the downward API ``status.hostIP``;
  an IPv6 address is put in brackets, as a URL's host must be);
- ``{nodePort}``: ``public_node_port_base + ordinal`` (one node port per chat server).

What is filled in is what the server publishes in its membership record and what login
and ``/v1/discover`` return. Anything that cannot be filled in is a :class:`SettingsError`
naming the variable to fix.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tidings.settings import Settings, SettingsError

__all__ = ["PLACEHOLDERS", "fill_public_chat_url", "with_public_chat_url"]

PLACEHOLDERS = ("ordinal", "pod", "hostIP", "nodePort")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_URL_VAR = "TIDINGS_PUBLIC_CHAT_URL"


def fill_public_chat_url(
    template: str,
    *,
    ordinal: int,
    pod: str,
    host_ip: str | None = None,
    node_port_base: int | None = None,
) -> str:
    """``template`` with every placeholder filled in (a template without any is returned
    as it is). Raises :class:`SettingsError` for an unknown placeholder, a stray brace,
    ``{hostIP}`` without ``host_ip``, ``{nodePort}`` without ``node_port_base`` and a port
    beyond 65535."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "ordinal":
            return str(ordinal)
        if name == "pod":
            return pod
        if name == "hostIP":
            if not host_ip:
                raise SettingsError(
                    f"{_URL_VAR} uses {{hostIP}} but TIDINGS_HOST_IP is not set (the "
                    "node's address; in a pod, from the downward API status.hostIP)"
                )
            return f"[{host_ip}]" if ":" in host_ip and not host_ip.startswith("[") else host_ip
        if name == "nodePort":
            if node_port_base is None:
                raise SettingsError(
                    f"{_URL_VAR} uses {{nodePort}} but TIDINGS_PUBLIC_NODE_PORT_BASE is not "
                    "set (the node port of ordinal 0; ordinal N uses base + N)"
                )
            port = node_port_base + ordinal
            if port > 65535:
                raise SettingsError(
                    f"{_URL_VAR}: {{nodePort}} of ordinal {ordinal} would be "
                    f"TIDINGS_PUBLIC_NODE_PORT_BASE ({node_port_base}) + {ordinal} = {port}, "
                    "beyond 65535"
                )
            return str(port)
        known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        raise SettingsError(f"{_URL_VAR} has an unknown placeholder {{{name}}} (known: {known})")

    filled = _PLACEHOLDER.sub(value, template)
    if "{" in filled or "}" in filled:
        raise SettingsError(f"{_URL_VAR} {template!r} has a brace that closes no placeholder")
    try:
        urlsplit(filled).port  # noqa: B018 -- a port out of range raises ValueError
    except ValueError as exc:
        raise SettingsError(f"{_URL_VAR} {filled!r} is not a usable URL: {exc}") from exc
    return filled


def with_public_chat_url(settings: Settings) -> Settings:
    """``settings`` with ``public_chat_url`` filled in (the same object when it is unset
    or has nothing to fill in)."""
    template = settings.public_chat_url
    if template is None:
        return settings
    filled = fill_public_chat_url(
        template,
        ordinal=settings.worker_id,
        pod=settings.server_id,
        host_ip=settings.host_ip,
        node_port_base=settings.public_node_port_base,
    )
    if filled == template:
        return settings
    return settings.model_copy(update={"public_chat_url": filled})
