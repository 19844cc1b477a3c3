"""Stand-ins for Apple's and Google's push services and a webhook relay, on loopback.

Apple and Google cannot be reached from tests, so these real HTTP servers (hypercorn)
take their place and check what the real services check: APNs and FCM insist on HTTP/2
(here h2c with prior knowledge, since loopback has no TLS; the real endpoints negotiate
h2 by ALPN), the ES256 provider token against the test key, the required headers, the
RS256 JWT-bearer assertion of the service account, the bearer access token and the
payload shapes. They answer with the real services' error bodies, which a test scripts
per device token (410 Unregistered, 400 BadDeviceToken, 429 with Retry-After, 503, FCM
UNREGISTERED...), and record every request, with ``violations`` listing each check a
request failed (a test asserts there are none).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import socket
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypercorn.asyncio import serve
from hypercorn.config import Config

WAIT = 5.0


@dataclass
class Seen:
    """One request as the stand-in received it."""

    method: str
    path: str
    http_version: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Seen], Awaitable[Reply]]


class HttpServer:
    """An ASGI handler served by hypercorn on 127.0.0.1 and a free port."""

    def __init__(self, handler: Handler, *, delay_s: float = 0.0) -> None:
        self.handler = handler
        self.delay_s = delay_s
        self.port = 0
        self.requests: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HttpServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1.0
        self._task = asyncio.create_task(serve(self._app, config, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]
        deadline = time.monotonic() + WAIT
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return self
            if time.monotonic() > deadline or self._task.done():
                raise AssertionError(f"stand-in on port {self.port} did not start")
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, WAIT)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen = Seen(
            method=scope["method"],
            path=scope["path"],
            http_version=scope["http_version"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
            at=time.monotonic(),
        )
        self.requests.append(seen)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            reply = await self.handler(seen)
        finally:
            self.in_flight -= 1
        payload = json.dumps(reply.body).encode() if reply.body is not None else b""
        headers = [(b"content-type", b"application/json")] if reply.body is not None else []
        headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class Scripts:
    """Replies queued per device token; a token with none left gets the success reply."""

    def __init__(self) -> None:
        self._queued: dict[str, deque[Reply]] = defaultdict(deque)

    def add(self, token: str, *replies: Reply) -> None:
        self._queued[token].extend(replies)

    def next(self, token: str) -> Reply | None:
        queue = self._queued.get(token)
        return queue.popleft() if queue else None


# --- keys ---------------------------------------------------------------------------------


def p256_key_pem() -> tuple[str, ec.EllipticCurvePublicKey]:
    """An APNs-like signing key (.p8 is PKCS#8 PEM of a P-256 key) and its public half."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


def service_account(token_uri: str, project_id: str) -> tuple[dict[str, str], rsa.RSAPublicKey]:
    """A service-account JSON like the Firebase console's, with a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return account, key.public_key()


# --- APNs ---------------------------------------------------------------------------------

APNS_PATH = re.compile(r"/3/device/([0-9A-Fa-f]+)")


def apns_error(status: int, reason: str, **headers: str) -> Reply:
    body: dict[str, Any] = {"reason": reason}
    if status == 410:
        body["timestamp"] = int(time.time() * 1000)
    return Reply(status, body, dict(headers))


class ApnsStandin:
    """api.push.apple.com on loopback: token auth, headers, payload; scripted errors."""

    def __init__(
        self, public_key: ec.EllipticCurvePublicKey, key_id: str, team_id: str, topic: str
    ) -> None:
        self.public_key = public_key
        self.key_id = key_id
        self.team_id = team_id
        self.topic = topic
        self.scripts = Scripts()
        self.violations: list[str] = []
        self.accepted: list[Seen] = []
        self.server = HttpServer(self.handle)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[Seen]:
        return self.server.requests

    def accepted_for(self, token: str) -> list[Seen]:
        return [s for s in self.accepted if s.path == f"/3/device/{token}"]

    async def __aenter__(self) -> ApnsStandin:
        await self.server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.__aexit__(*exc)

    def _refuse(self, seen: Seen, status: int, reason: str) -> Reply:
        self.violations.append(f"{seen.path}: {status} {reason}")
        return apns_error(status, reason)

    async def handle(self, seen: Seen) -> Reply:
        if seen.http_version != "2":
            return self._refuse(seen, 400, f"HTTP/{seen.http_version} (APNs is HTTP/2 only)")
        match = APNS_PATH.fullmatch(seen.path)
        if seen.method != "POST" or match is None:
            return self._refuse(seen, 404, "BadPath")
        token = match.group(1)
        auth = seen.headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return self._refuse(seen, 403, "MissingProviderToken")
        provider_token = auth.removeprefix("bearer ")
        try:
            header = jwt.get_unverified_header(provider_token)
            claims = jwt.decode(
                provider_token,
                self.public_key,
                algorithms=["ES256"],
                options={"require": ["iss", "iat"]},
            )
        except jwt.PyJWTError as exc:
            return self._refuse(seen, 403, f"InvalidProviderToken ({exc})")
        if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
            return self._refuse(seen, 403, "InvalidProviderToken (kid)")
        if claims.get("iss") != self.team_id:
            return self._refuse(seen, 403, "InvalidProviderToken (iss)")
        if time.time() - float(claims["iat"]) > 3600:
            return self._refuse(seen, 403, "ExpiredProviderToken")
        topic = seen.headers.get("apns-topic")
        if topic is None:
            return self._refuse(seen, 400, "MissingTopic")
        if topic != self.topic:
            return self._refuse(seen, 400, "TopicDisallowed")
        push_type = seen.headers.get("apns-push-type")
        if push_type not in ("alert", "background"):
            return self._refuse(seen, 400, "InvalidPushType")
        priority = seen.headers.get("apns-priority")
        if priority not in ("5", "10") or (push_type == "background" and priority != "5"):
            return self._refuse(seen, 400, "BadPriority")
        collapse = seen.headers.get("apns-collapse-id")
        if collapse is None or not 0 < len(collapse.encode()) <= 64:
            return self._refuse(seen, 400, "BadCollapseId")
        if not seen.body:
            return self._refuse(seen, 400, "PayloadEmpty")
        if len(seen.body) > 4096:
            return self._refuse(seen, 413, "PayloadTooLarge")
        try:
            payload = seen.json()
        except ValueError:
            return self._refuse(seen, 400, "BadPayload (not JSON)")
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return self._refuse(seen, 400, "BadPayload (no aps dictionary)")
        scripted = self.scripts.next(token)
        if scripted is not None:
            return scripted
        self.accepted.append(seen)
        return Reply(200, None, {"apns-id": secrets.token_hex(16)})


# --- FCM ----------------------------------------------------------------------------------

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
STATUS_TEXT = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def fcm_error(status: int, error_code: str | None, message: str = "", **headers: str) -> Reply:
    error: dict[str, Any] = {
        "code": status,
        "message": message or "error",
        "status": STATUS_TEXT.get(status, "UNKNOWN"),
    }
    if error_code is not None:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": error_code}]
    return Reply(status, {"error": error}, dict(headers))


class FcmStandin:
    """oauth2.googleapis.com/token and fcm.googleapis.com on one loopback server."""

    def __init__(
        self,
        project_id: str,
        *,
        expires_in: int = 3599,
        delay_s: float = 0.0,
    ) -> None:
        self.project_id = project_id
        self.expires_in = expires_in
        self.accounts: dict[str, rsa.RSAPublicKey] = {}  # client_email -> public key
        self.issued: dict[str, float] = {}  # access token -> expiry (time.time())
        self.scripts = Scripts()
        self.violations: list[str] = []
        self.accepted: list[Seen] = []
        self.unauthorized = 0
        self.server = HttpServer(self.handle, delay_s=delay_s)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def requests(self) -> list[Seen]:
        return self.server.requests

    def exchanges(self) -> int:
        return sum(1 for s in self.requests if s.path == "/token")

    def sends(self) -> list[Seen]:
        return [s for s in self.requests if s.path.endswith(":send")]

    def accepted_for(self, token: str) -> list[Seen]:
        return [s for s in self.accepted if s.json()["message"]["token"] == token]

    async def __aenter__(self) -> FcmStandin:
        await self.server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.__aexit__(*exc)

    async def handle(self, seen: Seen) -> Reply:
        if seen.path == "/token":
            return self._token(seen)
        return self._send(seen)

    def _grant_error(self, seen: Seen, description: str) -> Reply:
        self.violations.append(f"/token: {description}")
        return Reply(400, {"error": "invalid_grant", "error_description": description})

    def _token(self, seen: Seen) -> Reply:
        if seen.method != "POST":
            return self._grant_error(seen, "token endpoint wants POST")
        if not seen.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return self._grant_error(seen, "not a form")
        form = dict(urllib.parse.parse_qsl(seen.body.decode()))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "..."})
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            public_key = self.accounts[unverified["iss"]]
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            return self._grant_error(seen, f"Invalid JWT Signature. ({exc})")
        if "https://www.googleapis.com/auth/firebase.messaging" not in claims["scope"].split():
            return self._grant_error(seen, "scope lacks firebase.messaging")
        if claims["exp"] - claims["iat"] > 3600:
            return self._grant_error(seen, "Invalid JWT: expiration too far in the future")
        access = f"ya29.{secrets.token_urlsafe(24)}"
        self.issued[access] = time.time() + self.expires_in
        return Reply(
            200, {"access_token": access, "expires_in": self.expires_in, "token_type": "Bearer"}
        )

    def _invalid(self, seen: Seen, message: str) -> Reply:
        self.violations.append(f"{seen.path}: {message}")
        return fcm_error(400, "INVALID_ARGUMENT", message)

    def _send(self, seen: Seen) -> Reply:
        if seen.http_version != "2":
            self.violations.append(f"HTTP/{seen.http_version} (our FCM client speaks HTTP/2)")
        if seen.method != "POST" or seen.path != f"/v1/projects/{self.project_id}/messages:send":
            self.violations.append(f"bad path {seen.method} {seen.path}")
            return fcm_error(404, None, "Requested entity was not found.")
        auth = seen.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or self.issued.get(token, 0) <= time.time():
            self.unauthorized += 1
            return fcm_error(401, None, "Request had invalid authentication credentials.")
        try:
            body = seen.json()
        except ValueError:
            return self._invalid(seen, "body is not JSON")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict) or set(body) != {"message"}:
            return self._invalid(seen, "body must be {'message': {...}}")
        targets = [k for k in ("token", "topic", "condition") if k in message]
        if targets != ["token"] or not isinstance(message["token"], str):
            return self._invalid(seen, "message needs exactly one target: token")
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            return self._invalid(seen, "data values must be strings")
        android = message.get("android", {})
        if android.get("priority", "normal") not in ("normal", "high"):
            return self._invalid(seen, "android.priority")
        apns = message.get("apns", {})
        if apns and not isinstance(apns.get("payload", {}).get("aps", {}), dict):
            return self._invalid(seen, "apns.payload.aps")
        scripted = self.scripts.next(message["token"])
        if scripted is not None:
            return scripted
        self.accepted.append(seen)
        return Reply(200, {"name": f"projects/{self.project_id}/messages/{len(self.accepted)}"})


# --- webhook relay ------------------------------------------------------------------------


class WebhookStandin:
    """A relay that checks the HMAC and the timestamp window (its own implementation)."""

    def __init__(self, secret: str, *, window_s: float = 300) -> None:
        self.secret = secret.encode()
        self.window_s = window_s
        self.scripts = Scripts()
        self.violations: list[str] = []
        self.accepted: list[Seen] = []
        self.server = HttpServer(self.handle)

    @property
    def url(self) -> str:
        return f"{self.server.url}/relay"

    @property
    def requests(self) -> list[Seen]:
        return self.server.requests

    async def __aenter__(self) -> WebhookStandin:
        await self.server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.__aexit__(*exc)

    def check(self, seen: Seen) -> str | None:
        """Why this request must be refused, or None."""
        timestamp = seen.headers.get("tidings-timestamp", "")
        signature = seen.headers.get("tidings-signature", "")
        if not timestamp.isdigit():
            return "no timestamp"
        if abs(time.time() - int(timestamp)) > self.window_s:
            return "timestamp outside the window (replay?)"
        expected = hmac.new(
            self.secret, timestamp.encode() + b"." + seen.body, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(signature, f"v1={expected}"):
            return "bad signature"
        return None

    async def handle(self, seen: Seen) -> Reply:
        if seen.method != "POST" or seen.path != "/relay":
            self.violations.append(f"bad path {seen.method} {seen.path}")
            return Reply(404, {"error": "not found"})
        refused = self.check(seen)
        if refused is not None:
            self.violations.append(refused)
            return Reply(401, {"error": refused})
        scripted = self.scripts.next(seen.json().get("token", ""))
        if scripted is not None:
            return scripted
        self.accepted.append(seen)
        return Reply(202, {"ok": True})


async def wait_until(predicate: Callable[[], bool], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.02)
