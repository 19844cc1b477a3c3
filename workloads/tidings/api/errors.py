"""HTTP errors in the contract's shape: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tidings.auth import PasswordsBusy
from tidings.core import errors

PASSWORDS_BUSY_RETRY_MS = 1000


class ApiError(Exception):
    """An error answer; ``retry_after_ms`` adds ``Retry-After`` (seconds, rounded up)
    and ``after_ms`` in the body, for a client told to come back later."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


def error_response(
    status: int, code: str, message: str, retry_after_ms: int | None = None
) -> JSONResponse:
    """An error answer in the contract's shape; ``retry_after_ms`` adds ``after_ms`` to the
    body and ``Retry-After`` (seconds, rounded up)."""
    body: dict[str, object] = {"error": {"code": code, "message": message}}
    headers = None
    if retry_after_ms is not None:
        body["after_ms"] = retry_after_ms
        headers = {"Retry-After": str(-(-retry_after_ms // 1000))}
    return JSONResponse(body, status_code=status, headers=headers)


_UNPARSABLE_BODY = "There was an error parsing the body"
BODY_TOO_LARGE = "tidings.body_too_large"  # scope key: BodyLimit stopped reading the body


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is refused with 413
    ``payload_too_large`` before anything parses it — at once when ``Content-Length``
    says so, else (chunked) as soon as the bytes received pass the limit."""

    def __init__(self, app: Any, max_bytes: int, unlimited_puts: str | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # PUTs under this path prefix count their bytes themselves (the embedded media
        # store's signed uploads: exactly the size the URL names).
        self.unlimited_puts = unlimited_puts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or (
            self.unlimited_puts is not None
            and scope["method"] == "PUT"
            and scope["path"].startswith(self.unlimited_puts)
        ):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return
        received = 0
        started = False

        async def counted_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    scope[BODY_TOO_LARGE] = self.max_bytes  # for the handler FastAPI calls
                    raise _TooLarge
            return message

        async def watched_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        response = error_response(
            413, errors.PAYLOAD_TOO_LARGE, f"request body over {self.max_bytes} bytes"
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


class _TooLarge(Exception):
    pass


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the app raises answer in the contract's shape: :class:`ApiError`,
    :class:`PasswordsBusy` (503), validation (422 ``invalid_request``) and Starlette's own."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.retry_after_ms)

    @app.exception_handler(PasswordsBusy)
    async def _passwords_busy(_: Request, exc: PasswordsBusy) -> JSONResponse:
        return error_response(
            503, errors.UNAVAILABLE, "too many logins at once; try again", PASSWORDS_BUSY_RETRY_MS
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return error_response(422, errors.INVALID_REQUEST, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and (limit := request.scope.get(BODY_TOO_LARGE)):
            # BodyLimit stopped a chunked body mid-way; FastAPI reports any failure to
            # read a body as this 400.
            return error_response(413, errors.PAYLOAD_TOO_LARGE, f"request body over {limit} bytes")
        if exc.status_code == 400 and str(exc.detail) == _UNPARSABLE_BODY:
            # FastAPI's answer to a body json could not read (e.g. nested too deep for
            # it: a RecursionError): the contract's invalid_request, like any bad body.
            return error_response(422, errors.INVALID_REQUEST, "body is not valid JSON")
        code = errors.NOT_FOUND if exc.status_code == 404 else f"http_{exc.status_code}"
        return error_response(exc.status_code, code, str(exc.detail))
