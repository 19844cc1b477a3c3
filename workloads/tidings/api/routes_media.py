"""Media uploads and downloads (docs/media.md; docs/protocol.md, "Media").

Upload slots, completion and download URLs for every store; with the embedded store
(`tidings up`) also the signed routes its URLs name, where the bytes go in and out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import IdentityDep, RuntimeDep, spend_hourly
from tidings.api.errors import ApiError
from tidings.core import errors
from tidings.core.media import is_media_id
from tidings.media.local import LocalBlobStore
from tidings.media.service import MediaError, MediaService
from tidings.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1")

MIB = 1 << 20
MAX_PARTS = 10_000


class CreateMediaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content_type: str = Field(min_length=1, max_length=100)
    size: int = Field(ge=1)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    e2e: bool = False


class PartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part_number: int = Field(ge=1, le=MAX_PARTS)
    etag: str = Field(min_length=1, max_length=200)


class CompleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: list[PartBody] | None = Field(None, max_length=MAX_PARTS)


def _service(runtime: Runtime) -> MediaService:
    if runtime.media is None:
        raise ApiError(
            503,
            errors.UNAVAILABLE,
            "media is off here: no blob store configured (TIDINGS_MEDIA_STORE, docs/media.md)",
        )
    return runtime.media


def _media_id(value: str) -> str:
    if not is_media_id(value):
        raise ApiError(404, errors.UNKNOWN_MEDIA, f"no media {value[:40]!r}")
    return value


def _api_error(exc: MediaError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


@asynccontextmanager
async def _answering() -> AsyncIterator[None]:
    """The media service's refusals as the contract's errors; a blob store that cannot
    be reached (or answers with an error of its own) as 503 ``unavailable``."""
    try:
        yield
    except MediaError as exc:
        raise _api_error(exc) from exc
    except (BotoCoreError, ClientError, OSError) as exc:
        log.warning("blob store unavailable: %s", exc)
        raise ApiError(
            503, errors.UNAVAILABLE, "the blob store is unavailable: try again", retry_after_ms=1000
        ) from exc


def _base_url(request: Request) -> str:
    return str(request.base_url)


@router.post("/media", status_code=201)
async def create_media(
    body: CreateMediaBody, request: Request, me: IdentityDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """A new upload: its record and where to PUT the bytes.

    Refused by the media service's rules (type, size, quota) in the contract's terms,
    429 ``rate_limited`` over the hourly uploads or MiB, 503 when the blob store is down."""
    service = _service(runtime)
    settings = runtime.settings
    async with _answering():
        service.check(body.content_type, body.size, body.e2e)
        await spend_hourly(runtime, me.user_id, "media", settings.media_uploads_per_hour, "uploads")
        await spend_hourly(
            runtime,
            me.user_id,
            "media_mib",
            settings.media_mib_per_hour,
            "MiB of uploads",
            cost=math.ceil(body.size / MIB),
        )
        return await service.create(
            me.user_id, body.content_type, body.size, body.sha256, body.e2e, _base_url(request)
        )


@router.get("/media/{media_id}/upload")
async def upload_info(
    media_id: str, request: Request, me: IdentityDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """The pending upload again, with fresh URLs and the parts already stored (to resume)."""
    async with _answering():
        return await _service(runtime).upload_info(
            me.user_id, _media_id(media_id), _base_url(request)
        )


@router.post("/media/{media_id}/complete")
async def complete_media(
    media_id: str, me: IdentityDep, runtime: RuntimeDep, body: CompleteBody | None = None
) -> dict[str, Any]:
    """Finish an upload (``parts`` for a multipart one): checked and then ready to be sent.
    Completing a ready upload returns it."""
    parts = None
    if body is not None and body.parts:
        parts = [(p.part_number, p.etag) for p in body.parts]
    async with _answering():
        record = await _service(runtime).complete(me.user_id, _media_id(media_id), parts)
    return record.to_wire()


@router.get("/media/{media_id}")
async def describe_media(
    media_id: str,
    request: Request,
    me: IdentityDep,
    runtime: RuntimeDep,
    ttl_s: Annotated[int | None, Query(ge=1, le=86_400)] = None,
) -> dict[str, Any]:
    """``ttl_s``: URLs valid this long, if shorter than the server's download TTL."""
    async with _answering():
        return await _service(runtime).describe(
            me.user_id, _media_id(media_id), _base_url(request), ttl_s
        )


# --- the embedded store's signed routes (no bearer token: the URL is the credential) ---


def _local(runtime: Runtime) -> LocalBlobStore:
    store = runtime.media.store if runtime.media is not None else None
    if not isinstance(store, LocalBlobStore):
        raise ApiError(404, errors.NOT_FOUND, "no such blob")
    return store


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params)


@router.put("/media/blob/{key}")
async def put_blob(key: str, request: Request, runtime: RuntimeDep) -> Any:
    """The embedded store's signed upload (a whole blob, or a part): the signed URL is the
    credential. Answers with the bytes' ``ETag``."""
    store = _local(runtime)
    try:
        op = "part" if "upload" in request.query_params else "put"
        fields = store.check(key, _query(request), op, store.clock())
        etag = await store.receive(
            key,
            fields,
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
        )
    except MediaError as exc:
        raise _api_error(exc) from exc
    return Response(status_code=200, headers={"ETag": etag})


# Served bytes never run as a page of this origin: no sniffing into HTML, and a sandbox.
_DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, max-age=300",
}


@router.get("/media/blob/{key}")
async def get_blob(key: str, request: Request, runtime: RuntimeDep) -> Any:
    """The embedded store's signed download: the signed URL is the credential. The bytes
    are served so that they never run as a page of this origin."""
    store = _local(runtime)
    try:
        fields = store.check(key, _query(request), "get", store.clock())
    except MediaError as exc:
        raise _api_error(exc) from exc
    path = store.path_of(key)
    if path is None:
        raise ApiError(404, errors.NOT_FOUND, "no such blob (deleted)")
    content_type = fields.get("ct", "application/octet-stream")
    headers = dict(_DOWNLOAD_HEADERS)
    if content_type == "application/octet-stream":
        headers["Content-Disposition"] = "attachment"
    return FileResponse(path, media_type=content_type, headers=headers)
