"""The web client: plain ES modules under ``static/``, served by every HTTP process.

``/`` answers the page and ``/web/...`` its scripts and styles; nothing else is claimed, so
no path of the contract (``/v1/...``, ``/healthz``, ``/readyz``) is shadowed, and an unknown
path (``/metrics`` too: it is on the metrics port only) stays 404 ``not_found``.
The page speaks only the public contract (docs/web.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "content_security_policy", "media_origin", "mount_web"]

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Scripts, styles and images from this origin only; the WebSocket may live on a chat
# server of its own (a cluster), so any ws:/wss: origin may be connected to. Images may
# also be blob: URLs: the preview of a photo picked to attach, made from the file itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def content_security_policy(media_origins: Sequence[str] = ()) -> str:
    """The page's policy; ``media_origins`` (``https://s3.example.com``: a blob store the
    presigned URLs name, when it is not this origin) may be uploaded to (``connect-src``)
    and shown from (``img-src``, ``media-src``)."""
    extra = "".join(f" {origin}" for origin in media_origins)
    if not extra:
        return CONTENT_SECURITY_POLICY
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data: blob:{extra}; media-src 'self'{extra}; "
        f"connect-src 'self' ws: wss:{extra}; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def media_origin(url: str | None) -> str | None:
    """The origin (scheme://host[:port]) of a blob store's URL, or None."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def mount_web(app: FastAPI, media_origins: Sequence[str] = ()) -> None:
    """Serve the page at ``/`` and its assets under ``/web/``. ``media_origins``: blob
    stores of another origin that attachments are uploaded to and shown from."""
    index = STATIC_DIR / "index.html"
    headers = {**PAGE_HEADERS, "Content-Security-Policy": content_security_policy(media_origins)}

    @app.get("/", include_in_schema=False)
    async def web_page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=headers)

    app.mount("/web", StaticFiles(directory=STATIC_DIR), name="web")
