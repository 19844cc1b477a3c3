"""public_url.py: the placeholders of TIDINGS_PUBLIC_CHAT_URL, and the settings errors that
name what to fix."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.public_url import fill_public_chat_url, with_public_chat_url
from tidings.runtime_cluster import require_cluster_settings
from tidings.settings import Settings, SettingsError


def fill(template: str, **values: Any) -> str:
    values.setdefault("ordinal", 2)
    values.setdefault("pod", "chat-2")
    return fill_public_chat_url(template, **values)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_a_url_without_placeholders_is_left_alone() -> None:
    assert fill("wss://chat.example.com/v1/ws") == "wss://chat.example.com/v1/ws"


def test_ordinal_and_pod() -> None:
    assert fill("wss://chat-{ordinal}.example.com/v1/ws") == "wss://chat-2.example.com/v1/ws"
    assert (
        fill("ws://{pod}.chat.ns.svc:8080/v1/ws", pod="tidings-chat-2")
        == "ws://tidings-chat-2.chat.ns.svc:8080/v1/ws"
    )


def test_host_ip_and_node_port() -> None:
    url = fill("wss://{hostIP}:{nodePort}/v1/ws", host_ip="10.0.0.7", node_port_base=30100)
    assert url == "wss://10.0.0.7:30102/v1/ws"


def test_an_ipv6_host_ip_is_bracketed() -> None:
    url = fill("wss://{hostIP}:{nodePort}/v1/ws", host_ip="fd00::7", node_port_base=30100)
    assert url == "wss://[fd00::7]:30102/v1/ws"


@pytest.mark.parametrize(
    ("template", "values", "names"),
    [
        ("wss://{podName}/v1/ws", {}, ["TIDINGS_PUBLIC_CHAT_URL", "{podName}", "{ordinal}"]),
        ("wss://{}/v1/ws", {}, ["TIDINGS_PUBLIC_CHAT_URL", "unknown placeholder"]),
        ("wss://{hostIP}:30000/v1/ws", {}, ["TIDINGS_HOST_IP"]),
        ("wss://h:{nodePort}/v1/ws", {}, ["TIDINGS_PUBLIC_NODE_PORT_BASE"]),
        (
            "wss://h:{nodePort}/v1/ws",
            {"node_port_base": 65534},
            ["TIDINGS_PUBLIC_NODE_PORT_BASE", "65536", "65535"],
        ),
        ("wss://h:70000/v1/ws", {}, ["TIDINGS_PUBLIC_CHAT_URL", "not a usable URL"]),
        ("wss://chat-{ordinal/v1/ws", {}, ["TIDINGS_PUBLIC_CHAT_URL", "brace"]),
    ],
)
def test_what_cannot_be_filled_in_names_the_variable(
    template: str, values: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(SettingsError) as raised:
        fill(template, **values)
    for name in names:
        assert name in str(raised.value)


def test_settings_are_filled_in_from_their_own_values() -> None:
    given = settings(
        public_chat_url="wss://{hostIP}:{nodePort}/v1/ws?pod={pod}",
        worker_id=3,
        server_id="tidings-chat-3",
        host_ip="192.0.2.4",
        public_node_port_base=31000,
    )
    filled = with_public_chat_url(given)
    assert filled.public_chat_url == "wss://192.0.2.4:31003/v1/ws?pod=tidings-chat-3"
    assert given.public_chat_url == "wss://{hostIP}:{nodePort}/v1/ws?pod={pod}"  # a copy
    assert with_public_chat_url(filled) is filled  # nothing left to fill in
    unset = settings()
    assert with_public_chat_url(unset) is unset


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_PUBLIC_CHAT_URL", "wss://{hostIP}:{nodePort}/v1/ws")
    monkeypatch.setenv("TIDINGS_HOST_IP", "198.51.100.9")
    monkeypatch.setenv("TIDINGS_PUBLIC_NODE_PORT_BASE", "30500")
    monkeypatch.setenv("TIDINGS_WORKER_ID", "1")
    filled = with_public_chat_url(settings())
    assert filled.public_chat_url == "wss://198.51.100.9:30501/v1/ws"


def test_a_chat_server_refuses_to_start_with_a_url_it_cannot_fill_in() -> None:
    base = {"jwt_secret": "x" * 48, "postgres_url": "postgresql+asyncpg://u@h/db"}
    bad = settings(public_chat_url="wss://{hostIP}/v1/ws", **base)
    with pytest.raises(SettingsError, match="TIDINGS_HOST_IP"):
        require_cluster_settings(bad, chat=True)
    require_cluster_settings(bad, chat=False)  # the API serves no WebSocket: not its URL
    good = settings(public_chat_url="wss://chat-{ordinal}.example.com/v1/ws", **base)
    require_cluster_settings(good, chat=True)


def test_the_command_says_what_to_fix_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tidings.cli import main

    monkeypatch.setenv("TIDINGS_JWT_SECRET", "x" * 48)
    monkeypatch.setenv("TIDINGS_POSTGRES_URL", "postgresql+asyncpg://u@h/db")
    monkeypatch.setenv("TIDINGS_PUBLIC_CHAT_URL", "wss://h:{nodePort}/v1/ws")
    assert main(["chat"]) == 2
    assert "TIDINGS_PUBLIC_NODE_PORT_BASE is not set" in capsys.readouterr().err

    monkeypatch.setenv("TIDINGS_TLS_CERT_FILE", "/nonexistent/tls.crt")
    assert main(["up"]) == 2
    assert "TIDINGS_TLS_KEY_FILE is not" in capsys.readouterr().err
