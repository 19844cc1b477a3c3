"""The media service on a real SQLite directory and the local blob store, with the clock
injected: the orphan sweeper deletes what no message named in time (and nothing else),
a send racing the sweeper either wins or is refused, and the local store's signed URLs
refuse what was not signed."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from PIL import Image

from tidings.core.errors import PAYLOAD_TOO_LARGE
from tidings.media.local import ROUTE, LocalBlobStore
from tidings.media.service import MediaConfig, MediaError, MediaService
from tidings.storage.sql.directory import SqlDirectory
from tidings.storage.sql.media import MediaStore

HOUR_MS = 3_600_000
BASE = "http://tidings.test/"


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms

    def seconds(self) -> float:
        return self.ms / 1000


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


async def _no_members(user_id: int, channel_id: str) -> bool:
    return False


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[MediaService, LocalBlobStore, Clock]]:
    directory = await SqlDirectory.open(f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}")
    clock = Clock()
    store = LocalBlobStore(tmp_path / "media", b"k" * 32, clock=clock.seconds)
    service = MediaService(
        store,
        MediaStore(directory.engine),
        MediaConfig(unreferenced_ttl_s=24 * 3600),
        clock,
        _no_members,
    )
    try:
        yield service, store, clock
    finally:
        await directory.close()


def signed(url: str) -> tuple[str, dict[str, str]]:
    """A signed URL's key and query, as the route gets them."""
    parts = urlsplit(url)
    return parts.path.removeprefix(ROUTE), dict(parse_qsl(parts.query))


async def put(store: LocalBlobStore, slot: dict[str, Any], data: bytes) -> str:
    key, query = signed(slot["upload"]["url"])
    fields = store.check(key, query, "put", store.clock())
    return await store.receive(
        key, fields, slot["upload"]["headers"]["Content-Type"], str(len(data)), _chunks(data)
    )


async def ready_upload(service: MediaService, store: LocalBlobStore, owner: int) -> str:
    data = png()
    slot = await service.create(
        owner, "image/png", len(data), hashlib.sha256(data).hexdigest(), False, BASE
    )
    await put(store, slot, data)
    record = await service.complete(owner, slot["media_id"], None)
    assert record.state == "ready" and record.thumbnail
    return str(slot["media_id"])


async def test_the_sweeper_deletes_only_uploads_no_message_named_in_time(
    parts: tuple[MediaService, LocalBlobStore, Clock],
) -> None:
    service, store, clock = parts
    sent = await ready_upload(service, store, owner=1)
    orphan = await ready_upload(service, store, owner=1)
    never_finished = (
        await service.create(1, "image/png", 10, "0" * 64, False, BASE)  # no bytes came
    )["media_id"]
    assert await service.records.reference([sent], "dm:1:2", clock())

    # Before the time is up nothing goes, whatever its state.
    clock.ms += 24 * HOUR_MS - 1
    assert await service.sweep() == 0
    clock.ms += 2
    assert await service.sweep() == 2
    for gone in (orphan, never_finished):
        assert await service.records.get(gone) is None
        assert store.path_of(gone) is None and store.path_of(f"{gone}.thumb") is None
    # The one a message named stays, with its preview, for good.
    assert (await service.records.get(sent)) is not None
    assert store.path_of(sent) is not None and store.path_of(f"{sent}.thumb") is not None
    clock.ms += 365 * 24 * HOUR_MS
    assert await service.sweep() == 0


async def test_a_send_after_the_sweeper_claimed_an_upload_is_refused(
    parts: tuple[MediaService, LocalBlobStore, Clock],
) -> None:
    service, store, clock = parts
    late = await ready_upload(service, store, owner=1)
    clock.ms += 25 * HOUR_MS
    cutoff = clock() - 24 * HOUR_MS
    assert await service.records.claim_for_deletion(late, cutoff)
    # The sweeper has it: a send naming it now changes nothing and is told so.
    assert not await service.records.reference([late], "dm:1:2", clock())
    assert (await service.records.get(late)).state == "deleting"  # type: ignore[union-attr]
    # A sweep that died after its claim is finished by the next one.
    assert await service.sweep() == 1
    assert await service.records.get(late) is None


async def test_the_local_store_refuses_what_was_not_signed(
    parts: tuple[MediaService, LocalBlobStore, Clock],
) -> None:
    service, store, clock = parts
    data = png()
    slot = await service.create(
        1, "image/png", len(data), hashlib.sha256(data).hexdigest(), False, BASE
    )
    key, query = signed(slot["upload"]["url"])

    def refused(q: dict[str, str], op: str = "put") -> str:
        with pytest.raises(MediaError) as caught:
            store.check(key, q, op, store.clock())
        return caught.value.code

    assert refused({**query, "size": str(len(data) + 1)}) == "bad_signature"
    assert refused({**query, "ct": "text/html"}) == "bad_signature"
    assert refused(query, op="get") == "bad_signature"  # an upload URL is no download URL
    clock.ms += 3601 * 1000
    assert refused(query) == "url_expired"
    clock.ms -= 3601 * 1000
    fields = store.check(key, query, "put", store.clock())
    with pytest.raises(MediaError) as too_long:
        await store.receive(key, fields, "image/png", str(len(data)), _chunks(data + b"xx"))
    assert too_long.value.status == 413 and too_long.value.code == PAYLOAD_TOO_LARGE
    with pytest.raises(MediaError) as short:
        await store.receive(key, fields, "image/png", str(len(data)), _chunks(data[:-5]))
    assert short.value.status == 400
    assert store.path_of(key) is None  # nothing half-written is left as the blob
    assert not list(store.uploads.glob("*.tmp"))


async def test_quota_counts_what_the_user_stores(
    parts: tuple[MediaService, LocalBlobStore, Clock], tmp_path: Path
) -> None:
    service, _, _ = parts
    small = MediaService(
        service.store,
        service.records,
        MediaConfig(quota_bytes=1000),
        service.clock_ms,
        _no_members,
    )
    await small.create(5, "image/png", 600, "0" * 64, False, BASE)
    with pytest.raises(MediaError) as caught:
        await small.create(5, "image/png", 600, "0" * 64, False, BASE)
    assert (caught.value.status, caught.value.code) == (413, "quota_exceeded")
    await small.create(6, "image/png", 600, "0" * 64, False, BASE)  # another user's own
