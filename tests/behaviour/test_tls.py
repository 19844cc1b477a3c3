"""TLS on the public port (`tidings up` with TIDINGS_TLS_CERT_FILE / _KEY_FILE): HTTPS and
WSS verified against a private CA; a certificate rotated on disk is served to new
connections within the reload period while the open sockets go on; a broken pair is
refused and the old certificate stays. The metrics port stays plain HTTP.

Embedded only (each test runs a `tidings up` of its own): every server process serves
TLS through the same code (server.serve), and the cluster target needs its services.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

import httpx
import pytest

from tidings.client import ApiClient, Msg

from ._certs import Leaf, TestCA, peer_serial
from ._harness import (
    PASSWORD,
    Clients,
    ServerProcess,
    WsClient,
    http_client,
    new_account,
    owned_server,
    unique_name,
)

RELOAD_EVERY_S = 0.5
ROTATED_WITHIN_S = 5.0  # ten reload periods


def tls_env(cert: Path, key: Path) -> dict[str, str]:
    return {
        "TIDINGS_TLS_CERT_FILE": str(cert),
        "TIDINGS_TLS_KEY_FILE": str(key),
        "TIDINGS_TLS_RELOAD_EVERY_S": str(RELOAD_EVERY_S),
    }


async def serial_of_a_new_connection(server: ServerProcess, context: ssl.SSLContext) -> int:
    client = await WsClient.open(server.ws_url, ssl=context)
    try:
        return peer_serial(client.peer_certificate)
    finally:
        await client.close()


async def wait_for_new_serial(
    server: ServerProcess, context: ssl.SSLContext, serial: int, within: float
) -> None:
    seen: list[int] = []
    async with asyncio.timeout(within):
        while not seen or seen[-1] != serial:
            seen.append(await serial_of_a_new_connection(server, context))
            await asyncio.sleep(0.1)


async def metric(server: ServerProcess, name: str, labels: str = "") -> float | None:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as plain:  # plain HTTP
        text = (await plain.get(server.metrics_url)).text
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


@pytest.fixture
def ca() -> TestCA:
    return TestCA.new()


async def test_tls_embedded_https_wss_and_a_rotation_that_drops_nobody(
    tmp_path: Path, ca: TestCA
) -> None:
    first = ca.issue("127.0.0.1", "localhost")
    second = ca.issue("127.0.0.1", "localhost")
    assert first.serial != second.serial
    cert, key = tmp_path / "tls" / "tls.crt", tmp_path / "tls" / "tls.key"
    cert.parent.mkdir()
    first.write(cert, key)
    trust = ca.client_context()

    with owned_server(tmp_path / "srv", client_ssl=trust, **tls_env(cert, key)) as server:
        assert server.base_url.startswith("https://")

        # Nobody gets in with the system's trust store (the CA is private) or in plain HTTP.
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as untrusting:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get("/healthz")
        async with httpx.AsyncClient(trust_env=False, timeout=2.0) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{server.port}/healthz")

        async with http_client(server) as http:  # verifies with the CA
            alice = await new_account(http, "alice")
            bob = await new_account(http, "bob")
        # No TIDINGS_PUBLIC_CHAT_URL: the URL comes from the request, wss:// under TLS.
        assert alice.chat_url == f"wss://127.0.0.1:{server.port}/v1/ws"

        async with asyncio.timeout(60):
            clients = Clients(ssl=trust)
            try:
                a1 = await clients.connect(alice)
                b1 = await clients.connect(bob)
                assert peer_serial(a1.peer_certificate) == first.serial
                ack = await a1.send_and_ack("over wss", to=bob)
                got = await b1.recv_until("msg", message_id=ack["message_id"])
                assert got["body"] == "over wss"
                assert await metric(server, "tidings_tls_certificate_not_after_seconds") == (
                    first.cert.not_valid_after_utc.timestamp()
                )

                # Rotate on disk: new connections get the new certificate soon...
                second.write(cert, key)
                await wait_for_new_serial(server, trust, second.serial, ROTATED_WITHIN_S)

                # ...and the sockets from before go on, both ways, with the old one.
                ack = await a1.send_and_ack("after the rotation", to=bob)
                got = await b1.recv_until("msg", message_id=ack["message_id"])
                assert got["body"] == "after the rotation"
                ack = await b1.send_and_ack("reply", to=alice)
                got = await a1.recv_until("msg", message_id=ack["message_id"])
                assert got["body"] == "reply"
                assert peer_serial(a1.peer_certificate) == first.serial

                # A device that connects now has the new certificate and joins in.
                b2 = await clients.connect(bob)
                assert peer_serial(b2.peer_certificate) == second.serial
                ack = await a1.send_and_ack("to both of bob's", to=bob)
                for device in (b1, b2):
                    got = await device.recv_until("msg", message_id=ack["message_id"])
                    assert got["body"] == "to both of bob's"
            finally:
                await clients.close_all()

        assert await metric(server, "tidings_tls_reloads_total", '{result="ok"}') == 1.0
        assert await metric(server, "tidings_tls_reloads_total", '{result="failed"}') == 0.0
        assert await metric(server, "tidings_tls_certificate_not_after_seconds") == (
            second.cert.not_valid_after_utc.timestamp()
        )


async def test_tls_embedded_a_broken_pair_is_refused_and_the_old_cert_served(
    tmp_path: Path, ca: TestCA
) -> None:
    first = ca.issue("127.0.0.1")
    second = ca.issue("127.0.0.1")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    first.write(cert, key)
    trust = ca.client_context()

    with owned_server(tmp_path / "srv", client_ssl=trust, **tls_env(cert, key)) as server:
        async with http_client(server) as http:
            alice = await new_account(http, "alice")
        clients = Clients(ssl=trust)
        try:
            before = await clients.connect(alice)

            # The new certificate with the old key: not a pair.
            Leaf(second.cert, first.key).write(cert, key)
            failed = 'tidings_tls_reloads_total{result="failed"}'
            async with asyncio.timeout(ROTATED_WITHIN_S):
                while await metric(server, failed) != 1:  # noqa: ASYNC110 -- scraped
                    await asyncio.sleep(0.1)
            await asyncio.sleep(3 * RELOAD_EVERY_S)  # more polls of the same bad pair

            # Still the old certificate, for new connections and old ones alike.
            after = await clients.connect(alice)
            assert peer_serial(after.peer_certificate) == first.serial
            await after.heartbeat()
            await before.heartbeat()
            assert await metric(server, "tidings_tls_reloads_total", '{result="failed"}') == 1
            assert await metric(server, "tidings_tls_reloads_total", '{result="ok"}') == 0
            log = server.log_path.read_text()
            assert log.count("TLS certificate not reloaded") == 1, server.log_tail()
            assert "the key is not the certificate's" in log

            # The rotation is finished: the good pair is served.
            second.write(cert, key)
            await wait_for_new_serial(server, trust, second.serial, ROTATED_WITHIN_S)
        finally:
            await clients.close_all()


async def test_tls_embedded_the_python_client_trusts_a_private_ca(
    tmp_path: Path, ca: TestCA
) -> None:
    leaf = ca.issue("127.0.0.1")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    leaf.write(cert, key)
    ca_file = ca.write(tmp_path / "ca.crt")

    with owned_server(
        tmp_path / "srv", client_ssl=ca.client_context(), **tls_env(cert, key)
    ) as server:
        ada, bob = unique_name("ada"), unique_name("bob")
        async with (
            asyncio.timeout(60),
            ApiClient(server.base_url, ca_file=ca_file) as api_ada,
            ApiClient(server.base_url, ca_file=ca_file) as api_bob,
        ):
            await api_ada.signup(ada, PASSWORD)
            await api_bob.signup(bob, PASSWORD)
            await api_ada.login(ada, PASSWORD)
            session = await api_bob.login(bob, PASSWORD)
            assert session.chat_url.startswith("wss://")
            async with api_ada.chat() as chat_ada, api_bob.chat() as chat_bob:
                ack = await chat_ada.send("hello over wss", to=session.user_id)
                async for event in chat_bob.events():
                    if isinstance(event, Msg) and event.message_id == ack.message_id:
                        assert event.body == "hello over wss"
                        break

        # Without the CA the system's trust store does not know this server.
        async with ApiClient(server.base_url) as untrusting:
            with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.signup(unique_name("eve"), PASSWORD)
