"""The bundled client (`tidings.client`) sends and fetches files (issue #18, docs/protocol.md
"Media"): a photo with a caption reaches the other side, which downloads the very bytes
and the thumbnail; a multipart upload (20 MB) round-trips, and one broken off resumes
with the parts the store holds; the contract's refusals raise; the CLI's send-file and
fetch-file (run as `tidings client …` subprocesses). Without a server: retries of a
failed part, fresh URLs after a 403, and a download that does not match its digest."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tidings.client import (
    ApiClient,
    Attachment,
    ChatConnection,
    Msg,
    TidingsApiError,
    TidingsChatError,
    TidingsProtocolError,
    add_chat_commands,
    guess_content_type,
)
from tidings.client._cli import run_login, run_signup

from ._harness import PASSWORD, Deployment, unique_name

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
MIB = 1 << 20
WAIT_S = 20.0

Opener = Callable[[], Coroutine[Any, Any, ApiClient]]


@pytest.fixture
async def person(server: Deployment) -> AsyncIterator[Opener]:
    """person() signs a new user up and logs a device in."""
    opened: list[ApiClient] = []

    async def open_person() -> ApiClient:
        api = ApiClient(server.api_urls[len(opened) % len(server.api_urls)])
        opened.append(api)
        user = await api.signup(unique_name("med"), PASSWORD)
        await api.login(user.username, PASSWORD)
        return api

    yield open_person
    for api in opened:
        await api.aclose()


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, format="PNG")
    return out.getvalue()


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def read(path: Path) -> bytes:
    return path.read_bytes()


def uid(api: ApiClient) -> str:
    assert api.user_id is not None
    return api.user_id


async def received(chat: ChatConnection, message_id: str) -> Msg:
    async with asyncio.timeout(WAIT_S):
        async for event in chat.events():
            if isinstance(event, Msg) and event.message_id == message_id:
                return event
    raise AssertionError(f"no msg {message_id}")


async def befriend(a: ApiClient, b: ApiClient) -> None:
    await a.friend_request(uid(b))
    await b.accept_friend(uid(a))


async def test_a_photo_with_a_caption_reaches_bob_who_downloads_the_same_bytes(
    person: Opener, tmp_path: Path
) -> None:
    alice, bob, eve = await person(), await person(), await person()
    await befriend(alice, bob)
    photo = tmp_path / "beach.png"
    photo.write_bytes(png(64, 48))
    async with alice.chat() as alice_chat, bob.chat() as bob_chat:
        attachment, ack = await alice.send_file(alice_chat, photo, to=uid(bob), caption="the beach")
        msg = await received(bob_chat, ack.message_id)

    data = photo.read_bytes()
    assert (attachment.content_type, attachment.size, attachment.name) == (
        "image/png",
        len(data),
        "beach.png",
    )
    assert attachment.sha256 == hashlib.sha256(data).hexdigest()
    assert (attachment.width, attachment.height) == (64, 48)  # measured by the server
    assert msg.body == "the beach" and len(msg.attachments) == 1
    got = msg.attachments[0]
    assert (got.media_id, got.content_type, got.size, got.sha256, got.name) == (
        attachment.media_id,
        "image/png",
        len(data),
        attachment.sha256,
        "beach.png",
    )
    assert got.thumbnail

    media = await bob.download(got.media_id, tmp_path / "from-alice.png")
    assert (tmp_path / "from-alice.png").read_bytes() == data
    assert (media.state, media.size, media.width, media.height) == ("ready", len(data), 64, 48)
    await bob.download_thumbnail(got.media_id, tmp_path / "thumb.webp")
    thumb = (tmp_path / "thumb.webp").read_bytes()
    assert thumb[:4] == b"RIFF" and thumb[8:12] == b"WEBP"
    assert [name for name in names(tmp_path) if name.startswith(".")] == []  # no .part

    (stored,) = await bob.history(ack.channel_id)
    assert stored.attachments[0].media_id == attachment.media_id
    with pytest.raises(TidingsApiError) as refused:  # not a member of the channel
        await eve.get_media(attachment.media_id)
    assert (refused.value.status, refused.value.code) == (403, "not_a_member")


async def test_a_multipart_upload_round_trips_and_resumes_after_a_break(
    person: Opener, tmp_path: Path
) -> None:
    alice, bob = await person(), await person()
    await befriend(alice, bob)
    video = tmp_path / "clip.mp4"
    video.write_bytes(MP4_HEAD + os.urandom(20 * MIB - len(MP4_HEAD)))
    digest = hashlib.sha256(video.read_bytes()).hexdigest()

    sent_parts: list[int] = []
    attachment = await alice.upload(video, on_part=lambda _, n, __: sent_parts.append(n))
    assert sent_parts == [1, 2, 3]  # 8 MiB parts
    assert (attachment.content_type, attachment.size, attachment.sha256) == (
        "video/mp4",
        20 * MIB,
        digest,
    )

    # A run that stops after its first part; the next one resumes with what it kept.
    kept: dict[int, str] = {}
    slot: list[str] = []

    def stop_after_one(media_id: str, number: int, etag: str) -> None:
        slot.append(media_id)
        kept[number] = etag
        raise Crashed  # the process dies here

    with pytest.raises(Crashed):
        await alice.upload(video, on_part=stop_after_one)
    resumed_parts: list[int] = []
    again = await alice.upload(
        video, media_id=slot[0], etags=kept, on_part=lambda _, n, __: resumed_parts.append(n)
    )
    assert resumed_parts == [2, 3] and again.media_id == slot[0]

    async with alice.chat() as chat:
        ack = await chat.send("", to=uid(bob), attachments=[attachment, again])
    (msg,) = await bob.history(ack.channel_id)
    assert [a.media_id for a in msg.attachments] == [attachment.media_id, again.media_id]
    for n, item in enumerate(msg.attachments):
        await bob.download(item.media_id, tmp_path / f"got-{n}.mp4")
        assert hashlib.sha256((tmp_path / f"got-{n}.mp4").read_bytes()).hexdigest() == digest


class Crashed(Exception):
    pass


async def test_the_contracts_refusals_raise(person: Opener, tmp_path: Path) -> None:
    alice, bob = await person(), await person()
    with pytest.raises(TidingsApiError) as unsupported:
        await alice.upload(b"just some text\n", name="notes.txt")
    assert (unsupported.value.status, unsupported.value.code) == (415, "unsupported_media_type")

    with pytest.raises(TidingsApiError) as mismatch:  # PNG bytes declared as a JPEG
        await alice.upload(png(8, 8), content_type="image/jpeg")
    assert (mismatch.value.status, mismatch.value.code) == (415, "content_type_mismatch")

    photo = await alice.upload(png(8, 8), name="dot.png")
    async with alice.chat() as chat:
        with pytest.raises(TidingsChatError) as wrong:
            wrong_size = Attachment(photo.media_id, "image/png", photo.size + 1, photo.sha256)
            async with asyncio.timeout(WAIT_S):
                await chat.send("", to=uid(bob), attachments=[wrong_size])
        assert wrong.value.code == "media_mismatch"
        with pytest.raises(TidingsChatError) as unknown:
            stranger = Attachment("0" * 32, "image/png", 10, "0" * 64)
            async with asyncio.timeout(WAIT_S):
                await chat.send("", to=uid(bob), attachments=[stranger])
        assert unknown.value.code == "unknown_media"
    with pytest.raises(TidingsApiError) as unknown_media:
        await bob.get_media("f" * 32)
    assert (unknown_media.value.status, unknown_media.value.code) == (404, "unknown_media")


async def test_the_cli_sends_a_file_and_fetches_it(
    server: Deployment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tidings client send-file` and `fetch-file`, as subprocesses."""
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("TIDINGS_PASSWORD", PASSWORD)
    url = server.api_urls[0]
    ada, bo = unique_name("mca"), unique_name("mcb")
    for name in (ada, bo):
        assert await run_signup(parse("signup", "--url", url, name)) == 0
        assert await run_login(parse("login", "--url", url, name)) == 0
    capsys.readouterr()
    doc = tmp_path / "minutes.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + os.urandom(300_000) + b"\n%%EOF\n")

    sent = await cli(config, "send-file", "--user", ada, bo, str(doc), "--caption", "minutes")
    assert set(sent) >= {"media_id", "message_id", "channel_id"}
    assert sent["attachment"]["content_type"] == "application/pdf"
    assert sent["attachment"]["name"] == "minutes.pdf"

    (heard,) = await cli(config, "listen", "--user", bo, "--count", "1", lines=True)
    assert (heard["message_id"], heard["body"]) == (sent["message_id"], "minutes")
    assert [(a["media_id"], a["name"]) for a in heard["attachments"]] == [
        (sent["media_id"], "minutes.pdf")
    ]

    fetched = await cli(config, "fetch-file", "--user", bo, sent["media_id"], str(tmp_path))
    path = Path(fetched["path"])
    assert path == tmp_path / f"{sent['media_id']}.pdf"
    assert read(path) == read(doc)
    assert fetched["size"] == doc.stat().st_size

    into = tmp_path / "copy.pdf"
    again = await cli(config, "fetch-file", "--user", bo, sent["media_id"], str(into))
    assert again["path"] == str(into) and into.read_bytes() == doc.read_bytes()

    refused = await cli(config, "fetch-file", "--user", bo, "0" * 32, str(tmp_path), ok=False)
    assert "unknown_media" in refused["stderr"]


async def cli(config: Path, *argv: str, ok: bool = True, lines: bool = False) -> Any:
    """``tidings client ARGV``: its one JSON line (``lines``: all of them), or, failing,
    its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["XDG_CONFIG_HOME"] = str(config)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings",
        "client",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    if not ok:
        assert proc.returncode == 1, out
        return {"stderr": err.decode()}
    assert proc.returncode == 0, err.decode()
    printed = [json.loads(line) for line in out.decode().splitlines()]
    if lines:
        return printed
    (result,) = printed
    return result


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tidings")
    add_chat_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["client", *argv])


# -- without a server: the client's own decisions --------------------------------------------------


def test_content_types_from_the_first_bytes_then_the_extension() -> None:
    assert guess_content_type(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "image/jpeg"
    assert guess_content_type(png(1, 1)) == "image/png"
    assert guess_content_type(b"GIF89a\x01\x00") == "image/gif"
    assert guess_content_type(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert guess_content_type(MP4_HEAD) == "video/mp4"
    assert guess_content_type(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00") == "video/quicktime"
    assert guess_content_type(b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00") == "audio/mp4"
    webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm"
    assert guess_content_type(webm) == "video/webm"
    # Matroska that is not WebM is not a type the server takes: by its name, then.
    assert guess_content_type(webm.replace(b"webm", b"mkv "), "a.webm") == "video/webm"
    assert guess_content_type(b"OggS\x00\x02") == "audio/ogg"
    assert guess_content_type(b"ID3\x04\x00") == "audio/mpeg"
    assert guess_content_type(b"\xff\xfb\x90\x64") == "audio/mpeg"
    assert guess_content_type(b"%PDF-1.7\n") == "application/pdf"
    assert guess_content_type(b"????", "Voice Note.OPUS") == "audio/ogg"
    assert guess_content_type(b"????", "notes.txt") == "application/octet-stream"


class FakeDeployment:
    """An API and a blob store in memory: a multipart slot of 2 parts whose second PUT
    answers 503 once, then 403 (the URL expired) until fresh URLs are asked for."""

    PART = 8 * MIB

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sha = hashlib.sha256(data).hexdigest()
        self.generation = 0
        self.stored: dict[int, bytes] = {}
        self.part2_puts = 0
        self.completed: Any = None
        self.authorized_blob_calls = 0
        self.serve: bytes = data

    def media(self, **extra: Any) -> dict[str, Any]:
        return {
            "media_id": "ab" * 16,
            "state": "pending",
            "content_type": "video/mp4",
            "size": len(self.data),
            "sha256": self.sha,
            "e2e": False,
            **extra,
        }

    def slot(self) -> dict[str, Any]:
        g = self.generation
        sizes = [self.PART, len(self.data) - self.PART]
        return self.media(
            upload={
                "method": "multipart",
                "part_size": self.PART,
                "headers": {"x-test": "1"},
                "parts": [
                    {"part_number": n, "size": s, "url": f"http://store.test/p{n}?g={g}"}
                    for n, s in enumerate(sizes, 1)
                ],
            },
            done_parts=sorted(self.stored),
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "store.test":
            if "authorization" in request.headers:
                self.authorized_blob_calls += 1
            return self.store(request)
        path = request.url.path
        if path == "/v1/media":
            return httpx.Response(201, json=self.slot())
        if path.endswith("/upload"):
            self.generation += 1
            return httpx.Response(200, json=self.slot())
        if path.endswith("/complete"):
            self.completed = json.loads(request.content)
            return httpx.Response(200, json=self.media(state="ready", thumbnail=False))
        return httpx.Response(
            200,
            json=self.media(state="ready", url="http://store.test/get", url_expires_at=1),
        )

    def store(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, content=self.serve)
        number = int(request.url.path.removeprefix("/p"))
        assert request.headers["x-test"] == "1"
        assert int(request.headers["content-length"]) == len(request.content)
        if number == 2:
            self.part2_puts += 1
            if self.part2_puts == 1:
                return httpx.Response(503)
            if request.url.params["g"] == "0":
                return httpx.Response(403, json={"error": {"code": "url_expired"}})
        self.stored[number] = request.content
        return httpx.Response(200, headers={"ETag": f'"etag-{number}"'})


def fake_api(fake: FakeDeployment) -> ApiClient:
    return ApiClient(
        "http://api.test", token="tok", transport=httpx.MockTransport(fake), timeout=5.0
    )


async def test_a_failed_part_is_sent_again_and_an_expired_url_renewed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tidings.client._media.RETRY_DELAYS_S", (0.0,))
    data = MP4_HEAD + os.urandom(9 * MIB)
    fake = FakeDeployment(data)
    async with fake_api(fake) as api:
        attachment = await api.upload(data)
    assert b"".join(fake.stored[n] for n in (1, 2)) == data
    assert fake.part2_puts == 3 and fake.generation == 1  # 503, 403 (fresh urls), 200
    assert fake.completed == {
        "parts": [
            {"part_number": 1, "etag": '"etag-1"'},
            {"part_number": 2, "etag": '"etag-2"'},
        ]
    }
    assert fake.authorized_blob_calls == 0  # the bearer token never goes to the store
    assert (attachment.size, attachment.sha256, attachment.name) == (len(data), fake.sha, None)


async def test_a_download_that_does_not_match_its_digest_raises_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    data = MP4_HEAD + b"0123456789"
    fake = FakeDeployment(data)
    fake.serve = MP4_HEAD + b"0123456780"
    async with fake_api(fake) as api:
        with pytest.raises(TidingsProtocolError):
            await api.download("ab" * 16, tmp_path / "clip.mp4")
        assert names(tmp_path) == []
        fake.serve = data
        await api.download("ab" * 16, tmp_path / "clip.mp4")
    assert (tmp_path / "clip.mp4").read_bytes() == data
