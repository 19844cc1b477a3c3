"""A real `tidings up` process and small clients that speak its HTTP API and WebSocket.

Everything here talks to the server the way an app would: over loopback HTTP and a
WebSocket, with the wire shapes of the contract (PROTOCOL.md). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

if TYPE_CHECKING:
    from tidings.client import ApiClient, User

# Every wait in the behaviour suite is bounded by this (seconds) unless a test says otherwise.
WAIT = 5.0
PASSWORD = "correct horse battery"
JWT_SECRET = "behaviour-tests-jwt-secret-0123456789abcdef01234"  # 48 characters
assert len(JWT_SECRET) == 48

# Presence window of the test servers: long enough that a heartbeat every HEARTBEAT_EVERY
# seconds keeps every socket safely alive, short enough that offline tests stay quick.
PRESENCE_OFFLINE_AFTER_S = 2.0
SWEEP_INTERVAL_S = 0.2
HELLO_TIMEOUT_S = 1.0
HEARTBEAT_EVERY = 0.4

BASE_ENV = {
    "TIDINGS_PRESENCE_OFFLINE_AFTER_S": str(PRESENCE_OFFLINE_AFTER_S),
    "TIDINGS_SWEEP_INTERVAL_S": str(SWEEP_INTERVAL_S),
    "TIDINGS_HELLO_TIMEOUT_S": str(HELLO_TIMEOUT_S),
    "TIDINGS_ARGON2_TIME_COST": "1",
    "TIDINGS_DEVICE_LAST_SEEN_EVERY_S": "1",
    "TIDINGS_ARGON2_MEMORY_KIB": "1024",
    "TIDINGS_JWT_SECRET": JWT_SECRET,
    "TIDINGS_DRAIN_BUDGET_S": "2",
    # Generous limits by default; the rate-limit test starts its own server.
    "TIDINGS_RATE_LIMIT_PER_S": "1000",
    "TIDINGS_RATE_LIMIT_BURST": "1000",
}


# The client library's tests: ``person()`` (a fixture in conftest.py) signs a new user up
# and logs a device in with tidings.client.ApiClient.
Opener = Callable[[], Coroutine[Any, Any, "tuple[ApiClient, User]"]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _tidings_command() -> list[str]:
    script = Path(sys.executable).parent / "tidings"
    if script.exists():
        return [str(script)]
    found = shutil.which("tidings")
    return [found] if found else [sys.executable, "-m", "tidings"]


# --- processes and deployments ------------------------------------------------------------


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Our environment without any TIDINGS_* of the caller's, plus the test timings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(BASE_ENV)
    env.update(extra)
    return env


@dataclass
class TidingsProcess:
    """One `tidings <command>` subprocess on a loopback port, logging to its own file.

    ``keep_port`` makes every start use the same port (a chat server's URL is who it is);
    otherwise each start takes a fresh free port. With ``metrics`` (the default, as the
    operator runs its pods) each start also serves Prometheus metrics on a fresh free port
    of their own (``TIDINGS_METRICS_PORT``, :attr:`metrics_url`).

    ``client_ssl``: the process serves TLS (``TIDINGS_TLS_*`` in ``env``) and this context
    verifies it; the URLs are then ``https://`` and ``wss://``.
    """

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    keep_port: bool = False
    metrics: bool = True
    metrics_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    client_ssl: SSLContext | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.client_ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.client_ssl is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/v1/ws"

    @property
    def metrics_url(self) -> str:
        assert self.metrics_port is not None, f"{self.name} serves no metrics"
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics_url_of(self, url: str) -> str:
        """The metrics of the process behind ``url`` (one of its API or WebSocket URLs)."""
        assert url.rstrip("/") in (self.base_url, self.ws_url), (url, self.name)
        return self.metrics_url

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self) -> None:
        """Start the process; :meth:`wait_healthy` waits for it to answer."""
        assert not self.running, f"{self.name} is already running"
        if not (self.keep_port and self.port):
            self.port = free_port()
        env = child_env(self.env)
        self.metrics_port = free_port() if self.metrics else None
        if self.metrics_port is not None:
            env["TIDINGS_METRICS_PORT"] = str(self.metrics_port)
        command = [
            *_tidings_command(),
            *self.args,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(command)}\n".encode())
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(
            base_url=self.base_url, timeout=1.0, trust_env=False, verify=self.client_ssl or True
        ) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"{self.name} exited with {self.proc.returncode} during start-up:\n"
                        f"{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        self.kill()
        raise AssertionError(f"{self.name} not healthy within {timeout}s:\n{self.log_tail()}")

    def start(self, startup_timeout: float = 30.0) -> None:
        self.launch()
        self.wait_healthy(startup_timeout)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; a process that hangs is killed and the test fails."""
        assert self.proc is not None
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s of SIGTERM:\n{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ServerProcess(TidingsProcess):
    """`tidings up`: the embedded deployment, everything in one process on SQLite."""

    kind = "embedded"

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        super().__init__("tidings up", ["up", "--data-dir", str(data_dir)], log_path, env or {})
        self.data_dir = data_dir

    @property
    def api_urls(self) -> list[str]:
        return [self.base_url]

    @property
    def chat_urls(self) -> list[str]:
        return [self.ws_url]

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"{self.name} log ({self.log_path})", self.log_tail(60))]


class Deployment(Protocol):
    """What the behaviour tests see of a deployment: where its HTTP API and WebSocket are.

    ``base_url`` is one HTTP API, ``api_urls`` all of them (the ``http`` fixture spreads
    tests over them); ``ws_url`` and ``port`` are one chat server's, ``chat_urls`` all of
    them. Embedded, all of these are the one ``tidings up``.
    """

    kind: str

    @property
    def base_url(self) -> str: ...

    @property
    def ws_url(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def api_urls(self) -> list[str]: ...

    @property
    def chat_urls(self) -> list[str]: ...

    def metrics_url_of(self, url: str) -> str:
        """The Prometheus metrics of the process behind one of the deployment's API or
        WebSocket URLs (served on a port of their own, never on ``url``'s)."""
        ...

    def log_sections(self) -> list[tuple[str, str]]: ...


def start_server(
    tmp_dir: Path, *, metrics: bool = True, client_ssl: SSLContext | None = None, **env: str
) -> ServerProcess:
    """``client_ssl``: the server serves TLS (give ``TIDINGS_TLS_CERT_FILE`` and
    ``TIDINGS_TLS_KEY_FILE`` in ``env``) and this context trusts its certificate."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(tmp_dir / "data", tmp_dir / "server.log", dict(env))
    server.metrics = metrics
    server.client_ssl = client_ssl
    server.start()
    return server


@contextlib.contextmanager
def owned_server(
    tmp_dir: Path, *, metrics: bool = True, client_ssl: SSLContext | None = None, **env: str
) -> Iterator[ServerProcess]:
    """A `tidings up` of the test's own, which it may kill, restart or drain; killed at
    the end whatever happened. ``metrics=False``: no metrics port (the default of a
    `tidings up` started by hand); ``client_ssl``: as :func:`start_server`."""
    server = start_server(tmp_dir, metrics=metrics, client_ssl=client_ssl, **env)
    try:
        yield server
    finally:
        server.kill()


def at(server: TidingsProcess, account: Account) -> Account:
    """The same device, connecting to where the server listens now."""
    return dataclasses.replace(account, chat_url=server.ws_url)


def stop_server(server: TidingsProcess) -> int | None:
    """Teardown: SIGTERM, and the process must go away (the exit status is asserted by
    the graceful-shutdown test, not here, so one finding does not fail every teardown)."""
    if server.proc is None or server.proc.poll() is not None:
        return None if server.proc is None else server.proc.returncode
    return server.terminate()


# --- HTTP --------------------------------------------------------------------------------


@dataclass
class Account:
    """One logged-in device of one user."""

    username: str
    password: str
    user_id: str
    device_id: str
    token: str
    chat_url: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def http_client(
    server: Deployment, api: int = 0, *, ssl: SSLContext | None = None
) -> httpx.AsyncClient:
    """An HTTP client of the deployment's ``api``-th API process (modulo how many it has).
    ``ssl`` verifies an HTTPS deployment (default: the deployment's ``client_ssl`` if it
    has one, else the system's trust store)."""
    urls = server.api_urls
    verify = ssl or getattr(server, "client_ssl", None) or True
    return httpx.AsyncClient(
        base_url=urls[api % len(urls)], timeout=10.0, trust_env=False, verify=verify
    )


async def signup(http: httpx.AsyncClient, username: str | None = None) -> dict[str, Any]:
    username = username or unique_name()
    response = await http.post("/v1/users", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(
    http: httpx.AsyncClient, username: str, device_id: str | None = None, **extra: Any
) -> Account:
    payload: dict[str, Any] = {"username": username, "password": PASSWORD, **extra}
    if device_id is not None:
        payload["device_id"] = device_id
    response = await http.post("/v1/sessions", json=payload)
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        username=username,
        password=PASSWORD,
        user_id=body["user_id"],
        device_id=body["device_id"],
        token=body["access_token"],
        chat_url=body["chat_url"],
    )


async def new_account(http: httpx.AsyncClient, prefix: str = "u") -> Account:
    """Sign a new user up and log a first device in."""
    username = unique_name(prefix)
    await signup(http, username)
    return await login(http, username)


async def another_device(http: httpx.AsyncClient, account: Account) -> Account:
    """Log the same user in again: a second device."""
    return await login(http, account.username)


async def befriend(http: httpx.AsyncClient, a: Account, b: Account) -> None:
    """Make two users friends: one asks, the other accepts."""
    for who, whom in ((a, b), (b, a)):
        response = await http.put(f"/v1/friends/{whom.user_id}", headers=who.auth)
        assert response.status_code == 204, response.text


async def make_group(
    http: httpx.AsyncClient, owner: Account, members: Sequence[Account], name: str = "team"
) -> dict[str, Any]:
    """A group of the owner and ``members``: those who are not the owner's friends were
    invited, and accept. Returns the group as ``GET /v1/groups/{id}`` shows it."""
    response = await http.post(
        "/v1/groups",
        json={"name": name, "member_ids": [m.user_id for m in members]},
        headers=owner.auth,
    )
    assert response.status_code == 201, response.text
    channel_id = response.json()["channel_id"]
    invited = set(response.json()["invited"])
    for member in members:
        if member.user_id in invited:
            joined = await http.post(f"/v1/invites/{channel_id}/accept", headers=member.auth)
            assert joined.status_code == 200, joined.text
    group = await http.get(f"/v1/groups/{channel_id}", headers=owner.auth)
    assert group.status_code == 200, group.text
    body: dict[str, Any] = group.json()
    return body


def dm_id(a: Account | str, b: Account | str) -> str:
    ids = sorted(int(x.user_id if isinstance(x, Account) else x) for x in (a, b))
    return f"dm:{ids[0]}:{ids[1]}"


def make_token(claims: dict[str, Any], secret: str = JWT_SECRET, alg: str = "HS256") -> str:
    """An HS256 JWT, for tokens the server did not issue (forged, expired, unknown device)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature) if alg != 'none' else ''}"


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- WebSocket ---------------------------------------------------------------------------

MESSAGE_FIELDS = (
    "message_id",
    "channel_id",
    "sender_id",
    "sender_device_id",
    "client_msg_id",
    "body",
    "ts",
)


class WsClient:
    """A WebSocket client that buffers every frame it receives.

    ``recv_until`` takes the first buffered (or arriving) frame that matches and leaves the
    others in the buffer, so waiting for one kind of frame never loses another. After
    ``hello`` a keep-alive heartbeat runs (as a real app's would); its ``heartbeat_ack``
    frames are swallowed, so a test's own heartbeat gets its own answer.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.buffer: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self.welcome: dict[str, Any] = {}
        self.backlog: list[dict[str, Any]] = []  # the msg frames between welcome and synced
        self.synced: dict[str, Any] = {}
        self._changed = asyncio.Event()
        self._acks_owed = 0
        self._keepalive: asyncio.Task[None] | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, *, ssl: SSLContext | None = None) -> WsClient:
        """Connect to ``url``; a ``wss://`` one is verified with ``ssl`` (default: the
        system's trust store). ``ssl`` is ignored for ``ws://``."""
        tls: dict[str, Any] = {"ssl": ssl} if ssl is not None and url.startswith("wss:") else {}
        ws = await connect(
            url,
            open_timeout=WAIT,
            close_timeout=2,
            ping_interval=None,
            max_size=None,
            proxy=None,
            compression=None,
            **tls,
        )
        return cls(ws)

    @property
    def peer_certificate(self) -> bytes | None:
        """The server's certificate (DER) on a ``wss://`` connection, else None."""
        ssl_object = self.ws.transport.get_extra_info("ssl_object")
        return None if ssl_object is None else ssl_object.getpeercert(binary_form=True)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "heartbeat_ack" and self._acks_owed > 0:
                    self._acks_owed -= 1
                    continue
                self.buffer.append(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            close = getattr(self.ws.protocol, "close_rcvd", None)
            self.close_code = close.code if close is not None else None
            self.close_reason = close.reason if close is not None else None
            self.closed.set()
            self._changed.set()

    async def _heartbeats(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(HEARTBEAT_EVERY)
                self._acks_owed += 1
                await self.ws.send(json.dumps({"type": "heartbeat"}))

    # --- sending ---------------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes, *, text: bool | None = None) -> None:
        """``text=True`` sends bytes as a text frame (as they are: valid UTF-8 or not)."""
        await self.ws.send(data, text=text)

    async def send_msg(
        self,
        body: str,
        *,
        to: Account | str | None = None,
        channel_id: str | None = None,
        client_msg_id: str | None = None,
    ) -> str:
        """Send a message; returns its client_msg_id (wait for the ack separately)."""
        client_msg_id = client_msg_id or uuid.uuid4().hex
        frame: dict[str, Any] = {"type": "send", "client_msg_id": client_msg_id, "body": body}
        if to is not None:
            frame["to"] = to.user_id if isinstance(to, Account) else to
        else:
            frame["channel_id"] = channel_id
        await self.send(frame)
        return client_msg_id

    async def send_and_ack(self, body: str, **target: Any) -> dict[str, Any]:
        client_msg_id = await self.send_msg(body, **target)
        return await self.recv_until("ack", client_msg_id=client_msg_id)

    # --- receiving -------------------------------------------------------------------------

    async def recv_until(
        self, frame_type: str, within: float = WAIT, **fields: Any
    ) -> dict[str, Any]:
        """The first frame of this type (and these field values), within ``within`` seconds."""

        def matches(frame: dict[str, Any]) -> bool:
            return frame.get("type") == frame_type and all(
                frame.get(k) == v for k, v in fields.items()
            )

        index = await self._wait_for(matches, f"{frame_type} {fields or ''}", within)
        return self.buffer.pop(index)

    async def recv_until_any(
        self, frame_types: tuple[str, ...], within: float = WAIT
    ) -> dict[str, Any]:
        """The first frame of any of these types."""
        index = await self._wait_for(
            lambda f: f.get("type") in frame_types, " or ".join(frame_types), within
        )
        return self.buffer.pop(index)

    async def recv_send_answer(self, client_msg_id: str, within: float = WAIT) -> dict[str, Any]:
        """The answer to one ``send``: its ``ack``, or the ``error`` whose ``ref`` names it."""

        def answers(frame: dict[str, Any]) -> bool:
            kind = frame.get("type")
            return (kind == "ack" and frame.get("client_msg_id") == client_msg_id) or (
                kind == "error" and frame.get("ref") == client_msg_id
            )

        index = await self._wait_for(answers, f"ack or error for {client_msg_id}", within)
        return self.buffer.pop(index)

    async def frames_through(self, frame_type: str, within: float = WAIT) -> list[dict[str, Any]]:
        """Every frame, in arrival order, up to and including the first of ``frame_type``."""
        index = await self._wait_for(lambda f: f.get("type") == frame_type, frame_type, within)
        taken = self.buffer[: index + 1]
        del self.buffer[: index + 1]
        return taken

    async def _wait_for(
        self, matches: Callable[[dict[str, Any]], bool], what: str, within: float
    ) -> int:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            self._changed.clear()
            for i, frame in enumerate(self.buffer):
                if matches(frame):
                    return i
            if self.closed.is_set():
                raise AssertionError(
                    f"connection closed ({self.close_code} {self.close_reason!r}) before a "
                    f"{what} frame; buffered: {self._summary()}"
                )
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"no {what} frame within {within}s; buffered: {self._summary()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def take_msgs(self, count: int, within: float = WAIT) -> list[dict[str, Any]]:
        """The hello backlog, then live msg frames, until ``count`` msgs (in arrival order).

        An ``ack`` means stored, not yet in every inbox: a message acked just before a
        device says hello may come right after ``synced`` instead of before it.
        """
        got, self.backlog = self.backlog, []
        while len(got) < count:
            got.append(await self.recv_until("msg", within))
        return got

    def pending(self, frame_type: str) -> list[dict[str, Any]]:
        """Buffered frames of a type (not removed)."""
        return [f for f in self.buffer if f.get("type") == frame_type]

    async def wait_closed(self, within: float = WAIT) -> int | None:
        try:
            await asyncio.wait_for(self.closed.wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"connection still open after {within}s; buffered: {self._summary()}"
            ) from None
        return self.close_code

    async def heartbeat(self, within: float = WAIT) -> dict[str, Any]:
        """Our own heartbeat and its answer: proof the connection still serves us."""
        await self.send({"type": "heartbeat"})
        return await self.recv_until("heartbeat_ack", within)

    # --- lifecycle -------------------------------------------------------------------------

    async def hello(self, token: str, cursor: str = "0", *, keepalive: bool = True) -> None:
        """Say hello and take everything up to ``synced``: welcome, backlog, synced."""
        await self.send({"type": "hello", "token": token, "cursor": cursor})
        frames = await self.frames_through("synced")
        assert frames[0]["type"] == "welcome", f"hello must be answered by welcome: {frames}"
        assert all(f["type"] == "msg" for f in frames[1:-1]), f"only msg before synced: {frames}"
        self.welcome = frames[0]
        self.backlog = [f for f in frames if f["type"] == "msg"]
        self.synced = frames[-1]
        if keepalive:
            self._keepalive = asyncio.create_task(self._heartbeats())

    async def try_hello(
        self, token: str, cursor: str = "0", *, keepalive: bool = True
    ) -> dict[str, Any]:
        """Say hello and return the answer: ``welcome`` (then as :meth:`hello`), or the
        ``redirect``, ``reconnect`` or ``error`` that sends this device away."""
        await self.send({"type": "hello", "token": token, "cursor": cursor})
        first = await self.recv_until_any(("welcome", "redirect", "reconnect", "error"))
        if first["type"] != "welcome":
            return first
        frames = await self.frames_through("synced")
        assert all(f["type"] == "msg" for f in frames[:-1]), f"only msg before synced: {frames}"
        self.welcome = first
        self.backlog = [f for f in frames if f["type"] == "msg"]
        self.synced = frames[-1]
        if keepalive:
            self._keepalive = asyncio.create_task(self._heartbeats())
        return first

    def received_msgs(self) -> list[dict[str, Any]]:
        """Every msg frame this connection got and nobody took yet: backlog, then buffer."""
        return [*self.backlog, *self.pending("msg")]

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 3)
        if not self._reader.done():
            self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader

    def _summary(self) -> str:
        return ", ".join(
            f"{f.get('type')}:{f.get('code') or f.get('client_msg_id') or ''}"
            for f in self.buffer[-20:]
        )


class Clients:
    """Opens WebSocket clients for a test and closes all of them at its end. ``ssl``
    verifies ``wss://`` servers (each :meth:`open` may give its own)."""

    def __init__(self, ssl: SSLContext | None = None) -> None:
        self.opened: list[WsClient] = []
        self.ssl = ssl

    async def open(self, url: str, *, ssl: SSLContext | None = None) -> WsClient:
        client = await WsClient.open(url, ssl=ssl or self.ssl)
        self.opened.append(client)
        return client

    async def connect(
        self, account: Account, cursor: str = "0", *, keepalive: bool = True
    ) -> WsClient:
        client = await self.open(account.chat_url)
        await client.hello(account.token, cursor, keepalive=keepalive)
        return client

    async def close_all(self) -> None:
        await asyncio.gather(*(c.close() for c in self.opened))
        self.opened.clear()


async def reconnect_through_discover(
    http: httpx.AsyncClient,
    clients: Clients,
    account: Account,
    cursor: str,
    *,
    within: float,
    tried: list[str] | None = None,
) -> tuple[WsClient, Account]:
    """What an app does when its chat server went away: ask ``/v1/discover`` where to go,
    connect and say hello; follow a ``redirect``, wait out a ``reconnect``, retry a refused
    connection, until ``welcome`` (bounded by ``within`` seconds). Returns the connection
    and the account with the ``chat_url`` it now uses; ``tried`` collects every detour
    (a discover that failed, a refused connection, a hello answered by something else)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    tried = [] if tried is None else tried
    while loop.time() < deadline:
        try:
            response = await http.get("/v1/discover", headers=account.auth)
        except httpx.TransportError as exc:  # the API itself is moving (a roll): try again
            tried.append(f"discover: {type(exc).__name__}")
            await asyncio.sleep(0.2)
            continue
        if response.status_code != 200:
            tried.append(f"discover {response.status_code}")
            await asyncio.sleep(0.2)
            continue
        url: str | None = response.json()["chat_url"]
        while url is not None and loop.time() < deadline:
            try:
                conn = await clients.open(url)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                tried.append(f"{url}: {type(exc).__name__}")
                await asyncio.sleep(0.2)
                break
            answer = await conn.try_hello(account.token, cursor)
            if answer["type"] == "welcome":
                return conn, dataclasses.replace(account, chat_url=url)
            tried.append(f"{url}: {answer}")
            await conn.wait_closed()
            if answer["type"] == "redirect":
                url = answer["chat_url"]
            elif answer["type"] == "reconnect":
                await asyncio.sleep(answer["after_ms"] / 1000)
                url = None
            else:
                raise AssertionError(f"hello refused while reconnecting: {answer}")
    raise AssertionError(f"no welcome within {within}s; tried: {tried[-8:]}")


def assert_msg_frame(frame: dict[str, Any]) -> None:
    """A msg frame carries seq and every field of a message object, ids as strings."""
    assert frame["type"] == "msg"
    for key in ("seq", *MESSAGE_FIELDS):
        assert key in frame, f"msg frame without {key}: {frame}"
    for key in ("seq", "message_id", "sender_id", "sender_device_id"):
        assert isinstance(frame[key], str) and frame[key].isdigit(), (key, frame)
    assert isinstance(frame["ts"], int), frame


async def assert_nothing_more_before_a_marker(
    sender: WsClient, receiver: WsClient, to: Account
) -> None:
    """No msg is on its way to ``receiver`` (a duplicate, a stray): ``sender`` sends it a
    marker now, and the marker must be the next msg it gets, with nothing buffered behind.
    An inbox is delivered in order, so anything sent before would come first; this waits
    for that instead of for a fixed quiet period."""
    marker = await sender.send_and_ack("marker", to=to)
    nxt = await receiver.recv_until("msg")
    assert nxt["message_id"] == marker["message_id"], f"a msg came before the marker: {nxt}"
    assert receiver.pending("msg") == [], f"msgs after the marker: {receiver.pending('msg')}"
