"""Media attachments (issue #18) on the real node (``e2e/env/node.sh``): the operator makes
the bucket, the pods use it, clients on the host upload and download straight to and from
the store.

A ChatCluster with ``spec.media.s3`` pointing at the test environment's SeaweedFS through
the S3 gateway it runs for pods (``TIDINGS_TEST_S3_POD_ENDPOINT``, on the pod bridge's
address, which the host reaches too), a fresh bucket per run, ``createBucket: true`` and
the credentials in a Secret. Then:

- the operator creates the bucket with its lifecycle rule (and CORS) and reports
  ``MediaReady``;
- ann uploads a 5 MB PNG (one PUT) and a 50 MB MP4 (multipart) as a client does —
  ``POST /v1/media`` to the API on the node, PUT the bytes to the presigned URL(s), which
  name the public endpoint, ``complete`` — and sends both in one message to bob;
- bob's other device gets the message with both attachments and downloads byte-identical
  files; someone outside the conversation is refused (403 ``not_a_member``);
- the objects are in the new bucket, and the bucket has the operator's rule.

Figures (times and rates of the uploads and downloads) are printed and written as JSON
into the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from behaviour._harness import another_device, befriend, error_code, new_account
from behaviour._load import record
from behaviour._media import (
    attachment,
    complete,
    download,
    mp4_of,
    new_slot,
    png_of_about,
    put_bytes,
    sha256,
)

from ._drills import Installed, api_client, installation, wait_ready
from ._node import NodeClients, Platform, condition, example_for_node

pytestmark = [pytest.mark.node, pytest.mark.s3, pytest.mark.timeout(900)]

MB = 1_000_000
SECRET = "media-s3"
ABORT_RULE_ID = "tidings-abort-incomplete-uploads"  # tidings_operator.media.ABORT_RULE_ID
ABANDONED_UPLOAD_DAYS = 2
MEDIA_READY_WITHIN_S = 240.0  # the operator's first pass: topics, keyspace, then the bucket


@dataclass(frozen=True)
class S3Site:
    """The test environment's SeaweedFS: the pods' endpoint and the host's, one identity."""

    pod_endpoint: str  # on the pod bridge's address: pods and the host reach it
    host_endpoint: str  # loopback: the host only
    access_key: str
    secret_key: str
    region: str
    bucket: str  # a fresh one, which the operator creates

    @classmethod
    def from_testenv(cls, testenv: Mapping[str, str]) -> S3Site:
        return cls(
            pod_endpoint=testenv["TIDINGS_TEST_S3_POD_ENDPOINT"],
            host_endpoint=testenv["TIDINGS_TEST_S3_ENDPOINT"],
            access_key=testenv["TIDINGS_TEST_S3_ACCESS_KEY"],
            secret_key=testenv["TIDINGS_TEST_S3_SECRET_KEY"],
            region=testenv["TIDINGS_TEST_S3_REGION"],
            bucket=f"e2e-media-{uuid.uuid4().hex[:12]}",
        )


def media_manifests(platform: Platform, s3: S3Site) -> list[dict[str, Any]]:
    """The example ChatCluster for the node, with ``spec.media.s3`` and its Secret."""
    manifests = example_for_node(platform.env, tag=platform.env.tags[0], target_connections=50)
    for doc in manifests:
        if doc["kind"] == "ChatCluster":
            doc["spec"]["media"] = {
                "s3": {
                    "endpoint": s3.pod_endpoint,
                    "publicEndpoint": s3.pod_endpoint,
                    "bucket": s3.bucket,
                    "region": s3.region,
                    "addressingStyle": "path",
                    "credentialsSecretRef": {"name": SECRET},
                    "createBucket": True,
                    "abandonedUploadDays": ABANDONED_UPLOAD_DAYS,
                }
            }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET},
        "type": "Opaque",
        "stringData": {"accessKeyId": s3.access_key, "secretAccessKey": s3.secret_key},
    }
    return [secret, *manifests]


def media_ready(installed: Installed) -> dict[str, Any] | None:
    cc = installed.chatcluster()
    return cc if condition(cc, "MediaReady").get("status") == "True" else None


@contextlib.asynccontextmanager
async def s3_admin(s3: S3Site) -> Any:
    """An S3 client of the store on the host's endpoint (not through the pods' gateway)."""
    async with get_session().create_client(
        "s3",
        endpoint_url=s3.host_endpoint,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        config=AioConfig(s3={"addressing_style": "path"}),
    ) as client:
        yield client


async def remove_bucket(s3: S3Site) -> None:
    async with s3_admin(s3) as admin:
        with contextlib.suppress(ClientError):
            listed = await admin.list_objects_v2(Bucket=s3.bucket)
            for item in listed.get("Contents", []):
                await admin.delete_object(Bucket=s3.bucket, Key=item["Key"])
            uploads = await admin.list_multipart_uploads(Bucket=s3.bucket)
            for up in uploads.get("Uploads", []):
                await admin.abort_multipart_upload(
                    Bucket=s3.bucket, Key=up["Key"], UploadId=up["UploadId"]
                )
            await admin.delete_bucket(Bucket=s3.bucket)


def urls_of(slot: dict[str, Any]) -> list[str]:
    upload = slot["upload"]
    return [upload["url"]] if upload["method"] == "PUT" else [p["url"] for p in upload["parts"]]


async def timed_upload(
    http: httpx.AsyncClient, who: Any, data: bytes, content_type: str, s3: S3Site
) -> tuple[dict[str, Any], dict[str, Any]]:
    """As a client uploads: a slot from the API, the bytes PUT to the presigned URL(s) (the
    public endpoint, the new bucket), complete. The ready media object and its figures."""
    t0 = time.monotonic()
    slot = await new_slot(http, who, data, content_type)
    urls = urls_of(slot)
    for url in urls:
        assert url.startswith(f"{s3.pod_endpoint}/{s3.bucket}/"), url
    t1 = time.monotonic()
    parts = await put_bytes(slot, data)
    t2 = time.monotonic()
    done = await complete(http, who, slot["media_id"], parts)
    t3 = time.monotonic()
    assert done.status_code == 200, done.text
    media: dict[str, Any] = done.json()
    assert media["state"] == "ready", media
    figures = {
        "bytes": len(data),
        "parts": len(urls),
        "slot_s": round(t1 - t0, 3),
        "put_s": round(t2 - t1, 3),
        "complete_s": round(t3 - t2, 3),
        "total_s": round(t3 - t0, 3),
        "put_mb_per_s": round(len(data) / MB / max(t2 - t1, 1e-6), 1),
    }
    return media, figures


# --- the drill ---------------------------------------------------------------------------


async def test_drill_media_on_the_node_bucket_upload_send_download(
    platform: Platform, testenv: Mapping[str, str], tmp_path: Path
) -> None:
    s3 = S3Site.from_testenv(testenv)
    result: dict[str, Any] = {"bucket": s3.bucket, "endpoint": s3.pod_endpoint}
    clients = NodeClients(platform)
    loop = asyncio.get_running_loop()
    try:
        with installation(platform, media_manifests(platform, s3)) as installed:
            t0 = loop.time()
            cc = await asyncio.to_thread(
                platform.wait_for,
                "condition MediaReady True",
                lambda: media_ready(installed),
                MEDIA_READY_WITHIN_S,
                2.0,
            )
            result["media_ready_s"] = round(loop.time() - t0, 1)
            media_cond = condition(cc, "MediaReady")
            assert media_cond.get("reason") == "BucketReady", media_cond
            cc = await asyncio.to_thread(wait_ready, installed, 2)
            result["cluster_ready_s"] = round(loop.time() - t0, 1)

            # The pods got the store's settings (never the secret inline).
            api = platform.get("statefulset", "-n", installed.namespace, "chat-api")
            env = {e["name"]: e for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env["TIDINGS_MEDIA_STORE"]["value"] == "s3"
            assert env["TIDINGS_MEDIA_S3_ENDPOINT"]["value"] == s3.pod_endpoint
            assert env["TIDINGS_MEDIA_S3_BUCKET"]["value"] == s3.bucket
            assert "secretKeyRef" in env["TIDINGS_MEDIA_S3_SECRET_ACCESS_KEY"]["valueFrom"]

            # The bucket: made by the operator, with its abort rule.
            async with s3_admin(s3) as admin:
                lifecycle = await admin.get_bucket_lifecycle_configuration(Bucket=s3.bucket)
                rules = {r["ID"]: r for r in lifecycle["Rules"]}
                assert ABORT_RULE_ID in rules, lifecycle
                rule = rules[ABORT_RULE_ID]
                assert rule["Status"] == "Enabled", rule
                assert rule["AbortIncompleteMultipartUpload"] == {
                    "DaysAfterInitiation": ABANDONED_UPLOAD_DAYS
                }, rule
                cors = await admin.get_bucket_cors(Bucket=s3.bucket)
                assert cors["CORSRules"], cors

            async with await api_client(installed) as http:
                ann = await new_account(http, "nann")
                bob = await new_account(http, "nbob")
                bob_laptop = await another_device(http, bob)
                carol = await new_account(http, "ncarol")
                await befriend(http, ann, bob)
                photo = png_of_about(5 * MB)
                video = mp4_of(50 * MB)
                assert len(photo) >= 5 * MB

                photo_media, result["upload_photo"] = await timed_upload(
                    http, ann, photo, "image/png", s3
                )
                video_media, result["upload_video"] = await timed_upload(
                    http, ann, video, "video/mp4", s3
                )
                assert result["upload_photo"]["parts"] == 1
                assert result["upload_video"]["parts"] > 1, "50 MB should be multipart"
                assert photo_media["thumbnail"] is True

                laptop_ws = await clients.connect(bob_laptop)
                ann_ws = await clients.connect(ann)
                sent = {
                    "type": "send",
                    "client_msg_id": uuid.uuid4().hex,
                    "to": bob.user_id,
                    "body": "from the node: a photo and a clip",
                    "attachments": [
                        attachment(photo_media, "beach.png"),
                        {**attachment(video_media, "clip.mp4"), "duration_ms": 12_000},
                    ],
                }
                t_send = loop.time()
                await ann_ws.send(sent)
                ack = await ann_ws.recv_until("ack", client_msg_id=sent["client_msg_id"])
                got = await laptop_ws.recv_until("msg", within=15, message_id=ack["message_id"])
                result["delivered_s"] = round(loop.time() - t_send, 3)
                assert got["sender_id"] == ann.user_id
                image, clip = got["attachments"]
                assert (image["media_id"], clip["media_id"]) == (
                    photo_media["media_id"],
                    video_media["media_id"],
                )
                assert image["name"] == "beach.png" and clip["name"] == "clip.mp4"
                assert (image["size"], clip["size"]) == (len(photo), len(video))

                # Bob's other device fetches both: byte-identical.
                downloads = {}
                for label, item, original in (("photo", image, photo), ("video", clip, video)):
                    described = await http.get(
                        f"/v1/media/{item['media_id']}", headers=bob_laptop.auth
                    )
                    assert described.status_code == 200, described.text
                    url = described.json()["url"]
                    assert url.startswith(f"{s3.pod_endpoint}/{s3.bucket}/"), url
                    t_get = time.monotonic()
                    fetched = await download(url)
                    took = time.monotonic() - t_get
                    assert fetched.status_code == 200, fetched.text[:300]
                    assert len(fetched.content) == len(original)
                    assert sha256(fetched.content) == sha256(original)
                    downloads[label] = {
                        "get_s": round(took, 3),
                        "mb_per_s": round(len(original) / MB / max(took, 1e-6), 1),
                    }
                result["download"] = downloads

                # Someone outside the conversation gets no URL.
                refused = await http.get(f"/v1/media/{image['media_id']}", headers=carol.auth)
                assert refused.status_code == 403, refused.text
                assert error_code(refused) == "not_a_member"

            # The blobs are in the operator's bucket, no multipart upload left open.
            async with s3_admin(s3) as admin:
                listed = await admin.list_objects_v2(Bucket=s3.bucket)
                keys = [item["Key"] for item in listed.get("Contents", [])]
                for media_id in (photo_media["media_id"], video_media["media_id"]):
                    assert any(media_id in key for key in keys), (media_id, keys)
                open_uploads = await admin.list_multipart_uploads(Bucket=s3.bucket)
                assert not open_uploads.get("Uploads"), open_uploads
                result["objects_in_bucket"] = len(keys)
            record(tmp_path, "drill-media", result)
    finally:
        await clients.close_all()
        await remove_bucket(s3)
