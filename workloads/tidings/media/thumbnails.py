"""Small previews of images, made server-side with Pillow (docs/media.md).

Decoding untrusted images is the risky part: Pillow refuses an image declaring more
pixels than ``MAX_PIXELS`` before it decodes anything (a decompression bomb), JPEGs are
decoded at a reduced scale (``draft``), and the preview carries no metadata (EXIF, GPS)
of the original. CPU-bound: callers run it on a thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

MAX_SIDE = 320
MAX_PIXELS = 50_000_000  # a 50-megapixel photo; more is refused
THUMBNAIL_TYPE = "image/webp"
_FORMATS = {"JPEG", "PNG", "GIF", "WEBP"}
_ORIENTATION = 0x0112  # the EXIF tag


class NotAnImage(ValueError):
    """The bytes are not an image we make previews of (unreadable, too many pixels)."""


@dataclass(frozen=True, slots=True)
class Thumbnail:
    data: bytes  # WebP
    width: int  # of the original, upright (EXIF orientation applied)
    height: int


def make_thumbnail(data: bytes, max_side: int = MAX_SIDE) -> Thumbnail:
    """A WebP preview of the image in ``data``, at most ``max_side`` pixels a side, upright
    and without metadata; with the original's upright size.

    Raises :class:`NotAnImage` for bytes that are not a JPEG, PNG, GIF or WebP we can
    read, or an image of more than ``MAX_PIXELS``. CPU-bound: run it on a thread."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            if image.format not in _FORMATS:
                raise NotAnImage(f"not an image we preview: {image.format}")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise NotAnImage(f"{width}x{height} is more than {MAX_PIXELS} pixels")
            if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):  # turned a quarter
                width, height = height, width
            image.draft("RGB", (max_side * 2, max_side * 2))  # JPEG: decode scaled down
            upright = ImageOps.exif_transpose(image)
            upright.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            if upright.mode not in ("RGB", "RGBA"):
                has_alpha = "transparency" in upright.info or upright.mode in ("LA", "PA")
                upright = upright.convert("RGBA" if has_alpha else "RGB")
            out = io.BytesIO()
            upright.save(out, "WEBP", quality=80, method=4)  # no exif=: metadata dropped
            return Thumbnail(out.getvalue(), width, height)
    except NotAnImage:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise NotAnImage(f"not a readable image: {exc}") from exc
