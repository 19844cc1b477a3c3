"""Which certificates the client trusts: the system's, or a private CA's."""

from __future__ import annotations

import os
import ssl

__all__ = ["client_ssl_context"]


def client_ssl_context(ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A client context that verifies servers (hostname and chain) against ``ca_file`` (PEM,
    e.g. a private CA's certificate) or, without one, the system's trust store. Use it for
    HTTPS and WSS alike (``ApiClient(ssl=...)``, ``ChatConnection(ssl=...)``)."""
    context = ssl.create_default_context(cafile=os.fspath(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
