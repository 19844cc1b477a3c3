"""The client's trust for HTTPS and WSS: a private CA (``ca_file`` / ``--ca-file`` /
``TIDINGS_CA_FILE``, kept in the state file by login) or the system's trust store.
Over real sockets in tests/behaviour/test_tls.py."""

from __future__ import annotations

import argparse
import os
import ssl
from pathlib import Path

import pytest

from behaviour._certs import TestCA
from tidings.client import ApiClient, Session, client_ssl_context
from tidings.client._cli import _ca_file
from tidings.client._state import ChatState
from tidings.client._tls import client_ssl_context as same


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return TestCA.new().write(tmp_path_factory.mktemp("ca") / "ca.crt")


def test_a_client_context_verifies_and_trusts_the_ca_given(ca_file: Path) -> None:
    assert client_ssl_context is same
    context = client_ssl_context(ca_file)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    subjects = [dict(pair[0] for pair in c["subject"]) for c in context.get_ca_certs()]
    assert {"commonName": "Tidings test CA"} in subjects


async def test_api_client_keeps_its_context_for_the_chat_connection(ca_file: Path) -> None:
    async with ApiClient("https://chat.test", ca_file=ca_file) as api:
        assert api.ssl is not None
        api.session = Session("t", 1, "1", "2", "wss://chat.test/v1/ws")
        api.token = "t"
        assert api.chat()._ssl is api.ssl
    async with ApiClient("http://chat.test") as plain:
        assert plain.ssl is None  # the system's trust store (by default in websockets too)


def test_ca_file_precedence(tmp_path: Path, ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDINGS_CA_FILE", raising=False)
    state = ChatState("https://x", "ada", "1", "2", "t", 1, "wss://x/v1/ws", ca_file="/saved.pem")
    assert _ca_file(argparse.Namespace(ca_file=None)) is None
    assert _ca_file(argparse.Namespace(ca_file=None), state) == "/saved.pem"
    monkeypatch.setenv("TIDINGS_CA_FILE", "env.pem")
    assert _ca_file(argparse.Namespace(ca_file=None), state) == os.path.abspath("env.pem")
    assert _ca_file(argparse.Namespace(ca_file=ca_file), state) == str(ca_file)

    path = tmp_path / "ada.json"
    state.save(path)
    assert ChatState.load(path).ca_file == "/saved.pem"
    state.ca_file = None
    state.save(path)
    assert ChatState.load(path).ca_file is None
