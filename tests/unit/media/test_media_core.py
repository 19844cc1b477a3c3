"""The pure parts of media (core/media.py): what the first bytes say, the caps, and a
send's attachments checked against the uploads."""

from __future__ import annotations

import pytest

from tidings.core.errors import ProtocolError
from tidings.core.media import (
    E2E_CONTENT_TYPE,
    Limits,
    MediaRecord,
    check_attachments,
    matches,
    parse_attachments,
    sniff,
)

SHA = "ab" * 32
MEDIA_ID = "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video/quicktime"),
        (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00", "audio/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"ID3\x04\x00", "audio/mpeg"),
        (b"%PDF-1.7\n", "application/pdf"),
        # Refused: HTML, SVG, executables, HEIC stills, Matroska that is not WebM.
        (b"<!DOCTYPE html><script>", None),
        (b"<svg xmlns=", None),
        (b"MZ\x90\x00", None),
        (b"\x7fELF\x02\x01", None),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", None),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", None),
        (b"", None),
    ],
)
def test_the_first_bytes_name_the_type(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected


def test_declared_types_must_match_their_bytes_unless_ciphertext() -> None:
    png = b"\x89PNG\r\n\x1a\n"
    assert matches("image/png", png, e2e=False)
    assert not matches("image/jpeg", png, e2e=False)
    assert matches(E2E_CONTENT_TYPE, b"\x00random ciphertext", e2e=True)
    # An MP4 with sound only is often declared audio/mp4: the container is the same.
    assert matches("audio/mp4", b"\x00\x00\x00\x18ftypmp42", e2e=False)


def test_caps_per_kind_and_for_ciphertext() -> None:
    limits = Limits(image=10, video=100, audio=20, file=50)
    assert limits.cap("image/webp", e2e=False) == 10
    assert limits.cap("video/webm", e2e=False) == 100
    assert limits.cap("audio/ogg", e2e=False) == 20
    assert limits.cap("application/pdf", e2e=False) == 50
    assert limits.cap("text/html", e2e=False) is None
    assert limits.cap("image/png", e2e=True) is None  # ciphertext is octet-stream
    assert limits.cap(E2E_CONTENT_TYPE, e2e=True) == 100 + 64 * 1024
    assert limits.cap(E2E_CONTENT_TYPE, e2e=False) is None


def _item(**changes: object) -> dict[str, object]:
    item: dict[str, object] = {
        "media_id": MEDIA_ID,
        "content_type": "image/png",
        "size": 1000,
        "sha256": SHA,
    }
    item.update(changes)
    return item


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "x",
        [_item()] * 11,
        [_item(), _item()],  # the same upload twice
        [_item(media_id="../../etc/passwd")],
        [_item(media_id=MEDIA_ID.upper())],
        [_item(size=0)],
        [_item(size=True)],
        [_item(sha256="zz" * 32)],
        [_item(name="")],
        [_item(name="a\x00b")],
        [_item(name="\ud800")],
        [_item(name="n" * 256)],
        [_item(width=0)],
        [_item(height=-1)],
        [_item(duration_ms=1.5)],
        [_item(url="https://evil.example/x.png")],  # unknown fields are refused
    ],
)
def test_malformed_attachments_are_invalid_frames(raw: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_attachments(raw, "ref-1")
    assert caught.value.code == "invalid_frame" and caught.value.ref == "ref-1"


def _record(**changes: object) -> MediaRecord:
    fields: dict[str, object] = {
        "media_id": MEDIA_ID,
        "owner_id": 7,
        "content_type": "image/png",
        "size": 1000,
        "sha256": SHA,
        "e2e": False,
        "state": "ready",
        "created_at": 0,
        "width": 640,
        "height": 480,
        "thumbnail": True,
    }
    fields.update(changes)
    return MediaRecord(**fields)  # type: ignore[arg-type]


def _check(raw: list[dict[str, object]], record: MediaRecord, *, e2e: bool = False) -> object:
    attachments = parse_attachments(raw, "r")
    return check_attachments(attachments, {record.media_id: record}, 7, e2e, "r")


def test_a_true_attachment_is_stored_with_what_the_server_measured() -> None:
    (stored,) = _check([_item(name="cat.png", width=1, height=1)], _record())  # type: ignore[misc]
    assert stored == {
        "media_id": MEDIA_ID,
        "content_type": "image/png",
        "size": 1000,
        "sha256": SHA,
        "name": "cat.png",
        "width": 640,  # measured beats claimed
        "height": 480,
        "thumbnail": True,
    }


@pytest.mark.parametrize(
    ("raw", "record", "e2e", "code"),
    [
        ([_item()], _record(owner_id=8), False, "unknown_media"),  # someone else's
        ([_item()], _record(state="pending"), False, "media_not_ready"),
        ([_item(size=999)], _record(), False, "media_mismatch"),
        ([_item(sha256="cd" * 32)], _record(), False, "media_mismatch"),
        ([_item(content_type="image/gif")], _record(), False, "media_mismatch"),
        ([_item()], _record(), True, "media_mismatch"),  # plain upload, e2e channel
        (
            [_item(content_type=E2E_CONTENT_TYPE)],
            _record(content_type=E2E_CONTENT_TYPE, e2e=True),
            False,
            "media_mismatch",
        ),
        (  # in an end-to-end channel the name stays inside the envelopes
            [_item(content_type=E2E_CONTENT_TYPE, name="secret.pdf")],
            _record(content_type=E2E_CONTENT_TYPE, e2e=True),
            True,
            "invalid_frame",
        ),
    ],
)
def test_attachments_that_do_not_describe_a_ready_upload_of_the_senders_are_refused(
    raw: list[dict[str, object]], record: MediaRecord, e2e: bool, code: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        _check(raw, record, e2e=e2e)
    assert caught.value.code == code


def test_an_unknown_upload_is_refused() -> None:
    attachments = parse_attachments([_item()], "r")
    with pytest.raises(ProtocolError) as caught:
        check_attachments(attachments, {}, 7, False, "r")
    assert caught.value.code == "unknown_media"
