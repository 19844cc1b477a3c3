"""Request dependencies: the runtime's parts and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tidings.api.errors import ApiError
from tidings.auth import Identity
from tidings.core import errors
from tidings.core.ids import parse_decimal_id
from tidings.runtime import Runtime, wall_ms
from tidings.sessions import check_session


# Dependencies are ``async def``: FastAPI runs a plain ``def`` one on a worker thread,
# a thread hand-off per request for a few attribute reads (and a ~5 µs token check).
async def get_runtime(request: Request) -> Runtime:
    """The runtime the app's lifespan put on the request."""
    runtime: Runtime = request.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_identity(request: Request, runtime: RuntimeDep) -> Identity:
    """The caller, from the ``Authorization: Bearer`` token; 401 ``unauthorized`` when it is
    missing, not valid, or its session has ended."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, errors.UNAUTHORIZED, "missing bearer token")
    try:
        identity = runtime.tokens.verify(token.strip())
        await check_session(runtime.directory, identity)
    except errors.ProtocolError as exc:
        raise ApiError(401, errors.UNAUTHORIZED, exc.message) from exc
    return identity


IdentityDep = Annotated[Identity, Depends(get_identity)]


def parse_id(value: str, code: str = errors.UNKNOWN_USER, status: int = 404) -> int:
    """Path ids are decimal strings; anything else cannot name a thing."""
    parsed = parse_decimal_id(value)
    if parsed is None:
        raise ApiError(status, code, f"no such id {value!r}")
    return parsed


HOUR_MS = 3_600_000


async def spend_hourly(
    runtime: Runtime, user_id: int, kind: str, per_hour: int, what: str, cost: int = 1
) -> None:
    """``cost`` ``kind`` actions of the user's hourly allowance (counted in the directory,
    so shared by every API process), or 429 ``rate_limited`` with ``Retry-After``."""
    wait_ms = await runtime.directory.use_allowance(
        user_id, kind, wall_ms(), HOUR_MS, per_hour, cost
    )
    if wait_ms:
        raise ApiError(
            429,
            errors.RATE_LIMITED,
            f"at most {per_hour} {what} an hour; try later",
            retry_after_ms=wait_ms,
        )
