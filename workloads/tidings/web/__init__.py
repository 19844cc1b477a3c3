"""The web client: plain ES modules under ``static/``, served by every HTTP process.

``/`` answers the page and ``/web/...`` its scripts and styles; nothing else is claimed, so
no path of the contract (``/v1/...``, ``/healthz``, ``/readyz``) is shadowed, and an unknown
path (``/metrics`` too: it is on the metrics port only) stays 404 ``not_found``.
The page speaks only the public contract (docs/web.md).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "mount_web"]

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Scripts, styles and images from this origin only; the WebSocket may live on a chat
# server of its own (a cluster), so any ws:/wss: origin may be connected to.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def mount_web(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/web/``."""
    index = STATIC_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    async def web_page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/web", StaticFiles(directory=STATIC_DIR), name="web")
