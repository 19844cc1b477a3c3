"""Media (docs/protocol.md, "Media: uploads, attachments and downloads"): uploading a file
through an upload slot and downloading one, verified.

The bytes never pass through the API. ``POST /v1/media`` (size and SHA-256 declared up
front) hands out presigned URLs; the bytes go straight to the blob store, in one ``PUT`` or
in 8 MiB parts (each answer's ``ETag`` kept for ``complete``); ``POST …/complete`` makes
the upload ready and a ``send`` refers to it by an :class:`~._models.Attachment`.

* Files are read from disk a chunk at a time (hashing, then each ``PUT``): a 100 MB video
  is never in memory at once.
* A part that fails (no answer, 5xx, 429) is sent again, a few times, with a growing
  delay; a ``403`` (the URL expired or was refused) fetches fresh URLs from
  ``GET /v1/media/{id}/upload`` first. ``complete`` answered ``409 upload_incomplete``
  sends the parts the store lacks (``done_parts``) again, once.
* Resuming after a restart: ``upload(..., media_id=…, etags=…)`` asks
  ``GET /v1/media/{id}/upload`` which parts the store holds and sends only the others.
  The contract's ``done_parts`` has no ETags, so a done part whose ETag the caller did not
  keep (``on_part(media_id, part_number, etag)`` reports each one as it is stored) is sent
  again: sending a part again replaces it.
* Blob-store requests go through a client of their own: no ``Authorization`` header (a
  presigned URL must not get the bearer token) and no proxy from the environment.
* Downloads stream to a file beside the destination, hashing as they go; the size and
  SHA-256 are checked against the media object before the file is moved into place (a
  mismatch raises :class:`~._errors.TidingsProtocolError` and leaves nothing behind). A
  dropped download resumes with a ``Range`` request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import Any, BinaryIO, Protocol
from urllib.parse import urljoin

import httpx

from tidings.core.media import sniff

from ._errors import TidingsApiError, TidingsConnectionError, TidingsError, TidingsProtocolError
from ._models import Attachment, MediaObject, as_object, get_int, get_str

__all__ = [
    "CONTENT_TYPES",
    "MediaSource",
    "download_media",
    "guess_content_type",
    "sniff_content_type",
    "upload_media",
]

logger = logging.getLogger(__name__)

MediaSource = str | os.PathLike[str] | bytes | bytearray | memoryview
"""What :meth:`ApiClient.upload` sends: a file's path, or the bytes themselves."""


class MediaApi(Protocol):
    """What uploads and downloads ask of :class:`~tidings.client.ApiClient` (a Protocol,
    so that this module does not import ``_http``, which imports it)."""

    base_url: str
    timeout: float
    transport: httpx.AsyncBaseTransport | None

    @property
    def blob_verify(self) -> SSLContext | bool: ...
    async def create_upload(
        self, content_type: str, size: int, sha256: str, *, e2e: bool = False
    ) -> MediaObject: ...
    async def upload_status(self, media_id: str) -> MediaObject: ...
    async def complete_upload(
        self, media_id: str, parts: list[dict[str, Any]] | None = None
    ) -> MediaObject: ...
    async def get_media(self, media_id: str) -> MediaObject: ...


CHUNK = 1 << 20  # read and hashed this much at a time
ATTEMPTS = 4  # tries of one PUT or GET against the blob store
RETRY_DELAYS_S = (0.5, 1.0, 2.0)
MAX_NAME = 255
HEAD_BYTES = 64  # enough of the start of a file to tell its type

CONTENT_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "audio/ogg",
    "audio/mp4",
    "audio/mpeg",
    "application/pdf",
)
"""The types the contract accepts (``application/octet-stream`` only with ``e2e``)."""

_BY_EXTENSION = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".qt": "video/quicktime",
    ".webm": "video/webm",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".mp3": "audio/mpeg",
    ".pdf": "application/pdf",
}


def sniff_content_type(head: bytes) -> str | None:
    """The type the first bytes of a file say it is, of the types the server takes (the
    server's own table, core/media.py: what it would accept is what it checks), or None."""
    return sniff(head)


def guess_content_type(head: bytes, name: str | None = None) -> str:
    """From the first bytes, else from the name's extension, else
    ``application/octet-stream`` (which the server refuses unless the upload is ``e2e``)."""
    sniffed = sniff_content_type(head)
    if sniffed is not None:
        return sniffed
    if name:
        by_name = _BY_EXTENSION.get(os.path.splitext(name)[1].lower())
        if by_name is not None:
            return by_name
    return "application/octet-stream"


def _short_name(name: str) -> str:
    """At most 255 characters, keeping the extension."""
    if len(name) <= MAX_NAME:
        return name
    stem, ext = os.path.splitext(name)
    if len(ext) >= MAX_NAME // 2:
        return name[:MAX_NAME]
    return stem[: MAX_NAME - len(ext)] + ext


# -- what is uploaded -----------------------------------------------------------------------------


class _Source:
    """The bytes to upload: read in chunks from a file, or sliced from memory."""

    def __init__(self, source: MediaSource) -> None:
        if isinstance(source, bytes | bytearray | memoryview):
            self.path: Path | None = None
            self.data: memoryview | None = memoryview(source).cast("B")
            self.name: str | None = None
        else:
            self.path = Path(source)
            self.data = None
            self.name = self.path.name

    async def digest(self) -> tuple[int, str, bytes]:
        """Size, SHA-256 (lowercase hex) and the first bytes."""
        if self.data is not None:
            return (
                len(self.data),
                hashlib.sha256(self.data).hexdigest(),
                bytes(self.data[:HEAD_BYTES]),
            )
        assert self.path is not None
        return await asyncio.to_thread(_digest_file, self.path)

    async def chunks(self, offset: int, length: int) -> AsyncIterator[bytes]:
        """``length`` bytes from ``offset``, a chunk at a time."""
        if self.data is not None:
            for start in range(offset, offset + length, CHUNK):
                yield bytes(self.data[start : min(start + CHUNK, offset + length)])
            return
        assert self.path is not None
        file = await asyncio.to_thread(open, self.path, "rb")
        try:
            await asyncio.to_thread(file.seek, offset)
            left = length
            while left > 0:
                chunk = await asyncio.to_thread(file.read, min(CHUNK, left))
                if not chunk:
                    raise TidingsError(f"{self.path} got shorter while it was being uploaded")
                left -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(file.close)


def _digest_file(path: Path) -> tuple[int, str, bytes]:
    sha = hashlib.sha256()
    size, head = 0, b""
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            if size < HEAD_BYTES:
                head = (head + chunk)[:HEAD_BYTES]
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), head


# -- the blob store -------------------------------------------------------------------------------


def _blob_error(response: httpx.Response, what: str) -> TidingsApiError:
    """A blob store's refusal: the embedded store's ``{"error": …}`` or S3's XML
    ``<Error><Code>``, as a :class:`TidingsApiError`."""
    status, code, message = response.status_code, f"http_{response.status_code}", what
    try:
        error = as_object(response.json()).get("error")
        if isinstance(error, dict):
            code = str(error.get("code", code))
            message = f"{what}: {error.get('message', '')}"
    except ValueError:
        found = re.search(r"<Code>([^<]{1,100})</Code>", response.text)
        if found:
            code = found.group(1)
            detail = re.search(r"<Message>([^<]{0,300})</Message>", response.text)
            message = f"{what}: {detail.group(1) if detail else code}"
    return TidingsApiError(status, code, message)


def _again(response: httpx.Response) -> bool:
    """Worth trying the same request again a bit later."""
    return response.status_code >= 500 or response.status_code in (408, 429)


async def _pause(attempt: int) -> None:
    await asyncio.sleep(RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)])


@dataclass(slots=True)
class _Slot:
    """The upload slot as last handed out (fresh URLs after a refresh)."""

    media: MediaObject

    @property
    def method(self) -> str:
        return get_str(self.upload, "method")

    @property
    def upload(self) -> Mapping[str, object]:
        if self.media.upload is None:
            raise TidingsProtocolError(
                f"media {self.media.media_id}: a pending upload without 'upload'"
            )
        return self.media.upload

    def headers(self, extra: object = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        for given in (self.upload.get("headers"), extra):
            if isinstance(given, dict):
                headers.update({str(k): str(v) for k, v in given.items()})
        return headers

    def parts(self) -> dict[int, Mapping[str, object]]:
        items = self.upload.get("parts")
        if not isinstance(items, list):
            raise TidingsProtocolError("a multipart upload without a list of 'parts'")
        parts = {}
        for item in items:
            part = as_object(item, "part")
            parts[get_int(part, "part_number")] = part
        return parts


class _Uploader:
    def __init__(
        self,
        api: MediaApi,
        blob: httpx.AsyncClient,
        source: _Source,
        slot: _Slot,
        etags: dict[int, str],
        on_part: Callable[[str, int, str], None] | None,
    ) -> None:
        self.api, self.blob, self.source, self.slot = api, blob, source, slot
        self.etags, self.on_part = etags, on_part
        self.media_id = slot.media.media_id

    async def refresh(self) -> None:
        self.slot = _Slot(await self.api.upload_status(self.media_id))

    async def put(self, part_number: int | None, offset: int, length: int) -> str | None:
        """One PUT of these bytes (the whole upload, or one part): its ETag."""
        for attempt in range(ATTEMPTS):
            if part_number is None:
                target: Mapping[str, object] = self.slot.upload
            else:
                target = self.slot.parts().get(part_number) or {}
                if not target:
                    raise TidingsProtocolError(f"the upload slot lost part {part_number}")
            url = urljoin(self.api.base_url + "/", get_str(target, "url"))
            headers = self.slot.headers(target.get("headers") if part_number is not None else None)
            if not any(k.lower() == "content-length" for k in headers):
                headers["Content-Length"] = str(length)
            what = f"PUT of media {self.media_id}" + (
                f" part {part_number}" if part_number is not None else ""
            )
            last = attempt == ATTEMPTS - 1
            try:
                content: Any = self.source.chunks(offset, length) if length else b""
                response = await self.blob.put(url, content=content, headers=headers)
            except httpx.TransportError as exc:
                if last:
                    raise TidingsConnectionError(f"{what}: {exc!r}") from exc
                logger.info("%s failed (%r); again", what, exc)
                await _pause(attempt)
                continue
            if response.status_code < 300:
                etag: str | None = response.headers.get("ETag")
                if part_number is not None and not etag:
                    raise TidingsProtocolError(f"{what}: the store's answer has no ETag")
                return etag
            if response.status_code == 403 and not last:
                # The URL expired (an hour), or the store refused it: ask for fresh ones.
                logger.info("%s refused (%s); fresh URLs", what, _blob_error(response, what))
                await self.refresh()
                continue
            if _again(response) and not last:
                logger.info("%s answered %d; again", what, response.status_code)
                await _pause(attempt)
                continue
            raise _blob_error(response, what)
        raise AssertionError("unreachable")

    async def send_parts(self, done: set[int]) -> None:
        """Every part not in ``done`` (the store holds it and its ETag is known)."""
        if self.slot.method == "PUT":
            await self.put(None, 0, self.slot.media.size)
            return
        part_size = get_int(self.slot.upload, "part_size")
        for number, part in sorted(self.slot.parts().items()):
            if number in done and number in self.etags:
                continue
            etag = await self.put(number, (number - 1) * part_size, get_int(part, "size"))
            assert etag is not None
            self.etags[number] = etag
            if self.on_part is not None:
                self.on_part(self.media_id, number, etag)

    def completion(self) -> list[dict[str, Any]] | None:
        if self.slot.method == "PUT":
            return None
        return [{"part_number": n, "etag": e} for n, e in sorted(self.etags.items())]


def blob_client(api: MediaApi) -> httpx.AsyncClient:
    """A client for presigned URLs: none of the API's headers, no proxy from the
    environment, the API client's trust (and transport, for tests)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(60.0, connect=api.timeout),
        trust_env=False,
        verify=api.blob_verify,
        transport=api.transport,
    )


async def upload_media(
    api: MediaApi,
    source: MediaSource,
    *,
    content_type: str | None = None,
    name: str | None = None,
    e2e: bool = False,
    media_id: str | None = None,
    etags: Mapping[int, str] | None = None,
    on_part: Callable[[str, int, str], None] | None = None,
) -> Attachment:
    """See :meth:`ApiClient.upload`."""
    data = _Source(source)
    size, sha256, head = await data.digest()
    name = name if name is not None else data.name
    if e2e:
        content_type = content_type or "application/octet-stream"
    elif content_type is None:
        content_type = guess_content_type(head, name)
    known = dict(etags or {})
    if media_id is None:
        media = await api.create_upload(content_type, size, sha256, e2e=e2e)
        known.clear()
    else:
        try:
            media = await api.upload_status(media_id)
        except TidingsApiError as exc:
            if exc.code != "unknown_media":
                raise
            media = await api.get_media(media_id)  # completed already (or not ours: raises)
        if (media.size, media.sha256) != (size, sha256):
            raise ValueError(
                f"media {media_id} was declared with {media.size} bytes, sha256 "
                f"{media.sha256}; this source has {size}, {sha256}"
            )
    if media.state != "ready":
        uploader = _Uploader(api, blob_client(api), data, _Slot(media), known, on_part)
        async with uploader.blob:
            await uploader.send_parts(set(media.done_parts))
            try:
                media = await api.complete_upload(media.media_id, uploader.completion())
            except TidingsApiError as exc:
                if exc.code != "upload_incomplete":
                    raise
                # The store lacks bytes (a part lost, or sent with an ETag we no longer
                # trust): send what it does not hold again, then complete once more.
                logger.info("media %s: %s; sending the missing parts", media.media_id, exc)
                await uploader.refresh()
                done = set(uploader.slot.media.done_parts)
                for number in list(uploader.etags):
                    if number not in done:
                        del uploader.etags[number]
                await uploader.send_parts(done)
                media = await api.complete_upload(media.media_id, uploader.completion())
    return Attachment(
        media.media_id,
        media.content_type,
        media.size,
        media.sha256,
        None if e2e or not name else _short_name(name),
        media.width,
        media.height,
    )


# -- downloads ------------------------------------------------------------------------------------


async def _fetch(
    api: MediaApi,
    blob: httpx.AsyncClient,
    media_id: str,
    url: str,
    out: BinaryIO,
    *,
    thumbnail: bool = False,
) -> tuple[int, str]:
    """Stream ``url`` into ``out``: the bytes written and their SHA-256. A dropped
    transfer resumes with ``Range``; a refused URL (403: expired) is fetched afresh."""
    written, sha = 0, hashlib.sha256()
    what = f"download of media {media_id}" + (" (thumbnail)" if thumbnail else "")
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        headers = {"Range": f"bytes={written}-"} if written else {}
        try:
            async with blob.stream(
                "GET", urljoin(api.base_url + "/", url), headers=headers
            ) as response:
                if response.status_code == 403 and not last:
                    fresh = await api.get_media(media_id)
                    url = (fresh.thumbnail_url if thumbnail else fresh.url) or url
                    continue
                if response.status_code >= 300:
                    if _again(response) and not last:
                        await _pause(attempt)
                        continue
                    await response.aread()
                    raise _blob_error(response, what)
                if written and response.status_code != 206:  # the whole file again
                    await asyncio.to_thread(out.seek, 0)
                    await asyncio.to_thread(out.truncate)
                    written, sha = 0, hashlib.sha256()
                async for chunk in response.aiter_bytes(CHUNK):
                    await asyncio.to_thread(out.write, chunk)
                    sha.update(chunk)
                    written += len(chunk)
            return written, sha.hexdigest()
        except httpx.TransportError as exc:
            if last:
                raise TidingsConnectionError(f"{what}: {exc!r}") from exc
            logger.info("%s broke off at %d bytes (%r); resuming", what, written, exc)
            await _pause(attempt)
    raise AssertionError("unreachable")


async def download_media(
    api: MediaApi, media_id: str, dest: str | os.PathLike[str], *, thumbnail: bool = False
) -> tuple[MediaObject, Path]:
    """See :meth:`ApiClient.download`. The file appears at ``dest`` only once complete
    (and, for the media itself, verified); an existing file there is replaced."""
    media = await api.get_media(media_id)
    url = media.thumbnail_url if thumbnail else media.url
    if url is None:
        what = "thumbnail" if thumbnail else "download url"
        raise TidingsProtocolError(f"media {media_id} has no {what}")
    target = Path(dest)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with await asyncio.to_thread(temp.open, "xb") as out:
            async with blob_client(api) as blob:
                size, sha256 = await _fetch(api, blob, media_id, url, out, thumbnail=thumbnail)
        if not thumbnail and (size, sha256) != (media.size, media.sha256):
            raise TidingsProtocolError(
                f"media {media_id}: got {size} bytes with sha256 {sha256}, the media "
                f"object says {media.size} bytes, sha256 {media.sha256}"
            )
        await asyncio.to_thread(os.replace, temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return media, target
