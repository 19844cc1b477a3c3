"""Media helpers of the behaviour tests: test files, uploads straight to the blob store
(as a client does: presigned URLs, no bearer token), downloads."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import httpx
from PIL import Image

from ._harness import Account

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def png_of_about(size: int, side: int | None = None) -> bytes:
    """A real PNG of about ``size`` bytes (noise does not compress)."""
    side = side or int((size / 3) ** 0.5) + 8
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def mp4_of(size: int) -> bytes:
    """Bytes an MP4 container starts with, then noise: ``size`` bytes."""
    return MP4_HEAD + os.urandom(size - len(MP4_HEAD))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_client() -> httpx.AsyncClient:
    """For presigned URLs: no base URL, no Authorization, no proxies."""
    return httpx.AsyncClient(timeout=60.0, trust_env=False)


async def new_slot(
    http: httpx.AsyncClient,
    who: Account,
    data: bytes,
    content_type: str,
    *,
    declared_sha256: str | None = None,
    e2e: bool = False,
) -> dict[str, Any]:
    response = await http.post(
        "/v1/media",
        json={
            "content_type": content_type,
            "size": len(data),
            "sha256": declared_sha256 or sha256(data),
            "e2e": e2e,
        },
        headers=who.auth,
    )
    assert response.status_code == 201, response.text
    slot: dict[str, Any] = response.json()
    return slot


async def put_bytes(
    slot: dict[str, Any], data: bytes, *, skip_parts: frozenset[int] = frozenset()
) -> list[dict[str, Any]]:
    """PUT the bytes as the slot says; the multipart parts' ETags (for complete)."""
    upload = slot["upload"]
    async with blob_client() as blobs:
        if upload["method"] == "PUT":
            answer = await blobs.put(upload["url"], content=data, headers=upload["headers"])
            assert answer.status_code == 200, answer.text
            return []
        parts = []
        offset = 0
        for part in upload["parts"]:
            chunk = data[offset : offset + part["size"]]
            offset += part["size"]
            if part["part_number"] in skip_parts:
                continue
            answer = await blobs.put(part["url"], content=chunk, headers=upload["headers"])
            assert answer.status_code == 200, answer.text
            parts.append({"part_number": part["part_number"], "etag": answer.headers["etag"]})
        return parts


async def complete(
    http: httpx.AsyncClient, who: Account, media_id: str, parts: list[dict[str, Any]]
) -> httpx.Response:
    body = {"parts": parts} if parts else {}
    return await http.post(f"/v1/media/{media_id}/complete", json=body, headers=who.auth)


async def upload(
    http: httpx.AsyncClient, who: Account, data: bytes, content_type: str, *, e2e: bool = False
) -> dict[str, Any]:
    """Slot, PUT, complete: the ready media object."""
    slot = await new_slot(http, who, data, content_type, e2e=e2e)
    parts = await put_bytes(slot, data)
    done = await complete(http, who, slot["media_id"], parts)
    assert done.status_code == 200, done.text
    media: dict[str, Any] = done.json()
    assert media["state"] == "ready"
    return media


def attachment(media: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    out = {k: media[k] for k in ("media_id", "content_type", "size", "sha256")}
    if name is not None:
        out["name"] = name
    return out


async def download(url: str) -> httpx.Response:
    async with blob_client() as blobs:
        return await blobs.get(url)
