"""HTTP errors in the contract's shape: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

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
    body: dict[str, object] = {"error": {"code": code, "message": message}}
    headers = None
    if retry_after_ms is not None:
        body["after_ms"] = retry_after_ms
        headers = {"Retry-After": str(-(-retry_after_ms // 1000))}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
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
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = errors.NOT_FOUND if exc.status_code == 404 else f"http_{exc.status_code}"
        return error_response(exc.status_code, code, str(exc.detail))
