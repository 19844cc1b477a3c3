"""The media service a process runs, from its settings (None: media is off)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.core.channels import parse_channel_id
from tidings.media.blobs import BlobStore
from tidings.media.local import LocalBlobStore
from tidings.media.service import IsMember, MediaConfig, MediaService
from tidings.settings import Settings, SettingsError
from tidings.storage.base import Directory
from tidings.storage.sql.media import MediaStore

log = logging.getLogger(__name__)


def store_kind(settings: Settings, embedded: bool) -> str:
    """ "local", "s3" or "none", with "auto" resolved (docs/media.md)."""
    if settings.media_store != "auto":
        return settings.media_store
    if settings.media_s3_bucket:
        return "s3"
    return "local" if embedded else "none"


def local_secret(settings: Settings, jwt_secret: str) -> bytes:
    """The key of the local store's URLs: its own, or one derived from the JWT key."""
    if settings.media_url_secret is not None:
        return settings.media_url_secret.get_secret_value().encode()
    return hmac.new(jwt_secret.encode(), b"tidings media urls", hashlib.sha256).digest()


def membership(directory: Directory) -> IsMember:
    """The service's membership check: a user is in a DM whose id names them, in a group
    on the directory's member list, and never in a channel id that does not parse."""

    async def is_member(user_id: int, channel_id: str) -> bool:
        ref = parse_channel_id(channel_id)
        if ref is None:
            return False
        if ref.kind == "dm":
            return user_id in ref.dm_users
        channel = await directory.get_channel(channel_id)
        return channel is not None and user_id in channel.member_ids

    return is_member


async def open_media(
    settings: Settings,
    engine: AsyncEngine,
    directory: Directory,
    clock_ms: Callable[[], int],
    *,
    embedded: bool,
    jwt_secret: str,
) -> MediaService | None:
    """The media service over the blob store :func:`store_kind` picks, or None when media is
    off.

    Raises :class:`SettingsError` when the store is S3 and no bucket is set."""
    kind = store_kind(settings, embedded)
    store: BlobStore
    if kind == "none":
        log.info("media is off (no blob store: docs/media.md)")
        return None
    if kind == "local":
        root = settings.media_dir or Path(settings.data_dir) / "media"
        store = LocalBlobStore(root, local_secret(settings, jwt_secret))
        log.info("media blobs under %s", root)
    else:
        if not settings.media_s3_bucket:
            raise SettingsError("TIDINGS_MEDIA_STORE=s3 needs TIDINGS_MEDIA_S3_BUCKET")
        from tidings.media.s3 import S3BlobStore  # aiobotocore: only where it is used

        store = await S3BlobStore.open(settings)
        log.info(
            "media blobs in S3",
            extra={"endpoint": settings.media_s3_endpoint, "bucket": settings.media_s3_bucket},
        )
    return MediaService(
        store,
        MediaStore(engine),
        MediaConfig.from_settings(settings),
        clock_ms,
        membership(directory),
    )
