"""The cluster's blob store: any S3-compatible service (AWS S3, SeaweedFS, MinIO, Ceph),
through aiobotocore.

Two clients: one on the endpoint this process reaches, for its own calls, and one on the
endpoint clients reach (``public_endpoint``), for presigning only (presigning is offline:
the signature covers the host, so a URL must be made for the host that will be asked).
Uploads are signed with their exact ``Content-Length`` (and single PUTs with their
``Content-Type``): the store itself refuses any other length.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from tidings.media.blobs import SignedRequest, UploadIncomplete
from tidings.settings import Settings

_READ_CHUNK = 1 << 20
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    def __init__(self, client: Any, presigner: Any, bucket: str, stack: AsyncExitStack) -> None:
        self.client = client
        self.presigner = presigner
        self.bucket = bucket
        self._stack = stack

    @classmethod
    async def open(cls, settings: Settings) -> S3BlobStore:
        """A store on ``media_s3_bucket``, with a second client for presigning when
        ``media_s3_public_endpoint`` differs from the endpoint.

        Raises ``ValueError`` when no bucket is set."""
        if not settings.media_s3_bucket:
            raise ValueError("TIDINGS_MEDIA_S3_BUCKET is not set")
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": settings.media_s3_addressing_style},
            retries={"max_attempts": 3, "mode": "standard"},
        )
        secret = settings.media_s3_secret_access_key
        credentials: dict[str, Any] = {}
        if settings.media_s3_access_key_id and secret is not None:
            credentials = {
                "aws_access_key_id": settings.media_s3_access_key_id,
                "aws_secret_access_key": secret.get_secret_value(),
            }
        session = get_session()
        stack = AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    endpoint_url=settings.media_s3_endpoint,
                    region_name=settings.media_s3_region,
                    config=config,
                    **credentials,
                )
            )
            public = settings.media_s3_public_endpoint or settings.media_s3_endpoint
            presigner = client
            if public != settings.media_s3_endpoint:
                presigner = await stack.enter_async_context(
                    session.create_client(
                        "s3",
                        endpoint_url=public,
                        region_name=settings.media_s3_region,
                        config=config,
                        **credentials,
                    )
                )
        except BaseException:
            await stack.aclose()
            raise
        return cls(client, presigner, settings.media_s3_bucket, stack)

    async def _presign(self, operation: str, params: dict[str, Any], expires_s: float) -> str:
        url: str = await self.presigner.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=int(expires_s)
        )
        return url

    async def upload_url(
        self, key: str, content_type: str, size: int, expires_s: float, base_url: str
    ) -> SignedRequest:
        """A presigned ``put_object`` for exactly ``size`` bytes of ``content_type``."""
        url = await self._presign(
            "put_object",
            {"Key": key, "ContentType": content_type, "ContentLength": size},
            expires_s,
        )
        return SignedRequest(url, {"Content-Type": content_type})

    async def start_multipart(self, key: str, content_type: str) -> str:
        """Create a multipart upload; its S3 upload id."""
        answer = await self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        return str(answer["UploadId"])

    async def part_urls(
        self, key: str, upload_id: str, sizes: Sequence[int], expires_s: float, base_url: str
    ) -> list[SignedRequest]:
        """A presigned ``upload_part`` per part (numbered from 1), each for exactly its size."""
        return [
            SignedRequest(
                await self._presign(
                    "upload_part",
                    {"Key": key, "UploadId": upload_id, "PartNumber": n, "ContentLength": size},
                    expires_s,
                )
            )
            for n, size in enumerate(sizes, start=1)
        ]

    async def done_parts(self, key: str, upload_id: str) -> dict[int, str]:
        """The parts S3 lists, part number -> ETag (all pages); ``{}`` for an unknown upload."""
        parts: dict[int, str] = {}
        marker = 0
        while True:
            try:
                page = await self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return parts
                raise
            for part in page.get("Parts", []):
                parts[int(part["PartNumber"])] = str(part["ETag"])
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        """Complete the upload with ``parts`` in number order.

        Raises :class:`UploadIncomplete` when S3 refuses the parts (invalid, out of order, too
        small, or the upload gone)."""
        try:
            await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in sorted(parts)]
                },
            )
        except ClientError as exc:
            if _code(exc) in {"InvalidPart", "InvalidPartOrder", "EntityTooSmall", *_MISSING}:
                raise UploadIncomplete(f"the store refused the parts: {_code(exc)}") from exc
            raise

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort the upload (one S3 no longer knows is fine)."""
        try:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise

    async def size_of(self, key: str) -> int | None:
        """The object's size in bytes; None when there is none."""
        try:
            answer = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return int(answer["ContentLength"])

    async def head(self, key: str, length: int) -> bytes:
        """The first ``length`` bytes (a ranged GET); empty when there is no object."""
        try:
            answer = await self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{length - 1}"
            )
        except ClientError as exc:
            if _code(exc) in _MISSING or _code(exc) == "InvalidRange":
                return b""
            raise
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data[:length]

    async def sha256(self, key: str) -> str:
        """The lowercase hex SHA-256 of the object, read as a stream."""
        digest = hashlib.sha256()
        answer = await self.client.get_object(Bucket=self.bucket, Key=key)
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(_READ_CHUNK):
                # hashlib lets go of the GIL for big chunks: off the event loop.
                await asyncio.to_thread(digest.update, chunk)
        return digest.hexdigest()

    async def read(self, key: str) -> bytes:
        """The whole object."""
        answer = await self.client.get_object(Bucket=self.bucket, Key=key)
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Put ``data`` as the object ``key`` with ``content_type``."""
        await self.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )

    async def download_url(
        self, key: str, content_type: str, expires_s: float, base_url: str
    ) -> str:
        """A presigned ``get_object`` that answers with ``content_type``."""
        return await self._presign(
            "get_object", {"Key": key, "ResponseContentType": content_type}, expires_s
        )

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete the objects in one ``delete_objects`` request (quiet: missing ones are fine)."""
        if keys:
            await self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            )

    async def close(self) -> None:
        """Close the S3 clients."""
        await self._stack.aclose()
