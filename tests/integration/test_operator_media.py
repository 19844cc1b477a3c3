"""The operator's media bucket (spec.media.s3.createBucket) against the test environment's
S3 server (SeaweedFS): the bucket is created, the abort rule is put and read back, a second
run changes nothing, other rules stay, and failures are reported as the condition says.

No kube-apiserver: the S3 step is called directly with the credentials (the reconciler
reads them from the Secret)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from tidings_operator.media import ABORT_RULE_ID, client_config, ensure_bucket
from tidings_operator.media_spec import S3Spec, parse_media
from tidings_operator.reconciler import ClusterState, Reconciler, _WireFailed
from tidings_operator.spec import parse_spec
from tidings_operator.wiring import EngineRejected, EngineUnavailable

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]


def s3_spec(testenv: Mapping[str, str], bucket: str, days: int = 1) -> S3Spec:
    media = parse_media(
        {
            "s3": {
                "endpoint": testenv["TIDINGS_TEST_S3_ENDPOINT"],
                "bucket": bucket,
                "region": testenv["TIDINGS_TEST_S3_REGION"],
                "credentialsSecretRef": {"name": "s3-creds"},
                "createBucket": True,
                "abandonedUploadDays": days,
            }
        }
    )
    assert media is not None
    return media.s3


def creds(testenv: Mapping[str, str]) -> tuple[str, str]:
    return testenv["TIDINGS_TEST_S3_ACCESS_KEY"], testenv["TIDINGS_TEST_S3_SECRET_KEY"]


@pytest.fixture
async def admin(testenv: Mapping[str, str]) -> AsyncIterator[Any]:
    spec = s3_spec(testenv, "unused")
    key, secret = creds(testenv)
    async with get_session().create_client(
        "s3",
        endpoint_url=spec.endpoint,
        region_name=spec.region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=client_config(spec),
    ) as client:
        yield client


@pytest.fixture
async def bucket(admin: Any) -> AsyncIterator[str]:
    name = f"op-media-{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(ClientError):
        await admin.delete_bucket(Bucket=name)


async def rules_of(admin: Any, bucket: str) -> list[dict[str, Any]]:
    got = await admin.get_bucket_lifecycle_configuration(Bucket=bucket)
    return list(got["Rules"])


async def test_creates_the_bucket_with_the_abort_rule(
    testenv: Mapping[str, str], admin: Any, bucket: str
) -> None:
    spec = s3_spec(testenv, bucket, days=2)
    async with asyncio.timeout(60):
        outcome = await ensure_bucket(spec, *creds(testenv))
        assert (outcome.created, outcome.lifecycle_changed) == (True, True)
        await admin.head_bucket(Bucket=bucket)
        (rule,) = await rules_of(admin, bucket)
        assert rule["ID"] == ABORT_RULE_ID
        assert rule["Status"] == "Enabled"
        assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}
        # Browsers may PUT to presigned URLs and read a part's ETag.
        (cors,) = (await admin.get_bucket_cors(Bucket=bucket))["CORSRules"]
        assert "PUT" in cors["AllowedMethods"] and "ETag" in cors["ExposeHeaders"]

        # Again: the bucket is there (BucketAlreadyOwnedByYou) and the rule in place.
        again = await ensure_bucket(spec, *creds(testenv))
        assert (again.created, again.lifecycle_changed) == (False, False)
        assert "in place" in again.message

        # A rule set by hand stays when the day count changes.
        other = {
            "ID": "expire-tmp",
            "Status": "Enabled",
            "Filter": {"Prefix": "tmp/"},
            "Expiration": {"Days": 7},
        }
        await admin.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [other, rule]}
        )
        changed = await ensure_bucket(s3_spec(testenv, bucket, days=5), *creds(testenv))
        assert (changed.created, changed.lifecycle_changed) == (False, True)
        by_id = {r["ID"]: r for r in await rules_of(admin, bucket)}
        assert set(by_id) == {"expire-tmp", ABORT_RULE_ID}
        assert by_id["expire-tmp"]["Expiration"] == {"Days": 7}
        assert by_id[ABORT_RULE_ID]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 5}
        await admin.delete_bucket_lifecycle(Bucket=bucket)


async def test_media_ready_from_the_reconcilers_step(
    testenv: Mapping[str, str], admin: Any, bucket: str
) -> None:
    """The step the reconciler runs while wiring, with the Secret's content as read."""
    key, secret = creds(testenv)
    raw = {
        "image": "tidings:1",
        "kafka": {"bootstrapServers": "kafka:9092"},
        "cassandra": {"contactPoints": ["cassandra"]},
        "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
        "media": {
            "s3": {
                "endpoint": testenv["TIDINGS_TEST_S3_ENDPOINT"],
                "bucket": bucket,
                "credentialsSecretRef": {"name": "s3-creds"},
                "createBucket": True,
            }
        },
    }
    secrets = {"s3-creds": {"accessKeyId": key, "secretAccessKey": secret}}
    async with asyncio.timeout(60):
        verdict = await Reconciler._wire_media(parse_spec(raw), secrets, [])
        assert (verdict.type, verdict.status, verdict.reason) == (
            "MediaReady",
            "True",
            "BucketReady",
        )
        assert bucket in verdict.message
        assert ABORT_RULE_ID in verdict.message
        assert [r["ID"] for r in await rules_of(admin, bucket)] == [ABORT_RULE_ID]
        await admin.delete_bucket_lifecycle(Bucket=bucket)

        # Wrong credentials: MediaReady=False, retried (a Secret is fixed without a spec
        # change), and the message names the Secret.
        wrong = {"s3-creds": {"accessKeyId": key, "secretAccessKey": "not-the-secret"}}
        with pytest.raises(_WireFailed) as caught:
            await Reconciler._wire_media(parse_spec(raw), wrong, [])
        failed = caught.value
        assert failed.condition == "MediaReady"
        assert isinstance(failed.error, EngineUnavailable)
        assert failed.metrics_reason == "MediaUnavailable"
        report = failed.report(ClusterState(), "retrying in 5s")
        assert (report[-1].type, report[-1].status, report[-1].reason) == (
            "MediaReady",
            "False",
            "MediaUnavailable",
        )
        assert "s3-creds" in report[-1].message


async def test_unreachable_store_is_unavailable(testenv: Mapping[str, str]) -> None:
    media = parse_media(
        {
            "s3": {
                "endpoint": "http://127.0.0.1:1",
                "bucket": "tidings-media",
                "credentialsSecretRef": {"name": "s3-creds"},
                "createBucket": True,
            }
        }
    )
    assert media is not None
    async with asyncio.timeout(60):
        with pytest.raises(EngineUnavailable, match=r"cannot reach S3 at http://127\.0\.0\.1:1"):
            await ensure_bucket(media.s3, *creds(testenv))


async def test_a_bucket_name_the_store_refuses_is_a_spec_error(
    testenv: Mapping[str, str],
) -> None:
    """The parse refuses bad names before they reach the store; one the store refuses
    anyway (InvalidBucketName) is EngineRejected: not retried until the spec changes."""
    spec = s3_spec(testenv, "tidings-media")
    bad = S3Spec(**{**{f: getattr(spec, f) for f in S3Spec.__slots__}, "bucket": "Bad_Name"})
    async with asyncio.timeout(60):
        with pytest.raises(EngineRejected, match="Bad_Name"):
            await ensure_bucket(bad, *creds(testenv))
