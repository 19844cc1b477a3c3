"""Photos in the web client, in a real browser against a real `tidings up` (its embedded
blob store: same-origin signed upload and download routes).

Alice attaches a photo with the file picker and sends it with a caption; Bob's page shows
the thumbnail, sized before it loads, and opens the full image in a lightbox. Then a photo
dropped on the conversation (a `drop` event with a DataTransfer built in the page), files
that are refused, a server cap (413) said with its limit, and the helpers of media.js
(SHA-256 without WebCrypto, the media cache's refetch once URLs expire) run in the page.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Route, expect

from ._pages import WAIT_MS, ChatPage, begin_chat
from ._server import WebServer

People = Callable[[str], ChatPage]
Shots = Callable[[ChatPage, str], Path]

PHOTO_W, PHOTO_H = 480, 360  # over the thumbnail's 320 px: the thumbnail is smaller


def png(width: int, height: int, seed: int = 1) -> bytes:
    """A photo-sized PNG: a colour gradient under noise (a few hundred KB, incompressible)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            (
                (x * 255 // width + rng.randrange(64)) % 256,
                (y * 255 // height + rng.randrange(64)) % 256,
                rng.randrange(256),
            )
            for y in range(height)
            for x in range(width)
        ]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def wait_loaded(page: ChatPage, img: Locator) -> dict[str, Any]:
    """Wait until the <img> has loaded, then its natural and shown sizes."""
    img.wait_for(state="attached")
    img.element_handle().wait_for_element_state("visible")
    page.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=img.element_handle(), timeout=WAIT_MS
    )
    sizes: dict[str, Any] = img.evaluate(
        "img => ({natural: [img.naturalWidth, img.naturalHeight],"
        " shown: [img.getBoundingClientRect().width, img.getBoundingClientRect().height],"
        " src: img.getAttribute('src'), alt: img.alt})"
    )
    return sizes


def test_photo_attached_sent_shown_as_thumbnail_and_opened(
    people: People, shots: Shots, tmp_path: Path
) -> None:
    alice, bob = people("alice"), people("bob")
    begin_chat(alice, bob, "Look at this")
    photo = tmp_path / "beach <b>.png"  # a name that would be markup if used as HTML
    data = png(PHOTO_W, PHOTO_H)
    assert 200_000 < len(data) < 1_000_000
    photo.write_bytes(data)

    # Alice picks the photo: it waits in the composer with a preview and a remove button.
    expect(alice.page.get_by_role("button", name="Attach a photo")).to_be_visible()
    alice.page.locator("#attach-input").set_input_files(str(photo))
    pending = alice.page.locator(".pending-item")
    expect(pending).to_have_count(1)
    expect(pending.locator(".pending-name")).to_have_text("beach <b>.png")
    expect(alice.page.get_by_role("button", name="Remove beach <b>.png")).to_be_visible()
    wait_loaded(alice, pending.locator("img"))
    expect(alice.composer).to_have_attribute("placeholder", "Add a caption")
    alice.composer.fill("the beach")
    shots(alice, "photo-pending")

    # Sent on a slow uplink (~150 KB/s): the composer says it is uploading, with progress,
    # and keeps the caption (read-only) until the photo is up; then the message goes.
    cdp = alice.page.context.new_cdp_session(alice.page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 150_000},
    )
    alice.composer.press("Enter")
    uploading = alice.page.locator(".upload-status")
    expect(uploading).to_be_visible()
    expect(uploading).to_contain_text(re.compile(r"Uploading the photo… \d+%"))
    expect(alice.composer).to_have_value("the beach")
    expect(alice.composer).to_have_js_property("readOnly", True)
    expect(alice.page.get_by_role("button", name="Send")).to_be_disabled()
    shots(alice, "uploading")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    expect(pending).to_have_count(0)
    expect(alice.composer).to_have_value("")
    expect(alice.composer).to_have_js_property("readOnly", False)

    # Her own message shows the photo and the caption; the tick goes past "sending".
    mine = alice.message("the beach")
    expect(mine).to_have_count(1)
    expect(alice.tick("the beach")).not_to_have_attribute("data-state", "pending")
    wait_loaded(alice, mine.locator("img.thumb"))

    # Bob's page: the thumbnail, at the photo's shape from the start, alt text the name.
    theirs = bob.message("the beach")
    expect(theirs).to_have_count(1)
    thumb = theirs.locator("img.thumb")
    expect(thumb).to_have_attribute("width", "280")
    expect(thumb).to_have_attribute("height", "210")
    loaded = wait_loaded(bob, thumb)
    assert loaded["alt"] == "beach <b>.png"
    assert 0 < loaded["natural"][0] <= 320  # the server's thumbnail, not the original
    shown_w, shown_h = loaded["shown"]
    assert abs(shown_w / shown_h - PHOTO_W / PHOTO_H) < 0.02
    assert "/v1/media/" in loaded["src"]
    # Nothing from the name became markup.
    assert bob.page.locator("ol.messages b").count() == 0
    expect(theirs.locator(".attachment-image")).to_have_attribute("data-state", "loaded")
    expect(bob.channel("Alice").locator(".channel-preview")).to_have_text("the beach")
    shots(bob, "thumbnail")

    # Clicking opens the full image; Escape closes it (and not the conversation).
    theirs.locator(".attachment-image").click()
    box = bob.page.get_by_role("dialog", name="beach <b>.png")
    expect(box).to_be_visible()
    full = wait_loaded(bob, box.locator("img.lightbox-image"))
    assert full["natural"] == [PHOTO_W, PHOTO_H]
    expect(box).to_have_attribute("data-state", "loaded")
    shots(bob, "lightbox")
    bob.page.keyboard.press("Escape")
    expect(bob.page.get_by_role("dialog")).to_have_count(0)
    expect(bob.page.locator("#conversation-title")).to_have_text("Alice")
    expect(theirs.locator(".attachment-image")).to_be_focused()
    # ... and so does its close button.
    theirs.locator(".attachment-image").click()
    box = bob.page.get_by_role("dialog", name="beach <b>.png")
    wait_loaded(bob, box.locator("img.lightbox-image"))
    box.get_by_role("button", name="Close").click()
    expect(bob.page.get_by_role("dialog")).to_have_count(0)

    # The bytes Bob downloads are the bytes Alice picked.
    media_id = theirs.locator(".attachment-image").get_attribute("data-media-id")
    assert media_id and re.fullmatch(r"[0-9a-f]{32}", media_id)
    got = bob.page.evaluate(
        """async (id) => {
          const token = JSON.parse(localStorage.getItem('tidings.session')).access_token;
          const media = await (await fetch('/v1/media/' + id,
            {headers: {Authorization: 'Bearer ' + token}})).json();
          const bytes = new Uint8Array(await (await fetch(media.url)).arrayBuffer());
          const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
          return {media, sha256: Array.from(digest, b => b.toString(16).padStart(2, '0')).join('')};
        }""",
        media_id,
    )
    assert got["sha256"] == hashlib.sha256(data).hexdigest() == got["media"]["sha256"]
    assert (got["media"]["width"], got["media"]["height"]) == (PHOTO_W, PHOTO_H)

    # After a reload the photo comes back from history.
    bob.page.reload()
    bob.open("Alice")
    wait_loaded(bob, bob.message("the beach").locator("img.thumb"))
    shots(alice, "sent")
    shots(bob, "after-reload")
    assert alice.errors == [] and bob.errors == []


@pytest.mark.parametrize(
    "server_env",
    [{"TIDINGS_MEDIA_MULTIPART_THRESHOLD": str(1 << 20), "TIDINGS_MEDIA_PART_SIZE": str(5 << 20)}],
)
def test_a_large_photo_goes_up_in_parts(people: People, shots: Shots, tmp_path: Path) -> None:
    """Over the multipart threshold: the page PUTs each part, reads each answer's ETag and
    completes with them; Bob opens the full image."""
    alice, bob = people("alice"), people("bob")
    begin_chat(alice, bob, "Look at this")
    width, height = 1400, 1300  # random pixels: ~5.5 MB, two parts of 5 MiB and the rest
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    photo = tmp_path / "large.png"
    image.save(photo, format="PNG")
    assert (5 << 20) < photo.stat().st_size < (10 << 20)
    puts: list[str] = []
    alice.page.on(
        "request",
        lambda r: puts.append(r.url) if r.method == "PUT" and "/v1/media/" in r.url else None,
    )
    alice.page.locator("#attach-input").set_input_files(str(photo))
    expect(alice.page.locator(".pending-item")).to_have_count(1)
    alice.composer.fill("big one")
    alice.composer.press("Enter")
    expect(alice.page.locator(".pending-item")).to_have_count(0, timeout=60_000)
    assert len(puts) == 2, puts
    theirs = bob.message("big one")
    wait_loaded(bob, theirs.locator("img.thumb"))
    theirs.locator(".attachment-image").click()
    full = wait_loaded(bob, bob.page.locator("dialog img.lightbox-image"))
    assert full["natural"] == [width, height]
    shots(bob, "large-lightbox")
    assert alice.errors == [] and bob.errors == []


DROP = """
async ({selector, files}) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, { type: f.type }));
  }
  const target = document.querySelector(selector);
  const fire = (type) => {
    const event = new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer });
    target.dispatchEvent(event);
    return event.defaultPrevented;
  };
  const entered = fire("dragenter");
  const over = fire("dragover");
  const hinted = document.querySelector(".conversation-pane").classList.contains("dragging");
  const dropped = fire("drop");
  return { entered, over, hinted, dropped };
}
"""


def drop(page: ChatPage, files: list[tuple[str, str, bytes]]) -> dict[str, bool]:
    payload = [
        {"name": name, "type": kind, "b64": base64.b64encode(data).decode()}
        for name, kind, data in files
    ]
    result: dict[str, bool] = page.page.evaluate(
        DROP, {"selector": "ol.messages", "files": payload}
    )
    return result


@pytest.mark.parametrize("server_env", [{"TIDINGS_MEDIA_MAX_IMAGE_BYTES": "300000"}])
def test_photo_dropped_refusals_and_the_server_cap(people: People, shots: Shots) -> None:
    alice, bob = people("alice"), people("bob")
    begin_chat(alice, bob, "Look at this")
    small = png(200, 150, seed=2)
    assert len(small) < 300_000

    # A photo and a text file dropped on the conversation: the photo waits, the text
    # file is refused with a reason.
    events = drop(alice, [("small.png", "image/png", small), ("notes.txt", "text/plain", b"hi")])
    assert events == {"entered": True, "over": True, "hinted": True, "dropped": True}
    expect(alice.page.locator(".conversation-pane")).not_to_have_class(re.compile("dragging"))
    pending = alice.page.locator(".pending-item")
    expect(pending).to_have_count(1)
    expect(alice.page.locator(".upload-error")).to_have_text(
        "“notes.txt” is not a JPEG, PNG, GIF or WebP image."
    )
    shots(alice, "dropped")

    # Removed, and dropped again: sent without a caption.
    alice.page.get_by_role("button", name="Remove small.png").click()
    expect(pending).to_have_count(0)
    expect(alice.page.locator(".pending-attachments")).to_be_hidden()
    drop(alice, [("small.png", "image/png", small)])
    expect(pending).to_have_count(1)
    alice.composer.press("Enter")
    expect(pending).to_have_count(0)
    theirs = bob.page.locator("ol.messages li.msg").filter(
        has=bob.page.locator("img.thumb[alt='small.png']")
    )
    expect(theirs).to_have_count(1)
    expect(theirs.locator(".body")).to_have_count(0)  # no caption: no empty body line
    wait_loaded(bob, theirs.locator("img.thumb"))
    expect(bob.channel("Alice").locator(".channel-preview")).to_have_text("📷 Photo")

    # Over the server's cap (300,000 bytes here): 413, and the page says the limit.
    big = png(400, 300, seed=3)
    assert len(big) > 300_000
    drop(alice, [("big.png", "image/png", big)])
    alice.composer.fill("too big?")
    alice.composer.press("Enter")
    expect(alice.page.locator(".upload-error")).to_have_text(
        "“big.png” is too large: images can be at most 293 KB. Nothing was sent."
    )
    expect(alice.composer).to_have_value("too big?")  # the caption is kept
    expect(pending).to_have_count(1)
    shots(alice, "too-large")
    alice.page.get_by_role("button", name="Remove big.png").click()
    expect(pending).to_have_count(0)
    expect(alice.page.locator(".upload-error")).to_have_text("")
    assert alice.message("too big?").count() == 0

    # An end-to-end chat (the server says so in the channel list): no attach button, and
    # a photo dropped there is not taken (the web client holds no keys).
    def as_end_to_end(route: Route) -> None:
        answer = route.fetch()
        body = answer.json()
        for channel in body["channels"]:
            channel["e2e"] = True
        route.fulfill(response=answer, json=body)

    alice.page.route(re.compile(r".*/v1/channels$"), as_end_to_end)
    alice.refresh_lists()
    expect(alice.composer).to_be_disabled()
    expect(alice.page.get_by_role("button", name="Attach a photo")).to_be_hidden()
    events = drop(alice, [("small.png", "image/png", small)])
    assert events["hinted"] is False  # not a drop target here
    expect(pending).to_have_count(0)
    expect(alice.page.locator(".pending-attachments")).to_be_hidden()
    shots(alice, "end-to-end")
    assert alice.errors == [] and bob.errors == []


HELPERS = """
async () => {
  const media = await import("/web/js/media.js");
  const { fitBox } = await import("/web/js/views/attachments.js");
  const { previewText } = await import("/web/js/store.js");
  const out = {};
  const enc = new TextEncoder();
  out.sha = [
    media.sha256Fallback(new Uint8Array(0)),
    media.sha256Fallback(enc.encode("abc")),
    media.sha256Fallback(new Uint8Array(1_000_003).map((_, i) => (i * 31) & 255)),
  ];
  out.shaSubtle = await media.sha256Hex(enc.encode("abc"));
  out.fit = [fitBox(480, 360), fitBox(100, 50), fitBox(300, 3000), fitBox(0, 10)];
  out.bytes = [5, 2048, 300000, 16 << 20, 1536].map(media.formatBytes);
  out.expires = [
    media.expiresAt({ url_expires_at: 1700000000000 }),
    media.expiresAt({ url_expires_at: 1700000000 }),
    media.expiresAt({ url_expires_at: "2023-11-14T22:13:20Z" }),
  ];
  const png = { content_type: "image/png" };
  const pdf = { content_type: "application/pdf", name: "a.pdf" };
  out.preview = [
    previewText({ body: "", attachments: [png] }),
    previewText({ body: "", attachments: [png, { content_type: "image/gif" }] }),
    previewText({ body: "", attachments: [pdf] }),
    previewText({ body: "caption", attachments: [png] }),
  ];
  // The cache: one request per id while one is under way, then none until the URLs are
  // about to expire; a failed refresh forgets nothing it held.
  let now = 1_700_000_000_000;
  let calls = 0;
  const api = {
    media: async (id) => {
      calls += 1;
      return { media_id: id, url: `u${calls}`, url_expires_at: now + 300_000 };
    },
  };
  const cache = new media.MediaCache(api, () => now);
  const [a, b] = await Promise.all([cache.get("m"), cache.get("m")]);
  out.shared = [a.url, b.url, calls];
  now += 200_000;
  out.cached = [(await cache.get("m")).url, calls];
  now += 90_000; // 10 s left: fetched again
  out.refetched = [(await cache.get("m")).url, calls];
  out.fresh = [(await cache.get("m", true)).url, calls];
  return out;
}
"""


def test_media_helpers_in_the_page(browser: Browser, server: WebServer) -> None:
    page = browser.new_page()
    try:
        page.goto(server.url + "/")
        out: dict[str, Any] = page.evaluate(HELPERS)
    finally:
        page.close()
    expected = bytes((i * 31) & 255 for i in range(1_000_003))
    assert out["sha"] == [
        hashlib.sha256(b"").hexdigest(),
        hashlib.sha256(b"abc").hexdigest(),
        hashlib.sha256(expected).hexdigest(),
    ]
    assert out["shaSubtle"] == hashlib.sha256(b"abc").hexdigest()
    assert out["fit"] == [[280, 210], [100, 50], [28, 280], None]
    assert out["bytes"] == ["5 B", "2 KB", "293 KB", "16 MB", "1.5 KB"]
    assert out["expires"] == [1700000000000] * 3
    assert out["preview"] == ["📷 Photo", "📷 2 photos", "📎 a.pdf", "caption"]
    assert out["shared"] == ["u1", "u1", 1]
    assert out["cached"] == ["u1", 1]
    assert out["refetched"] == ["u2", 2]
    assert out["fresh"] == ["u3", 3]


def test_page_policy_allows_previews_and_a_blob_store_of_another_origin(
    server: WebServer,
) -> None:
    """Previews of picked photos are blob: URLs; a blob store elsewhere (S3's presigned
    URLs) is named in the policy when the app is told its origin."""
    from tidings.web import content_security_policy, media_origin

    with httpx.Client(base_url=server.url, trust_env=False) as http:
        policy = http.get("/").headers["content-security-policy"]
    assert "img-src 'self' data: blob:;" in policy
    assert "connect-src 'self' ws: wss:;" in policy
    assert media_origin("https://s3.example.com:9000/bucket/key?X-Amz=1") == (
        "https://s3.example.com:9000"
    )
    assert media_origin(None) is None and media_origin("/v1/media/blob/x") is None
    wide = content_security_policy(["https://s3.example.com"])
    assert "img-src 'self' data: blob: https://s3.example.com;" in wide
    assert "connect-src 'self' ws: wss: https://s3.example.com;" in wide
    assert "media-src 'self' https://s3.example.com;" in wide
    assert "script-src 'self';" in wide
