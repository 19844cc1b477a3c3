"""Upload slots, their completion and checks, downloads, and the orphan sweeper
(docs/media.md). The API's routes call this; the blob store and the media table are
behind it."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tidings import metrics
from tidings.core import errors
from tidings.core.media import (
    E2E_CONTENT_TYPE,
    Limits,
    MediaRecord,
    kind_of,
    matches,
    new_media_id,
)
from tidings.media.blobs import BlobStore, MediaError, UploadIncomplete
from tidings.media.thumbnails import THUMBNAIL_TYPE, NotAnImage, make_thumbnail
from tidings.settings import Settings
from tidings.storage.sql.media import DELETING, PENDING, READY, MediaStore

log = logging.getLogger(__name__)

SNIFF_BYTES = 64
SWEEP_BATCH = 500
__all__ = ["MediaConfig", "MediaError", "MediaService"]
IsMember = Callable[[int, str], Awaitable[bool]]


@dataclass(frozen=True)
class MediaConfig:
    limits: Limits = field(default_factory=Limits)
    part_size: int = 8 << 20
    multipart_threshold: int = 16 << 20
    upload_ttl_s: float = 3600.0
    download_ttl_s: float = 300.0
    unreferenced_ttl_s: float = 86_400.0
    sweep_every_s: float = 600.0
    quota_bytes: int = 20 << 30

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaConfig:
        """The limits, sizes and times of ``settings``' ``media_*`` fields."""
        return cls(
            limits=Limits(
                image=settings.media_max_image_bytes,
                video=settings.media_max_video_bytes,
                audio=settings.media_max_audio_bytes,
                file=settings.media_max_file_bytes,
            ),
            part_size=settings.media_part_size,
            multipart_threshold=settings.media_multipart_threshold,
            upload_ttl_s=settings.media_upload_ttl_s,
            download_ttl_s=settings.media_download_ttl_s,
            unreferenced_ttl_s=settings.media_unreferenced_ttl_s,
            sweep_every_s=settings.media_sweep_every_s,
            quota_bytes=settings.media_quota_bytes,
        )


def thumbnail_key(media_id: str) -> str:
    """The blob key of a media item's thumbnail."""
    return f"{media_id}.thumb"


def part_sizes(size: int, part_size: int) -> list[int]:
    """The sizes of the parts of a ``size``-byte upload: ``part_size`` each but the last
    (at least one part)."""
    count = max(1, math.ceil(size / part_size))
    return [part_size] * (count - 1) + [size - part_size * (count - 1)]


class MediaService:
    def __init__(
        self,
        store: BlobStore,
        records: MediaStore,
        config: MediaConfig,
        clock_ms: Callable[[], int],
        is_member: IsMember,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.records = records
        self.config = config
        self.clock_ms = clock_ms
        self.is_member = is_member
        self.random_bytes = random_bytes

    # --- slots -------------------------------------------------------------------------

    def check(self, content_type: str, size: int, e2e: bool) -> None:
        """Refuse a slot for a type we do not take or a size over the kind's cap."""
        cap = self.config.limits.cap(content_type, e2e)
        if cap is None:
            raise self._refused(
                415,
                errors.UNSUPPORTED_MEDIA_TYPE,
                f"an end-to-end upload is ciphertext: content_type {E2E_CONTENT_TYPE}"
                if e2e
                else f"{content_type!r} is not a type we take",
            )
        if size > cap:
            what = "end-to-end uploads" if e2e else f"{kind_of(content_type)}s"
            raise self._refused(
                413, errors.PAYLOAD_TOO_LARGE, f"{what} may be at most {cap} bytes; this is {size}"
            )

    async def create(
        self, owner_id: int, content_type: str, size: int, sha256: str, e2e: bool, base_url: str
    ) -> dict[str, Any]:
        """A new upload slot: its record and where to PUT the bytes."""
        self.check(content_type, size, e2e)
        stored = await self.records.stored_bytes(owner_id)
        if stored + size > self.config.quota_bytes:
            raise self._refused(
                413,
                errors.QUOTA_EXCEEDED,
                f"your uploads would take more than {self.config.quota_bytes} bytes",
            )
        media_id = new_media_id(self.random_bytes(16))
        upload_id = None
        if size > self.config.multipart_threshold:
            upload_id = await self.store.start_multipart(media_id, content_type)
        record = MediaRecord(
            media_id=media_id,
            owner_id=owner_id,
            content_type=content_type,
            size=size,
            sha256=sha256,
            e2e=e2e,
            state=PENDING,
            created_at=self.clock_ms(),
            upload_id=upload_id,
        )
        await self.records.create(record)
        metrics.MEDIA_UPLOADS.labels("created").inc()
        return await self._slot(record, base_url)

    async def _slot(self, record: MediaRecord, base_url: str) -> dict[str, Any]:
        ttl = self.config.upload_ttl_s
        key = record.media_id
        upload: dict[str, Any]
        if record.upload_id is None:
            target = await self.store.upload_url(
                key, record.content_type, record.size, ttl, base_url
            )
            upload = {"method": "PUT", "url": target.url, "headers": target.headers}
        else:
            sizes = part_sizes(record.size, self.config.part_size)
            targets = await self.store.part_urls(key, record.upload_id, sizes, ttl, base_url)
            upload = {
                "method": "multipart",
                "part_size": self.config.part_size,
                "headers": {},
                "parts": [
                    {"part_number": n, "size": size, "url": t.url}
                    for n, (size, t) in enumerate(zip(sizes, targets, strict=True), start=1)
                ],
            }
        return {
            **record.to_wire(),
            "expires_at": self.clock_ms() + int(ttl * 1000),
            "upload": upload,
        }

    async def _own(self, owner_id: int, media_id: str) -> MediaRecord:
        record = await self.records.get(media_id)
        if record is None or record.owner_id != owner_id or record.state == DELETING:
            raise MediaError(404, errors.UNKNOWN_MEDIA, f"no upload {media_id} of yours")
        return record

    async def upload_info(self, owner_id: int, media_id: str, base_url: str) -> dict[str, Any]:
        """The slot again, with fresh URLs and the parts the store holds (to resume)."""
        record = await self._own(owner_id, media_id)
        if record.state != PENDING:
            raise MediaError(404, errors.UNKNOWN_MEDIA, f"upload {media_id} is already complete")
        slot = await self._slot(record, base_url)
        if record.upload_id is not None:
            done = await self.store.done_parts(media_id, record.upload_id)
            slot["done_parts"] = sorted(done)
        return slot

    # --- completion --------------------------------------------------------------------

    async def complete(
        self, owner_id: int, media_id: str, parts: Sequence[tuple[int, str]] | None
    ) -> MediaRecord:
        """Join the parts, check size, first bytes and SHA-256, make the thumbnail: the
        upload is then ready to be sent. Completing a ready upload returns it."""
        record = await self._own(owner_id, media_id)
        if record.state == READY:
            return record
        if record.upload_id is not None:
            await self._join_parts(record, parts)
        size = await self.store.size_of(media_id)
        if size is None or size < record.size:
            raise self._refused(
                409,
                errors.UPLOAD_INCOMPLETE,
                f"the store holds {size or 0} of {record.size} bytes: upload them, then "
                "complete again",
            )
        if size > record.size:
            await self.store.delete([media_id])
            raise self._refused(
                413, errors.PAYLOAD_TOO_LARGE, f"{size} bytes arrived, {record.size} declared"
            )
        if not matches(
            record.content_type, await self.store.head(media_id, SNIFF_BYTES), record.e2e
        ):
            await self._discard(record)
            raise self._refused(
                415,
                errors.CONTENT_TYPE_MISMATCH,
                f"the bytes are not {record.content_type}: the upload is deleted",
            )
        if await self.store.sha256(media_id) != record.sha256:
            await self._discard(record)
            raise self._refused(
                422,
                errors.SHA256_MISMATCH,
                "the bytes' SHA-256 is not the one declared: the upload is deleted",
            )
        ready = await self._with_thumbnail(record)
        await self.records.mark_ready(media_id, ready.width, ready.height, ready.thumbnail)
        metrics.MEDIA_UPLOADS.labels("ready").inc()
        metrics.MEDIA_BYTES.inc(record.size)
        return replace(ready, state=READY, upload_id=None)

    async def _join_parts(
        self, record: MediaRecord, parts: Sequence[tuple[int, str]] | None
    ) -> None:
        """Complete a multipart upload once the store holds every part (S3 would join
        any subset of them, and the upload would be gone)."""
        assert record.upload_id is not None
        media_id = record.media_id
        wanted = range(1, len(part_sizes(record.size, self.config.part_size)) + 1)
        done = await self.store.done_parts(media_id, record.upload_id)
        if not done and await self.store.size_of(media_id) is not None:
            return  # completed before (a retry after a lost answer): checked next
        missing = [n for n in wanted if n not in done]
        if missing:
            raise self._refused(
                409,
                errors.UPLOAD_INCOMPLETE,
                f"parts {missing} are missing: upload them (GET /v1/media/{{id}}/upload), "
                "then complete again",
            )
        given = dict(parts) if parts else done
        if sorted(given) != list(wanted):
            raise self._refused(
                409, errors.UPLOAD_INCOMPLETE, f"complete names parts 1..{len(wanted)}"
            )
        try:
            await self.store.complete_multipart(media_id, record.upload_id, sorted(given.items()))
        except UploadIncomplete as exc:
            raise self._refused(409, errors.UPLOAD_INCOMPLETE, str(exc)) from exc

    def _refused(self, status: int, code: str, message: str) -> MediaError:
        metrics.MEDIA_UPLOADS.labels(code).inc()
        return MediaError(status, code, message)

    async def _with_thumbnail(self, record: MediaRecord) -> MediaRecord:
        if record.e2e or kind_of(record.content_type) != "image":
            return record
        try:
            data = await self.store.read(record.media_id)
            thumb = await asyncio.to_thread(make_thumbnail, data)
        except NotAnImage as exc:
            log.info("no thumbnail", extra={"media_id": record.media_id, "why": str(exc)})
            return record
        await self.store.put(thumbnail_key(record.media_id), thumb.data, THUMBNAIL_TYPE)
        return replace(record, width=thumb.width, height=thumb.height, thumbnail=True)

    async def _discard(self, record: MediaRecord) -> None:
        await self.store.delete([record.media_id, thumbnail_key(record.media_id)])
        await self.records.delete(record.media_id)

    # --- downloads -----------------------------------------------------------------------

    async def describe(
        self, user_id: int, media_id: str, base_url: str, ttl_s: float | None = None
    ) -> dict[str, Any]:
        """The media object with short-lived download URLs (valid ``download_ttl_s``, or
        ``ttl_s`` when that is shorter), for the uploader and the members of a channel it
        was sent to."""
        record = await self.records.get(media_id)
        if record is None or record.state == DELETING:
            raise MediaError(404, errors.UNKNOWN_MEDIA, f"no media {media_id}")
        if record.owner_id != user_id and not await self._in_a_channel(user_id, media_id):
            raise MediaError(
                403, errors.NOT_A_MEMBER, "only members of a channel it was sent to may read it"
            )
        out = record.to_wire()
        if record.state != READY:
            return out  # the uploader's own, not complete: no URL yet
        ttl = min(ttl_s or self.config.download_ttl_s, self.config.download_ttl_s)
        out["url"] = await self.store.download_url(media_id, record.content_type, ttl, base_url)
        out["thumbnail_url"] = (
            await self.store.download_url(thumbnail_key(media_id), THUMBNAIL_TYPE, ttl, base_url)
            if record.thumbnail
            else None
        )
        out["url_expires_at"] = self.clock_ms() + int(ttl * 1000)
        return out

    async def _in_a_channel(self, user_id: int, media_id: str) -> bool:
        for channel_id in await self.records.channels_of(media_id):
            if await self.is_member(user_id, channel_id):
                return True
        return False

    # --- the sweeper ---------------------------------------------------------------------

    async def sweep(self) -> int:
        """Delete the uploads no message referred to within ``unreferenced_ttl_s`` of
        their slot (completed or not); how many were deleted."""
        cutoff = self.clock_ms() - int(self.config.unreferenced_ttl_s * 1000)
        deleted = 0
        for record in await self.records.unreferenced(cutoff, SWEEP_BATCH):
            if record.state != DELETING and not await self.records.claim_for_deletion(
                record.media_id, cutoff
            ):
                continue  # sent meanwhile, or another sweeper has it
            if record.upload_id is not None:
                await self.store.abort_multipart(record.media_id, record.upload_id)
            await self.store.delete([record.media_id, thumbnail_key(record.media_id)])
            await self.records.delete(record.media_id)
            deleted += 1
        if deleted:
            metrics.MEDIA_SWEPT.inc(deleted)
            log.info("swept unreferenced uploads", extra={"deleted": deleted})
        return deleted

    async def run_sweeper(self) -> None:
        """Run :meth:`sweep` every ``sweep_every_s`` (again at once while a sweep filled its
        batch), until cancelled; a failed sweep is logged."""
        while True:
            try:
                while await self.sweep() >= SWEEP_BATCH:
                    pass
            except Exception:
                log.exception("media sweep failed; trying again later")
            await asyncio.sleep(self.config.sweep_every_s)

    async def close(self) -> None:
        """Close the blob store."""
        await self.store.close()
