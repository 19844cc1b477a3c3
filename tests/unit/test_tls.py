"""tls.py: the reload core (files read together, a pair checked before it is served, a bad
pair refused once, the same live context for every handshake) and, over real sockets,
that a reload changes the certificate of new connections only."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from behaviour._certs import Leaf, TestCA, peer_serial
from tidings.settings import Settings, SettingsError
from tidings.tls import MINIMUM_VERSION, CertPair, CertReloader, Outcome, check_pair


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA.new()


def _files(tmp_path: Path, leaf: Leaf) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    leaf.write(cert, key)
    return cert, key


def _reloads(result: str) -> float:
    value = REGISTRY.get_sample_value("tidings_tls_reloads_total", {"result": result})
    return value or 0.0


def test_check_pair_tells_the_leaf_and_refuses_a_key_of_another_cert(ca: TestCA) -> None:
    one, two = ca.issue("127.0.0.1"), ca.issue("127.0.0.1")
    info = check_pair(CertPair(one.cert_pem, one.key_pem))
    assert info.serial == one.serial
    assert info.not_after == one.cert.not_valid_after_utc.timestamp()
    with pytest.raises(ValueError, match="not the certificate's"):
        check_pair(CertPair(one.cert_pem, two.key_pem))
    with pytest.raises(ValueError):
        check_pair(CertPair(b"not a certificate", one.key_pem))


def test_a_changed_valid_pair_is_served_from_a_new_context(tmp_path: Path, ca: TestCA) -> None:
    first, second = ca.issue("127.0.0.1"), ca.issue("127.0.0.1")
    cert, key = _files(tmp_path, first)
    reloader = CertReloader(cert, key)
    context = reloader.context
    assert context.minimum_version == MINIMUM_VERSION == ssl.TLSVersion.TLSv1_2
    assert reloader.info.serial == first.serial
    ok_before = _reloads("ok")

    assert reloader.poll() is Outcome.UNCHANGED
    second.write(cert, key)
    assert reloader.poll() is Outcome.RELOADED
    assert reloader.context is context  # the listening socket's context, for good
    assert reloader.serving is not context  # new handshakes move onto the new pair's
    assert reloader.info.serial == second.serial
    assert _reloads("ok") == ok_before + 1
    not_after = REGISTRY.get_sample_value("tidings_tls_certificate_not_after_seconds")
    assert not_after == second.cert.not_valid_after_utc.timestamp()
    assert reloader.poll() is Outcome.UNCHANGED


def test_a_bad_pair_is_refused_once_and_the_old_cert_stays(
    tmp_path: Path, ca: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    first, other = ca.issue("127.0.0.1"), ca.issue("127.0.0.1")
    cert, key = _files(tmp_path, first)
    reloader = CertReloader(cert, key)
    failed_before = _reloads("failed")

    # The new certificate with the old key (a half-finished rotation, or a wrong Secret).
    cert.write_bytes(other.cert_pem)
    with caplog.at_level(logging.WARNING, logger="tidings.tls"):
        assert reloader.poll() is Outcome.FAILED
        assert reloader.poll() is Outcome.FAILED  # the same bad pair: not news
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "not the certificate's" in warnings[0].getMessage()
    assert _reloads("failed") == failed_before + 1
    assert reloader.info.serial == first.serial

    # A missing file is refused the same way (and logged once).
    key.unlink()
    assert reloader.poll() is Outcome.FAILED
    assert _reloads("failed") == failed_before + 2

    # The rotation completes: loaded.
    other.write(cert, key)
    assert reloader.poll() is Outcome.RELOADED
    assert reloader.info.serial == other.serial


def test_a_bad_pair_at_start_is_a_settings_error(tmp_path: Path, ca: TestCA) -> None:
    one, two = ca.issue("127.0.0.1"), ca.issue("127.0.0.1")
    cert, key = _files(tmp_path, one)
    key.write_bytes(two.key_pem)
    with pytest.raises(SettingsError, match="TIDINGS_TLS_CERT_FILE"):
        CertReloader(cert, key)
    with pytest.raises(SettingsError, match="cannot be read"):
        CertReloader(tmp_path / "missing.crt", key)


def test_settings_want_both_files_or_neither(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TIDINGS_TLS_KEY_FILE is not"):
        Settings(_env_file=None, tls_cert_file=tmp_path / "c")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="TIDINGS_TLS_CERT_FILE is not"):
        Settings(_env_file=None, tls_key_file=tmp_path / "k")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Settings(_env_file=None, tls_reload_every_s=0)  # type: ignore[call-arg]
    plain = Settings(_env_file=None)  # type: ignore[call-arg]
    assert CertReloader.from_settings(plain) is None


@pytest.mark.parametrize("rsa_after", [False, True], ids=["ec-to-ec", "ec-to-rsa"])
async def test_open_connections_keep_their_cert_and_new_ones_get_the_new_one(
    tmp_path: Path, ca: TestCA, rsa_after: bool
) -> None:
    """Over real TLS sockets: after a reload, a connection made before still works (and
    still has the old certificate); a new one is handed the new certificate — also when
    the key type changes (an RSA certificate after an EC one: cert-manager's default)."""
    first, second = ca.issue("127.0.0.1"), ca.issue("127.0.0.1", rsa_key=rsa_after)
    cert, key = _files(tmp_path, first)
    reloader = CertReloader(cert, key)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=reloader.context)
    port = server.sockets[0].getsockname()[1]
    client_context = ca.client_context()

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context)
        ssl_object = writer.get_extra_info("ssl_object")
        return reader, writer, peer_serial(ssl_object.getpeercert(binary_form=True))

    async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"ping\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)

    async with server:
        old_reader, old_writer, old_serial = await connect()
        assert old_serial == first.serial
        assert await round_trip(old_reader, old_writer) == b"ping\n"

        second.write(cert, key)
        assert reloader.poll() is Outcome.RELOADED

        new_reader, new_writer, new_serial = await connect()
        assert new_serial == second.serial
        assert await round_trip(new_reader, new_writer) == b"ping\n"
        # The connection from before the reload goes on, with the certificate it had.
        assert await round_trip(old_reader, old_writer) == b"ping\n"
        still = old_writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert peer_serial(still) == first.serial

        for writer in (old_writer, new_writer):
            writer.close()
            await writer.wait_closed()


async def test_run_polls_until_cancelled(tmp_path: Path, ca: TestCA) -> None:
    first, second = ca.issue("127.0.0.1"), ca.issue("127.0.0.1")
    cert, key = _files(tmp_path, first)
    reloader = CertReloader(cert, key)
    task = asyncio.create_task(reloader.run(0.02))
    try:
        second.write(cert, key)
        async with asyncio.timeout(5):
            while reloader.info.serial != second.serial:  # noqa: ASYNC110 -- a poller, polled
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
