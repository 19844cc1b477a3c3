"""Photos, videos and files (issue #18) on `tidings up` (files under the data directory,
signed routes) and on the cluster (SeaweedFS's S3): direct uploads, attachment messages,
downloads by members only, and every bad upload refused without a message."""

from __future__ import annotations

import asyncio
import io
import time
import uuid

import httpx
from PIL import Image

from ._harness import Clients, another_device, befriend, error_code, new_account
from ._media import (
    attachment,
    complete,
    download,
    mp4_of,
    new_slot,
    png_of_about,
    put_bytes,
    sha256,
    upload,
)

MB = 1_000_000


async def test_a_photo_and_a_video_reach_another_device_byte_identical(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann = await new_account(http, "mann")
    bob = await new_account(http, "mbob")
    bob_laptop = await another_device(http, bob)
    carol = await new_account(http, "mcarol")
    await befriend(http, ann, bob)
    photo = png_of_about(5 * MB)
    video = mp4_of(50 * MB)
    assert len(photo) >= 5 * MB

    photo_media = await upload(http, ann, photo, "image/png")
    video_media = await upload(http, ann, video, "video/mp4")
    assert photo_media["thumbnail"] is True and video_media["thumbnail"] is False
    side = Image.open(io.BytesIO(photo)).size
    assert (photo_media["width"], photo_media["height"]) == side

    laptop_ws = await clients.connect(bob_laptop)
    ann_ws = await clients.connect(ann)
    sent = {
        "type": "send",
        "client_msg_id": uuid.uuid4().hex,
        "to": bob.user_id,
        "body": "the beach, and a clip",
        "attachments": [
            attachment(photo_media, "beach.png"),
            {**attachment(video_media, "clip.mp4"), "duration_ms": 12_000},
        ],
    }
    await ann_ws.send(sent)
    ack = await ann_ws.recv_until("ack", client_msg_id=sent["client_msg_id"])
    got = await laptop_ws.recv_until("msg", message_id=ack["message_id"])
    image, clip = got["attachments"]
    assert image["name"] == "beach.png" and image["thumbnail"] is True
    assert (image["width"], image["height"]) == side
    assert clip["duration_ms"] == 12_000 and clip["size"] == len(video)

    # The other device fetches both: byte-identical; the photo's preview is a WebP.
    for item, original in ((image, photo), (clip, video)):
        described = await http.get(f"/v1/media/{item['media_id']}", headers=bob_laptop.auth)
        assert described.status_code == 200, described.text
        fetched = await download(described.json()["url"])
        assert fetched.status_code == 200
        assert len(fetched.content) == len(original)
        assert sha256(fetched.content) == sha256(original)
    thumb_url = (await http.get(f"/v1/media/{image['media_id']}", headers=bob.auth)).json()[
        "thumbnail_url"
    ]
    preview = Image.open(io.BytesIO((await download(thumb_url)).content))
    assert preview.format == "WEBP" and max(preview.size) <= 320

    # History shows the attachments too.
    history = await http.get(f"/v1/channels/{got['channel_id']}/messages", headers=bob.auth)
    assert history.json()["messages"][0]["attachments"] == got["attachments"]

    # Someone outside the conversation gets no URL, however they learnt the id.
    refused = await http.get(f"/v1/media/{image['media_id']}", headers=carol.auth)
    assert refused.status_code == 403 and error_code(refused) == "not_a_member"

    # A URL is good until it expires, not after.
    short = await http.get(f"/v1/media/{image['media_id']}", params={"ttl_s": 1}, headers=bob.auth)
    url = short.json()["url"]
    assert short.json()["url_expires_at"] <= time.time() * 1000 + 1500
    await asyncio.sleep(2.5)
    late = await download(url)
    assert late.status_code == 403, late.text
    # And one that was altered (another object's key) is refused too.
    tampered = url.replace(image["media_id"], clip["media_id"])
    assert (await download(tampered)).status_code == 403


async def test_oversized_and_unsupported_uploads_are_refused_up_front(
    http: httpx.AsyncClient,
) -> None:
    ann = await new_account(http, "oann")
    digest = "0" * 64
    too_big = await http.post(
        "/v1/media",
        json={"content_type": "image/png", "size": 16 * 1024 * 1024 + 1, "sha256": digest},
        headers=ann.auth,
    )
    assert too_big.status_code == 413 and error_code(too_big) == "payload_too_large"
    assert "16777216" in too_big.json()["error"]["message"]
    html = await http.post(
        "/v1/media",
        json={"content_type": "text/html", "size": 10, "sha256": digest},
        headers=ann.auth,
    )
    assert html.status_code == 415 and error_code(html) == "unsupported_media_type"
    anonymous = await http.post(
        "/v1/media", json={"content_type": "image/png", "size": 10, "sha256": digest}
    )
    assert anonymous.status_code == 401


async def test_the_store_takes_only_the_declared_length(http: httpx.AsyncClient) -> None:
    ann = await new_account(http, "lann")
    data = png_of_about(20_000)
    slot = await new_slot(http, ann, data, "image/png")
    upload_ = slot["upload"]
    async with httpx.AsyncClient(timeout=30, trust_env=False) as blobs:
        longer = await blobs.put(upload_["url"], content=data + b"x", headers=upload_["headers"])
        assert longer.status_code in (403, 413), longer.text  # S3: 403; ours: 413
        shorter = await blobs.put(upload_["url"], content=data[:-1], headers=upload_["headers"])
        assert shorter.status_code in (400, 403), shorter.text
    # Nothing arrived: not complete, and the slot stays for a good upload.
    missing = await complete(http, ann, slot["media_id"], [])
    assert missing.status_code == 409 and error_code(missing) == "upload_incomplete"
    await put_bytes(slot, data)
    assert (await complete(http, ann, slot["media_id"], [])).status_code == 200


async def test_a_truncated_upload_never_becomes_a_message(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann = await new_account(http, "tann")
    bob = await new_account(http, "tbob")
    await befriend(http, ann, bob)
    video = mp4_of(20 * MB)  # multipart: three parts
    slot = await new_slot(http, ann, video, "video/mp4")
    assert slot["upload"]["method"] == "multipart" and len(slot["upload"]["parts"]) == 3
    parts = await put_bytes(slot, video, skip_parts=frozenset({2}))
    cut = await complete(http, ann, slot["media_id"], parts)
    assert cut.status_code == 409 and error_code(cut) == "upload_incomplete"

    bob_ws = await clients.connect(bob)
    ann_ws = await clients.connect(ann)
    frame = {
        "type": "send",
        "client_msg_id": uuid.uuid4().hex,
        "to": bob.user_id,
        "body": "",
        "attachments": [
            {
                "media_id": slot["media_id"],
                "content_type": "video/mp4",
                "size": len(video),
                "sha256": sha256(video),
            }
        ],
    }
    await ann_ws.send(frame)
    error = await ann_ws.recv_until("error", ref=frame["client_msg_id"])
    assert error["code"] == "media_not_ready"

    # Resumed: the store says which parts it holds; the missing one goes up, then it's
    # complete and the same send goes through.
    resume = await http.get(f"/v1/media/{slot['media_id']}/upload", headers=ann.auth)
    assert resume.status_code == 200, resume.text
    assert resume.json()["done_parts"] == [1, 3]
    rest = await put_bytes(resume.json(), video, skip_parts=frozenset({1, 3}))
    assert (await complete(http, ann, slot["media_id"], parts + rest)).status_code == 200
    await ann_ws.send(frame)
    ack = await ann_ws.recv_until("ack", client_msg_id=frame["client_msg_id"])
    got = await bob_ws.recv_until("msg", message_id=ack["message_id"])
    # Nothing of the refused send reached Bob before this message.
    assert got["attachments"][0]["media_id"] == slot["media_id"]
    assert not [f for f in bob_ws.buffer if f.get("type") == "msg"]


async def test_a_type_mismatch_or_a_wrong_digest_is_refused_and_deleted(
    http: httpx.AsyncClient,
) -> None:
    ann = await new_account(http, "wann")
    html = b"<html><script>alert(1)</script></html>" + b" " * 100
    slot = await new_slot(http, ann, html, "image/png")
    await put_bytes(slot, html)
    refused = await complete(http, ann, slot["media_id"], [])
    assert refused.status_code == 415 and error_code(refused) == "content_type_mismatch"
    gone = await http.get(f"/v1/media/{slot['media_id']}", headers=ann.auth)
    assert gone.status_code == 404 and error_code(gone) == "unknown_media"

    photo = png_of_about(30_000)
    slot = await new_slot(http, ann, photo, "image/png", declared_sha256=sha256(b"other"))
    await put_bytes(slot, photo)
    wrong = await complete(http, ann, slot["media_id"], [])
    assert wrong.status_code == 422 and error_code(wrong) == "sha256_mismatch"
    assert (await http.get(f"/v1/media/{slot['media_id']}", headers=ann.auth)).status_code == 404


async def test_a_send_may_attach_only_its_own_ready_uploads_as_they_are(
    http: httpx.AsyncClient, clients: Clients
) -> None:
    ann = await new_account(http, "sann")
    bob = await new_account(http, "sbob")
    await befriend(http, ann, bob)
    photo = png_of_about(10_000)
    bobs = await upload(http, bob, photo, "image/png")
    mine = await upload(http, ann, photo, "image/png")
    ann_ws = await clients.connect(ann)

    async def send(item: dict[str, object]) -> dict[str, object]:
        frame = {
            "type": "send",
            "client_msg_id": uuid.uuid4().hex,
            "to": bob.user_id,
            "body": "",
            "attachments": [item],
        }
        await ann_ws.send(frame)
        return await ann_ws.recv_until_any(("ack", "error"))

    assert (await send(attachment(bobs)))["code"] == "unknown_media"
    assert (await send({**attachment(mine), "size": mine["size"] + 1}))["code"] == (
        "media_mismatch"
    )
    bad_name = await send({**attachment(mine), "name": "x" * 300})
    assert bad_name["code"] == "invalid_frame"
    # Bob cannot read Ann's upload until it is sent to him; then he can.
    before = await http.get(f"/v1/media/{mine['media_id']}", headers=bob.auth)
    assert before.status_code == 403
    assert (await send(attachment(mine)))["type"] == "ack"
    after = await http.get(f"/v1/media/{mine['media_id']}", headers=bob.auth)
    assert after.status_code == 200
