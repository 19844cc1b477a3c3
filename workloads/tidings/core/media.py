"""Media attachments without I/O: the kinds and their caps, what the first bytes of a
blob say it is, and the ``attachments`` of a ``send`` checked against the uploads
(docs/media.md, docs/protocol.md "Media").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tidings.core import errors
from tidings.core.errors import ProtocolError

__all__ = [
    "E2E_CONTENT_TYPE",
    "KINDS",
    "MAX_ATTACHMENTS",
    "Attachment",
    "Limits",
    "MediaRecord",
    "check_attachments",
    "kind_of",
    "new_media_id",
    "parse_attachments",
    "sniff",
]

MAX_ATTACHMENTS = 10
MAX_NAME_CHARS = 255
# An end-to-end upload is ciphertext: its real type travels inside the envelopes.
E2E_CONTENT_TYPE = "application/octet-stream"
# Encryption adds an IV, padding and a MAC: room for them above the plaintext's cap.
E2E_OVERHEAD = 64 * 1024

KINDS: Mapping[str, str] = {
    "image/jpeg": "image",
    "image/png": "image",
    "image/gif": "image",
    "image/webp": "image",
    "video/mp4": "video",
    "video/quicktime": "video",
    "video/webm": "video",
    "audio/ogg": "audio",
    "audio/mp4": "audio",
    "audio/mpeg": "audio",
    "application/pdf": "file",
}

_MEDIA_ID = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def new_media_id(random_bytes: bytes) -> str:
    """A media id from 16 random bytes: 32 lowercase hex characters."""
    if len(random_bytes) != 16:
        raise ValueError("a media id takes 16 random bytes")
    return random_bytes.hex()


def is_media_id(value: str) -> bool:
    """Whether ``value`` has the form of a media id (32 lowercase hex characters)."""
    return bool(_MEDIA_ID.match(value))


def is_sha256(value: str) -> bool:
    """Whether ``value`` has the form of a SHA-256 digest (64 lowercase hex characters)."""
    return bool(_SHA256.match(value))


@dataclass(frozen=True, slots=True)
class Limits:
    """The size cap of each kind, in bytes."""

    image: int = 16 << 20
    video: int = 100 << 20
    audio: int = 16 << 20
    file: int = 100 << 20

    def cap(self, content_type: str, e2e: bool) -> int | None:
        """The most bytes an upload of this type may have; None: the type is refused."""
        if e2e:
            if content_type != E2E_CONTENT_TYPE:
                return None
            return max(self.image, self.video, self.audio, self.file) + E2E_OVERHEAD
        kind = KINDS.get(content_type)
        return None if kind is None else int(getattr(self, kind))


def kind_of(content_type: str) -> str | None:
    """The kind (image, video, audio or file) of an accepted content type; None if refused."""
    return KINDS.get(content_type)


def sniff(head: bytes) -> str | None:
    """The content type the first bytes (64 are enough) show, from the types we accept;
    None for anything else (HTML, SVG, executables, Matroska that is not WebM...)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":  # ISO base media: the major brand names the kind
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
            return None  # still images we do not take (no thumbnail, few viewers)
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM names its DocType early
        return "video/webm" if b"webm" in head[:64] else None
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    # An MPEG audio frame: 11 sync bits, then a layer that is not 00 (ADTS AAC's).
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "audio/mpeg"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def matches(declared: str, head: bytes, e2e: bool) -> bool:
    """Whether the first bytes are what the upload said it would be (ciphertext: any)."""
    if e2e:
        return True
    found = sniff(head)
    if found == declared:
        return True
    # An MP4 container with only sound is often declared audio/mp4, and the reverse.
    return {found, declared} == {"video/mp4", "audio/mp4"}


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """An upload as the media table holds it."""

    media_id: str
    owner_id: int
    content_type: str
    size: int
    sha256: str
    e2e: bool
    state: str  # "pending" | "ready"
    created_at: int
    width: int | None = None
    height: int | None = None
    thumbnail: bool = False
    upload_id: str | None = None  # the store's multipart upload, while pending

    def to_wire(self) -> dict[str, Any]:
        """The upload as the API shows it (width and height only when both are known)."""
        out: dict[str, Any] = {
            "media_id": self.media_id,
            "state": self.state,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "e2e": self.e2e,
            "thumbnail": self.thumbnail,
        }
        if self.width is not None and self.height is not None:
            out["width"], out["height"] = self.width, self.height
        return out


@dataclass(frozen=True, slots=True)
class Attachment:
    """One entry of a send's ``attachments``, as the sender gave it."""

    media_id: str
    content_type: str
    size: int
    sha256: str
    name: str | None = None
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None

    def stored(self, record: MediaRecord) -> dict[str, Any]:
        """What the message keeps and every member sees: as sent, with what the server
        measured (a thumbnail, an image's size) added."""
        out: dict[str, Any] = {
            "media_id": self.media_id,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
        }
        if self.name is not None:
            out["name"] = self.name
        width = record.width if record.width is not None else self.width
        height = record.height if record.height is not None else self.height
        if width is not None and height is not None:
            out["width"], out["height"] = width, height
        if self.duration_ms is not None:
            out["duration_ms"] = self.duration_ms
        out["thumbnail"] = record.thumbnail
        return out


def _invalid(message: str, ref: str | None) -> ProtocolError:
    return ProtocolError(errors.INVALID_FRAME, message, ref=ref)


def _dimension(item: Mapping[str, Any], key: str, ref: str | None, top: int) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= top:
        raise _invalid(f"attachment {key} must be a whole number within 1..{top}", ref)
    return value


_OPTIONAL = ("name", "width", "height", "duration_ms")
_REQUIRED = ("media_id", "content_type", "size", "sha256")


def parse_attachments(raw: Any, ref: str | None) -> tuple[Attachment, ...]:
    """A send frame's ``attachments``, checked for shape only (the uploads are checked
    by :func:`check_attachments`)."""
    if not isinstance(raw, list) or not raw:
        raise _invalid("attachments must be a non-empty list", ref)
    if len(raw) > MAX_ATTACHMENTS:
        raise _invalid(f"at most {MAX_ATTACHMENTS} attachments", ref)
    out: list[Attachment] = []
    for item in raw:
        if not isinstance(item, dict):
            raise _invalid("each attachment must be an object", ref)
        unknown = set(item) - set(_REQUIRED) - set(_OPTIONAL)
        if unknown:
            raise _invalid(f"unknown attachment fields: {', '.join(sorted(unknown))}", ref)
        media_id, content_type = item.get("media_id"), item.get("content_type")
        size, digest = item.get("size"), item.get("sha256")
        if not isinstance(media_id, str) or not is_media_id(media_id):
            raise _invalid("attachment media_id must be 32 lowercase hex characters", ref)
        if not isinstance(content_type, str) or not 1 <= len(content_type) <= 100:
            raise _invalid("attachment content_type must be a content type", ref)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise _invalid("attachment size must be a positive whole number", ref)
        if not isinstance(digest, str) or not is_sha256(digest):
            raise _invalid("attachment sha256 must be 64 lowercase hex characters", ref)
        name = item.get("name")
        if name is not None and (
            not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or "\x00" in name
        ):
            raise _invalid(f"attachment name must be 1-{MAX_NAME_CHARS} characters", ref)
        if name is not None and not name.isascii():
            try:
                name.encode()
            except UnicodeEncodeError:
                raise _invalid("attachment name is not valid Unicode", ref) from None
        out.append(
            Attachment(
                media_id,
                content_type,
                size,
                digest,
                name=name,
                width=_dimension(item, "width", ref, 100_000),
                height=_dimension(item, "height", ref, 100_000),
                duration_ms=_dimension(item, "duration_ms", ref, 86_400_000),
            )
        )
    if len({a.media_id for a in out}) != len(out):
        raise _invalid("an attachment is listed twice", ref)
    return tuple(out)


def check_attachments(
    attachments: tuple[Attachment, ...],
    records: Mapping[str, MediaRecord],
    sender_id: int,
    e2e: bool,
    ref: str | None,
) -> tuple[dict[str, Any], ...]:
    """The attachments to store, once each names a ready upload of the sender's that it
    describes truly, in the channel's mode; else the contract's error (nothing stored)."""
    stored: list[dict[str, Any]] = []
    for attachment in attachments:
        record = records.get(attachment.media_id)
        if record is None or record.owner_id != sender_id:
            raise ProtocolError(
                errors.UNKNOWN_MEDIA, f"no upload {attachment.media_id} of yours", ref=ref
            )
        if record.state != "ready":
            raise ProtocolError(
                errors.MEDIA_NOT_READY,
                f"upload {attachment.media_id} is not complete (POST /v1/media/{{id}}/complete)",
                ref=ref,
            )
        differs = [
            field
            for field in ("content_type", "size", "sha256")
            if getattr(attachment, field) != getattr(record, field)
        ]
        if differs:
            raise ProtocolError(
                errors.MEDIA_MISMATCH,
                f"attachment {attachment.media_id}: {', '.join(differs)} differ from the upload",
                ref=ref,
            )
        if record.e2e != e2e:
            raise ProtocolError(
                errors.MEDIA_MISMATCH,
                "this channel is end-to-end: attach uploads made with e2e=true"
                if e2e
                else "this channel is not end-to-end: attach uploads made without e2e",
                ref=ref,
            )
        if e2e and any(getattr(attachment, field) is not None for field in _OPTIONAL):
            raise _invalid(
                "in an end-to-end channel an attachment carries only media_id, "
                "content_type, size and sha256 (the rest goes inside the envelopes)",
                ref,
            )
        stored.append(attachment.stored(record))
    return tuple(stored)


_KIND_LABELS = {
    "image": ("📷", "Photo", "photos"),
    "video": ("🎥", "Video", "videos"),
    "audio": ("🎤", "Voice note", "voice notes"),
    "file": ("📄", "File", "files"),
}


def summary(attachments: tuple[dict[str, Any], ...]) -> str:
    """A line saying what a message carries, for previews: "📷 Photo", "📷 3 photos",
    "📎 2 attachments" (mixed kinds), "" for none."""
    if not attachments:
        return ""
    kinds = {kind_of(str(a.get("content_type"))) or "file" for a in attachments}
    if len(kinds) > 1:
        return f"📎 {len(attachments)} attachments"
    icon, one, many = _KIND_LABELS[kinds.pop()]
    return f"{icon} {one}" if len(attachments) == 1 else f"{icon} {len(attachments)} {many}"
