"""Smoke test: the test environment's S3 server (SeaweedFS) works with aiobotocore and
presigned URLs (the media contract relies on a signed Content-Length being enforced)."""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import pytest
from aiobotocore.session import get_session
from botocore.config import Config

pytestmark = [pytest.mark.s3, pytest.mark.timeout(60)]


async def test_presigned_put_enforces_length_and_get_returns_bytes(testenv) -> None:  # type: ignore[no-untyped-def]
    bucket = testenv["TIDINGS_TEST_S3_BUCKET"]
    key = f"smoke/{uuid.uuid4().hex}.bin"
    body = os.urandom(500)
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    async with (
        get_session().create_client(
            "s3",
            endpoint_url=testenv["TIDINGS_TEST_S3_ENDPOINT"],
            region_name=testenv["TIDINGS_TEST_S3_REGION"],
            aws_access_key_id=testenv["TIDINGS_TEST_S3_ACCESS_KEY"],
            aws_secret_access_key=testenv["TIDINGS_TEST_S3_SECRET_KEY"],
            config=config,
        ) as s3,
        httpx.AsyncClient(timeout=20) as http,
    ):
        async with asyncio.timeout(40):
            put_url = await s3.generate_presigned_url(
                "put_object",
                Params={
                    "Bucket": bucket,
                    "Key": key,
                    "ContentType": "application/octet-stream",
                    "ContentLength": len(body),
                },
                ExpiresIn=300,
            )
            assert "content-length" in put_url.lower()
            headers = {"Content-Type": "application/octet-stream"}
            # A body of another length than the signed one is refused, shorter or longer.
            for wrong in (body[:-1], body + b"x"):
                refused = await http.put(put_url, content=wrong, headers=headers)
                assert refused.status_code == 403, refused.text
            accepted = await http.put(put_url, content=body, headers=headers)
            assert accepted.status_code == 200, accepted.text

            head = await s3.head_object(Bucket=bucket, Key=key)
            assert head["ContentLength"] == len(body)

            get_url = await s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
            )
            got = await http.get(get_url)
            assert got.status_code == 200
            assert got.content == body

            # Without a signature the server refuses (an identity exists, so no anonymous).
            anonymous = await http.get(get_url.split("?", 1)[0])
            assert anonymous.status_code == 403

            await s3.delete_object(Bucket=bucket, Key=key)
