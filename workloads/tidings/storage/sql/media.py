"""Media uploads on the directory's engine (its schema version 8): one row per upload
slot, and the channels each was sent to (docs/media.md).

A row is ``pending`` until its upload is completed and checked, then ``ready``; a send
makes it referenced (``referenced_at``) and readable to the channel's members. The
sweeper claims an unreferenced row by moving it to ``deleting`` — a send can then no
longer reference it — deletes its blobs, then the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.core.media import MediaRecord
from tidings.storage.sql.tables import media, media_refs

PENDING, READY, DELETING = "pending", "ready", "deleting"


class _NotReady(Exception):
    """Rolls a reference back: one of the uploads is not ready."""


def _record(row: Any) -> MediaRecord:
    return MediaRecord(
        media_id=row.media_id,
        owner_id=int(row.owner_id),
        content_type=row.content_type,
        size=int(row.size),
        sha256=row.sha256,
        e2e=bool(row.e2e),
        state=row.state,
        created_at=int(row.created_at),
        width=row.width,
        height=row.height,
        thumbnail=bool(row.thumbnail),
        upload_id=row.upload_id,
    )


class MediaStore:
    """The media rows (``media``, ``media_refs``) on the directory's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, record: MediaRecord) -> None:
        """Record a new upload slot (``pending``)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(media).values(
                    media_id=record.media_id,
                    owner_id=record.owner_id,
                    content_type=record.content_type,
                    size=record.size,
                    sha256=record.sha256,
                    e2e=record.e2e,
                    state=PENDING,
                    created_at=record.created_at,
                    upload_id=record.upload_id,
                    thumbnail=False,
                )
            )

    async def get(self, media_id: str) -> MediaRecord | None:
        """One upload's record, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(media).where(media.c.media_id == media_id))).first()
        return _record(row) if row is not None else None

    async def get_many(self, media_ids: Sequence[str]) -> dict[str, MediaRecord]:
        """The records of these uploads that exist, by id."""
        if not media_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(media).where(media.c.media_id.in_(list(media_ids))))
            return {row.media_id: _record(row) for row in rows}

    async def mark_ready(
        self, media_id: str, width: int | None, height: int | None, thumbnail: bool
    ) -> None:
        """A completed and checked pending upload becomes ``ready``, with the image's size
        and whether it has a thumbnail."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(media)
                .where(media.c.media_id == media_id, media.c.state == PENDING)
                .values(
                    state=READY, width=width, height=height, thumbnail=thumbnail, upload_id=None
                )
            )

    async def reference(self, media_ids: Sequence[str], channel_id: str, now: int) -> bool:
        """Mark ready uploads as sent to ``channel_id``; False (nothing changed) when one
        of them is not ready any more (claimed by the sweeper meanwhile)."""
        ids = list(dict.fromkeys(media_ids))
        for _ in range(3):
            try:
                async with self.engine.begin() as conn:
                    moved = await conn.execute(
                        update(media)
                        .where(media.c.media_id.in_(ids), media.c.state == READY)
                        .values(referenced_at=func.coalesce(media.c.referenced_at, now))
                    )
                    if moved.rowcount != len(ids):
                        raise _NotReady
                    have = set(
                        (
                            await conn.execute(
                                select(media_refs.c.media_id).where(
                                    media_refs.c.media_id.in_(ids),
                                    media_refs.c.channel_id == channel_id,
                                )
                            )
                        ).scalars()
                    )
                    new = [{"media_id": m, "channel_id": channel_id} for m in ids if m not in have]
                    if new:
                        await conn.execute(insert(media_refs), new)
                return True
            except _NotReady:
                return False
            except IntegrityError:  # the same reference made at once elsewhere: again
                continue
        return True  # three races in a row: each was the same reference, made elsewhere

    async def unreference(self, media_ids: Sequence[str], channel_id: str) -> None:
        """The channel's members may no longer fetch these (their message was deleted for
        everyone); the uploader still may, and the sweeper leaves them to their owner."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(media_refs).where(
                    media_refs.c.media_id.in_(list(media_ids)),
                    media_refs.c.channel_id == channel_id,
                )
            )

    async def channels_of(self, media_id: str) -> list[str]:
        """The channels this upload was sent to."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(media_refs.c.channel_id).where(media_refs.c.media_id == media_id)
            )
            return [str(c) for c in rows.scalars()]

    async def stored_bytes(self, owner_id: int) -> int:
        """The bytes of all this user's uploads, whatever their state."""
        async with self.engine.connect() as conn:
            total = (
                await conn.execute(
                    select(func.coalesce(func.sum(media.c.size), 0)).where(
                        media.c.owner_id == owner_id
                    )
                )
            ).scalar_one()
        return int(total)

    async def unreferenced(self, created_before: int, limit: int) -> list[MediaRecord]:
        """Uploads no send named that are older than ``created_before``, and those a sweep
        claimed but did not finish."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(media)
                .where(
                    or_(
                        and_(media.c.referenced_at.is_(None), media.c.created_at < created_before),
                        media.c.state == DELETING,
                    )
                )
                .order_by(media.c.created_at)
                .limit(limit)
            )
            return [_record(row) for row in rows]

    async def claim_for_deletion(self, media_id: str, created_before: int) -> bool:
        """Move an unreferenced upload to ``deleting`` (no send can name it after this);
        False when a send named it first or another sweeper has it."""
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                update(media)
                .where(
                    media.c.media_id == media_id,
                    media.c.referenced_at.is_(None),
                    media.c.created_at < created_before,
                    media.c.state != DELETING,
                )
                .values(state=DELETING)
            )
        return bool(moved.rowcount)

    async def delete(self, media_id: str) -> None:
        """Delete an upload's row and its channel references (the sweeper, after the blobs)."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(media_refs).where(media_refs.c.media_id == media_id))
            await conn.execute(delete(media).where(media.c.media_id == media_id))
