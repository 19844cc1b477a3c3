"""TLS on the public port, with certificates rotated in place.

One :class:`ssl.SSLContext` serves the listening socket for the life of the process. A
:class:`CertReloader` reads the certificate and key files every ``tls_reload_every_s``
and, when their content changed and they form a valid pair, loads them into a new
context; the listening context's server-name callback (run for every ClientHello, SNI or
not) moves each new handshake onto it: every handshake after that presents the new
certificate, while the connections already open keep the one they were made with.
Nobody is disconnected by a rotation. (Loading the new pair into the old context is not
enough: a context holds a certificate per key type, so after an RSA certificate replaced
an EC one the EC one would still be offered to clients that prefer ECDSA.)

A pair is checked on a scratch context before it goes near the live one: loading a
certificate whose key does not match into a live context would leave it with no usable
key (OpenSSL drops the old key when a new certificate does not match it), and every
handshake after would fail. A pair that does not load is logged once per change and
counted; the certificate served so far stays.

Both files are read first and then loaded from what was read, so a Kubernetes Secret
volume (which swaps its ``..data`` symlink atomically) never gives a certificate of one
version with the key of another without that being caught as a mismatch.

Metrics: ``tidings_tls_reloads_total{result="ok"|"failed"}`` and
``tidings_tls_certificate_not_after_seconds`` (docs/security.md, "TLS").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509

from tidings.metrics import TLS_CERT_NOT_AFTER, TLS_RELOADS
from tidings.settings import Settings, SettingsError

__all__ = [
    "MINIMUM_VERSION",
    "CertPair",
    "CertReloader",
    "Outcome",
    "check_pair",
    "read_pair",
    "server_context",
]

log = logging.getLogger(__name__)

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# uvicorn's HTTP protocol speaks HTTP/1.1 only (WebSocket upgrades are HTTP/1.1 too).
ALPN_PROTOCOLS = ["http/1.1"]


class TlsError(SettingsError):
    """A certificate or key that cannot be served (at start: the process does not run)."""


@dataclass(frozen=True, slots=True)
class CertPair:
    """The bytes of a certificate chain and its key, as read together."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(
            len(self.cert_pem).to_bytes(8, "big") + self.cert_pem + self.key_pem
        ).hexdigest()


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What is worth knowing of a pair that loads: its leaf's serial and notAfter."""

    serial: int
    not_after: float  # seconds since the epoch


class Outcome(Enum):
    UNCHANGED = "unchanged"
    RELOADED = "reloaded"
    FAILED = "failed"


def read_pair(cert_file: Path, key_file: Path) -> CertPair:
    """Both files' bytes (raises OSError)."""
    return CertPair(cert_file.read_bytes(), key_file.read_bytes())


def server_context() -> ssl.SSLContext:
    """A server context with no certificate yet: TLS 1.2 at least, HTTP/1.1 by ALPN."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    return context


@contextlib.contextmanager
def _as_files(pair: CertPair) -> Iterator[tuple[str, str]]:
    """Paths to exactly these bytes (``load_cert_chain`` takes paths, not bytes): memory
    files where the platform has them, else private temporary files, gone afterwards."""
    if hasattr(os, "memfd_create"):
        fds = [os.memfd_create("tidings-tls-cert"), os.memfd_create("tidings-tls-key")]
        try:
            for fd, data in zip(fds, (pair.cert_pem, pair.key_pem), strict=True):
                os.write(fd, data)
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="tidings-tls-") as directory:  # mode 0700
        cert, key = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert.write_bytes(pair.cert_pem)
        key.write_bytes(pair.key_pem)
        yield str(cert), str(key)


def _load(context: ssl.SSLContext, pair: CertPair) -> None:
    with _as_files(pair) as (cert, key):
        context.load_cert_chain(cert, key)


def check_pair(pair: CertPair) -> CertInfo:
    """The pair's leaf, if the certificate and key load together (on a scratch context);
    raises ValueError (with the reason) if they do not."""
    try:
        _load(server_context(), pair)
        leaf = x509.load_pem_x509_certificate(pair.cert_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(_reason(exc)) from exc
    return CertInfo(leaf.serial_number, leaf.not_valid_after_utc.timestamp())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
        return "the key is not the certificate's"
    return str(exc) or type(exc).__name__


class CertReloader:
    """The live context and the files it was loaded from; :meth:`poll` loads them again
    when they changed and still form a valid pair, :meth:`run` polls forever."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        try:
            pair = read_pair(cert_file, key_file)
        except OSError as exc:
            raise TlsError(
                f"TIDINGS_TLS_CERT_FILE / TIDINGS_TLS_KEY_FILE cannot be read: {exc}"
            ) from exc
        try:
            info = check_pair(pair)
        except ValueError as exc:
            raise TlsError(
                f"TIDINGS_TLS_CERT_FILE {cert_file} and TIDINGS_TLS_KEY_FILE {key_file} "
                f"do not make a usable pair: {exc}"
            ) from exc
        # The listening socket's context, for good; each handshake is moved onto the
        # context of the pair served now (_serve_current).
        self.context = server_context()
        _load(self.context, pair)
        self.serving = self.context
        self.context.sni_callback = self._serve_current
        self.info = info
        self._digest = pair.digest
        self._failed: str | None = None  # the digest (or read error) last refused
        TLS_RELOADS.labels("ok")  # both series exist from the start (for alerts)
        TLS_RELOADS.labels("failed")
        TLS_CERT_NOT_AFTER.set(info.not_after)

    @classmethod
    def from_settings(cls, settings: Settings) -> CertReloader | None:
        """None when TLS is off (neither file set; Settings refuses one without the other)."""
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        return cls(settings.tls_cert_file, settings.tls_key_file)

    def poll(self) -> Outcome:
        """Read both files and :meth:`offer` them (a read error counts as a failure)."""
        try:
            pair = read_pair(self.cert_file, self.key_file)
        except OSError as exc:
            return self._refuse(f"read:{exc}", f"cannot be read: {exc}")
        return self.offer(pair)

    def offer(self, pair: CertPair) -> Outcome:
        """Serve ``pair`` to new handshakes if it differs from the current one and loads;
        a pair that does not load is logged and counted once, and changes nothing."""
        digest = pair.digest
        if digest == self._digest:
            self._failed = None  # back to what is served: a later bad pair is news again
            return Outcome.UNCHANGED
        try:
            info = check_pair(pair)
            fresh = server_context()
            _load(fresh, pair)
        except ValueError as exc:
            return self._refuse(digest, f"do not make a usable pair: {exc}")
        self.serving = fresh
        self._digest = digest
        self._failed = None
        self.info = info
        TLS_RELOADS.labels("ok").inc()
        TLS_CERT_NOT_AFTER.set(info.not_after)
        log.info(
            "TLS certificate reloaded",
            extra={"serial": f"{info.serial:x}", "not_after": int(info.not_after)},
        )
        return Outcome.RELOADED

    def _serve_current(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, context: ssl.SSLContext
    ) -> None:
        """OpenSSL's server-name callback, run in every ClientHello (with or without SNI):
        the handshake goes on with the context of the pair served now. A new context
        rather than a new pair loaded into the old one, because a context keeps one
        certificate per key type: an EC certificate loaded before an RSA one would go on
        being offered to every client that prefers ECDSA."""
        if context is not self.serving:
            connection.context = self.serving

    def _refuse(self, key: str, why: str) -> Outcome:
        if key != self._failed:
            self._failed = key
            TLS_RELOADS.labels("failed").inc()
            log.warning(
                "TLS certificate not reloaded: %s and %s %s; still serving serial %x",
                self.cert_file,
                self.key_file,
                why,
                self.info.serial,
            )
        return Outcome.FAILED

    async def run(self, every_s: float) -> None:
        """Poll every ``every_s`` seconds until cancelled. The files are read on a worker
        thread; the (rare) load into the live context happens on the event loop, the
        thread that makes connections from it."""
        while True:
            await asyncio.sleep(every_s)
            try:
                pair = await asyncio.to_thread(read_pair, self.cert_file, self.key_file)
            except OSError as exc:
                self._refuse(f"read:{exc}", f"cannot be read: {exc}")
                continue
            try:
                self.offer(pair)
            except Exception:  # never let a surprise end the rotation for good
                log.exception("TLS certificate reload failed")
