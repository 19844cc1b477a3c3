"""The embedded blob store (`tidings up`): files under the media directory, uploaded and
downloaded through HMAC-signed routes on the API's own port (api/routes_media.py).

A signed URL names its key, operation, exact size and content type (uploads), its
expiry, and an HMAC-SHA256 over all of them: altering any part, or using it after
``exp``, is refused. An upload is written to a temporary file and moved into place only
when exactly the signed number of bytes arrived, so a truncated upload leaves nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from tidings.media.blobs import MediaError, SignedRequest, UploadIncomplete

ROUTE = "/v1/media/blob/"
_CHUNK = 1 << 20
_QUOTE = '"'


@dataclass(frozen=True)
class Signer:
    secret: bytes

    def sign(self, fields: Mapping[str, str]) -> str:
        """The URL-safe base64 HMAC-SHA256 (unpadded) of ``fields``, in key order."""
        text = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
        digest = hmac.new(self.secret, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(self, fields: Mapping[str, str], signature: str, now: float) -> None:
        """Raises :class:`MediaError` (403) for a bad signature or an expired URL."""
        if not hmac.compare_digest(self.sign(fields), signature):
            raise MediaError(403, "bad_signature", "the URL's signature does not match")
        try:
            expires = int(fields["exp"])
        except (KeyError, ValueError):
            raise MediaError(403, "bad_signature", "the URL has no expiry") from None
        if now > expires:
            raise MediaError(403, "url_expired", "the URL has expired: ask for a new one")


_KEY = re.compile(r"^[0-9a-f]{32}(\.thumb)?$")


def _key_ok(key: str) -> bool:
    return bool(_KEY.match(key))


class LocalBlobStore:
    def __init__(self, root: Path, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.root = root
        self.blobs = root / "blobs"
        self.uploads = root / "uploads"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.signer = Signer(secret)

    # --- URLs ------------------------------------------------------------------------

    def _url(self, base_url: str, key: str, fields: dict[str, str], expires_s: float) -> str:
        fields = {**fields, "key": key, "exp": str(int(self.clock() + expires_s))}
        query = {k: v for k, v in fields.items() if k != "key"}
        query["sig"] = self.signer.sign(fields)
        return f"{base_url.rstrip('/')}{ROUTE}{key}?{urlencode(query)}"

    async def upload_url(
        self, key: str, content_type: str, size: int, expires_s: float, base_url: str
    ) -> SignedRequest:
        """A signed PUT URL on this API's blob route for exactly ``size`` bytes of
        ``content_type``."""
        fields = {"op": "put", "size": str(size), "ct": content_type}
        return SignedRequest(
            self._url(base_url, key, fields, expires_s), {"Content-Type": content_type}
        )

    async def start_multipart(self, key: str, content_type: str) -> str:
        """A new upload id (a directory for its parts)."""
        upload_id = secrets.token_hex(16)
        (self.uploads / upload_id).mkdir(mode=0o700)
        return upload_id

    async def part_urls(
        self, key: str, upload_id: str, sizes: Sequence[int], expires_s: float, base_url: str
    ) -> list[SignedRequest]:
        """A signed PUT URL per part (numbered from 1), each for exactly its size."""
        return [
            SignedRequest(
                self._url(
                    base_url,
                    key,
                    {"op": "part", "upload": upload_id, "part": str(n), "size": str(size)},
                    expires_s,
                )
            )
            for n, size in enumerate(sizes, start=1)
        ]

    async def download_url(
        self, key: str, content_type: str, expires_s: float, base_url: str
    ) -> str:
        """A signed GET URL on this API's blob route, valid for ``expires_s``."""
        return self._url(base_url, key, {"op": "get", "ct": content_type}, expires_s)

    # --- the signed routes -------------------------------------------------------------

    def check(self, key: str, query: Mapping[str, str], op: str, now: float) -> dict[str, str]:
        """The signed fields of a request to the route, verified."""
        if not _key_ok(key):
            raise MediaError(404, "not_found", "no such blob")
        fields = {k: v for k, v in query.items() if k != "sig"}
        fields["key"] = key
        self.signer.verify(fields, query.get("sig", ""), now)
        if fields.get("op") != op:
            raise MediaError(403, "bad_signature", f"this URL is not for {op}")
        return fields

    async def receive(
        self,
        key: str,
        fields: Mapping[str, str],
        content_type: str | None,
        content_length: str | None,
        body: AsyncIterator[bytes],
    ) -> str:
        """Store one signed upload (a whole blob or a part) from ``body``; its ETag."""
        size = int(fields["size"])
        if fields["op"] == "put" and content_type != fields["ct"]:
            raise MediaError(
                403, "bad_signature", f"Content-Type must be {fields['ct']!r}, as signed"
            )
        if content_length is None or not content_length.isdigit():
            raise MediaError(411, "invalid_request", "send Content-Length")
        if int(content_length) > size:
            raise MediaError(413, "payload_too_large", f"this URL takes {size} bytes")
        if int(content_length) < size:
            raise MediaError(400, "invalid_request", f"this URL takes {size} bytes")
        if fields["op"] == "part":
            upload = self.uploads / fields["upload"]
            if not upload.is_dir() or not fields["part"].isdigit():
                raise MediaError(404, "not_found", "no such upload (aborted or done)")
            final = None  # named once its MD5 (the part's ETag) is known
        else:
            final = self.blobs / key
        temp = self.uploads / f"{key}.{secrets.token_hex(8)}.tmp"
        md5 = hashlib.md5(usedforsecurity=False)
        received = 0
        # Writes go to the page cache (the fsync, which waits, runs on a thread).
        out = await asyncio.to_thread(open, temp, "wb")
        try:
            async for chunk in body:
                received += len(chunk)
                if received > size:
                    raise MediaError(413, "payload_too_large", f"this URL takes {size} bytes")
                out.write(chunk)
                md5.update(chunk)
            if received != size:
                raise MediaError(400, "invalid_request", f"{received} of {size} bytes arrived")
            out.flush()
            await asyncio.to_thread(os.fsync, out.fileno())
            out.close()
            if final is None:
                final = self._place_part(upload, int(fields["part"]), md5.hexdigest(), temp)
            else:
                os.replace(temp, final)
        finally:
            out.close()
            temp.unlink(missing_ok=True)
        return f'"{md5.hexdigest()}"'

    @staticmethod
    def _place_part(upload: Path, number: int, md5: str, temp: Path) -> Path:
        """A part is kept as ``<number>.<md5>``: its ETag is in its name, so listing the
        parts never reads them; an earlier upload of the same part is dropped."""
        final = upload / f"{number:05d}.{md5}"
        os.replace(temp, final)
        for earlier in upload.glob(f"{number:05d}.*"):
            if earlier != final:
                earlier.unlink(missing_ok=True)
        return final

    def path_of(self, key: str) -> Path | None:
        """The blob's file, or None when there is none."""
        path = self.blobs / key
        return path if path.is_file() else None

    # --- the service's side ------------------------------------------------------------

    async def done_parts(self, key: str, upload_id: str) -> dict[int, str]:
        """The parts received, part number -> ETag (quoted MD5); ``{}`` for an unknown upload."""
        upload = self.uploads / upload_id
        if not upload.is_dir():
            return {}

        def scan() -> dict[int, str]:
            out = {}
            for part in sorted(upload.iterdir()):
                number, _, md5 = part.name.partition(".")
                if number.isdigit() and md5:
                    out[int(number)] = f'"{md5}"'
            return out

        return await asyncio.to_thread(scan)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        """Join the parts, in number order, into the blob and drop the upload.

        Raises :class:`UploadIncomplete` when a part is missing, its ETag differs, or the
        numbers are not 1..n."""
        upload = self.uploads / upload_id
        have = await self.done_parts(key, upload_id)
        wanted = sorted(parts)
        if not wanted or any(have.get(n) != etag.strip() for n, etag in wanted):
            raise UploadIncomplete("a part is missing or its ETag differs")
        if [n for n, _ in wanted] != list(range(1, len(wanted) + 1)):
            raise UploadIncomplete("parts must be numbered 1..n without gaps")

        def join() -> None:
            temp = self.uploads / f"{key}.{secrets.token_hex(8)}.tmp"
            try:
                with open(temp, "wb") as out:
                    for n, etag in wanted:
                        name = f"{n:05d}.{etag.strip().strip(_QUOTE)}"
                        with open(upload / name, "rb") as part:
                            shutil.copyfileobj(part, out, _CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, self.blobs / key)
            finally:
                temp.unlink(missing_ok=True)
            shutil.rmtree(upload, ignore_errors=True)

        await asyncio.to_thread(join)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Remove the upload's directory and its parts (a missing one is fine)."""
        await asyncio.to_thread(shutil.rmtree, self.uploads / upload_id, True)

    async def size_of(self, key: str) -> int | None:
        """The blob's size in bytes; None when there is none."""
        path = self.path_of(key)
        return path.stat().st_size if path is not None else None

    async def head(self, key: str, length: int) -> bytes:
        """The first ``length`` bytes; empty when there is no blob."""
        path = self.path_of(key)
        if path is None:
            return b""

        def read_head() -> bytes:
            with open(path, "rb") as f:
                return f.read(length)

        return await asyncio.to_thread(read_head)

    async def sha256(self, key: str) -> str:
        """The lowercase hex SHA-256 of the blob (read on a thread)."""
        path = self.blobs / key

        def digest() -> str:
            with open(path, "rb") as f:
                return hashlib.file_digest(f, "sha256").hexdigest()

        return await asyncio.to_thread(digest)

    async def read(self, key: str) -> bytes:
        """The whole blob."""
        return await asyncio.to_thread((self.blobs / key).read_bytes)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write ``data`` as the blob ``key`` (through a temporary file, replaced at once)."""
        temp = self.uploads / f"{key}.{secrets.token_hex(8)}.tmp"

        def write() -> None:
            temp.write_bytes(data)
            os.replace(temp, self.blobs / key)

        await asyncio.to_thread(write)

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete the blobs (missing ones, and keys that are not blob keys, are skipped)."""
        for key in keys:
            if _key_ok(key):
                (self.blobs / key).unlink(missing_ok=True)

    async def close(self) -> None:
        """Nothing to close."""
        return None
