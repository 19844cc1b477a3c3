"""The media bucket (``spec.media.s3.createBucket``): create it, keep its lifecycle rule.

With ``createBucket: true`` the operator, when it wires Kafka and Cassandra
(:mod:`tidings_operator.wiring`), also:

- creates the bucket (one that exists already is fine: ``BucketAlreadyOwnedByYou``, or
  ``BucketAlreadyExists``; if it is someone else's, the lifecycle step fails with the
  store's AccessDenied and the condition says so);
- keeps a lifecycle rule :data:`ABORT_RULE_ID` that aborts multipart uploads not finished
  ``abandonedUploadDays`` after they began (a backstop: the servers' own sweeper aborts
  them sooner). Other rules on the bucket stay as they are (the configuration is read,
  the one rule put in or replaced, and written back only when it changed).

The credentials are the ones the pods use (``credentialsSecretRef``), read by the
reconciler through the Kubernetes API. Errors are :mod:`~tidings_operator.wiring`'s:
:class:`EngineUnavailable` (unreachable, timeouts, refused credentials — a Secret can be
fixed without a spec change, so those are retried) and :class:`EngineRejected` (the store
says the spec cannot work: an invalid bucket name or region).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tidings_operator.media_spec import S3Spec
from tidings_operator.wiring import EngineRejected, EngineUnavailable

__all__ = [
    "ABORT_RULE_ID",
    "S3_TIMEOUT_S",
    "MediaOutcome",
    "abort_rule",
    "client_config",
    "ensure_bucket",
    "merged_rules",
]

log = logging.getLogger(__name__)

ABORT_RULE_ID = "tidings-abort-incomplete-uploads"
S3_TIMEOUT_S = 60.0
# Codes that mean the bucket already exists (ours, or someone's).
_EXISTS = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
_NO_LIFECYCLE = ("NoSuchLifecycleConfiguration",)
# Codes that mean the spec itself cannot work.
_REJECTED = (
    "InvalidBucketName",
    "InvalidLocationConstraint",
    "IllegalLocationConstraintException",
)
_CREDENTIALS = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "403")


@dataclass(frozen=True, slots=True)
class MediaOutcome:
    bucket: str
    created: bool
    lifecycle_changed: bool
    abandoned_upload_days: int

    @property
    def message(self) -> str:
        made = "created" if self.created else "there"
        rule = "set" if self.lifecycle_changed else "in place"
        return (
            f"bucket {made}; lifecycle rule {ABORT_RULE_ID} {rule} (aborts "
            f"multipart uploads after {self.abandoned_upload_days} "
            f"day{'s' if self.abandoned_upload_days != 1 else ''})"
        )


def client_config(s3: S3Spec) -> Config:
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": s3.addressing_style},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=15,
    )


def abort_rule(days: int) -> dict[str, Any]:
    return {
        "ID": ABORT_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
    }


def merged_rules(existing: list[dict[str, Any]], days: int) -> list[dict[str, Any]] | None:
    """The bucket's rules with ours in (put in, or replacing an older one of the same ID);
    None when ours is there as wanted already (nothing to write)."""
    rule = abort_rule(days)
    others = [r for r in existing if r.get("ID") != ABORT_RULE_ID]
    ours = [r for r in existing if r.get("ID") == ABORT_RULE_ID]
    if len(ours) == 1 and _same_rule(ours[0], rule):
        return None
    return [*others, rule]


def _same_rule(have: dict[str, Any], want: dict[str, Any]) -> bool:
    abort = have.get("AbortIncompleteMultipartUpload") or {}
    prefix = (have.get("Filter") or {}).get("Prefix", have.get("Prefix", ""))
    return (
        have.get("Status") == want["Status"]
        and abort.get("DaysAfterInitiation")
        == want["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        and not prefix
        and not any(k in have for k in ("Expiration", "Transitions", "NoncurrentVersionExpiration"))
    )


# Browsers PUT and GET presigned URLs from the web client's origin, and read a part's
# ETag to complete a multipart upload. The URL's signature is the credential, so any
# origin may use one (a CORS rule is no access control).
CORS_RULES = [
    {
        "AllowedOrigins": ["*"],
        "AllowedMethods": ["GET", "PUT", "HEAD"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3600,
    }
]


async def _ensure_cors(client: Any, bucket: str) -> None:
    """Put :data:`CORS_RULES` on a bucket that has no CORS configuration (one set by
    hand is left alone)."""
    try:
        await client.get_bucket_cors(Bucket=bucket)
        return
    except ClientError as exc:
        if _code(exc) != "NoSuchCORSConfiguration":
            raise
    log.info("putting CORS rules on bucket %s", bucket)
    await client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": CORS_RULES})


def _code(exc: ClientError) -> str:
    return str((exc.response.get("Error") or {}).get("Code") or "")


def _where(s3: S3Spec) -> str:
    return f"S3 at {s3.endpoint or f'AWS ({s3.region})'}, bucket {s3.bucket}"


def _error(exc: BaseException, s3: S3Spec) -> EngineUnavailable | EngineRejected:
    where = _where(s3)
    if isinstance(exc, EngineRejected | EngineUnavailable):
        return exc
    if isinstance(exc, ClientError):
        code = _code(exc)
        if code in _REJECTED:
            return EngineRejected("s3", f"{where}: {exc}")
        if code in _CREDENTIALS:
            secret = s3.credentials.name if s3.credentials else "(none)"
            return EngineUnavailable(
                "s3",
                f"{where}: {exc} (check the credentials in Secret {secret}, and that the "
                "bucket is not someone else's)",
            )
        return EngineUnavailable("s3", f"{where}: {exc}")
    if isinstance(exc, TimeoutError):
        return EngineUnavailable("s3", f"{where} did not answer in time")
    return EngineUnavailable("s3", f"cannot reach {where}: {exc}")


async def ensure_bucket(s3: S3Spec, access_key_id: str, secret_access_key: str) -> MediaOutcome:
    """Create the bucket if missing and keep the abort rule; see the module docstring."""
    try:
        return await asyncio.wait_for(
            _ensure_bucket(s3, access_key_id, secret_access_key), S3_TIMEOUT_S
        )
    except (BotoCoreError, ClientError, OSError, TimeoutError) as exc:
        raise _error(exc, s3) from exc


async def _ensure_bucket(s3: S3Spec, access_key_id: str, secret_access_key: str) -> MediaOutcome:
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=s3.region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=client_config(s3),
    ) as client:
        created = True
        create: dict[str, Any] = {"Bucket": s3.bucket}
        if s3.region != "us-east-1":
            # AWS wants the region named for any other region (us-east-1 refuses it).
            create["CreateBucketConfiguration"] = {"LocationConstraint": s3.region}
        try:
            await client.create_bucket(**create)
            log.info("created bucket %s", s3.bucket)
        except ClientError as exc:
            if _code(exc) not in _EXISTS:
                raise
            created = False
        try:
            current = await client.get_bucket_lifecycle_configuration(Bucket=s3.bucket)
            existing: list[dict[str, Any]] = list(current.get("Rules") or [])
        except ClientError as exc:
            if _code(exc) not in _NO_LIFECYCLE:
                raise
            existing = []
        rules = merged_rules(existing, s3.abandoned_upload_days)
        if rules is not None:
            log.info("putting lifecycle rule %s on bucket %s", ABORT_RULE_ID, s3.bucket)
            await client.put_bucket_lifecycle_configuration(
                Bucket=s3.bucket, LifecycleConfiguration={"Rules": rules}
            )
        await _ensure_cors(client, s3.bucket)
        return MediaOutcome(
            bucket=s3.bucket,
            created=created,
            lifecycle_changed=rules is not None,
            abandoned_upload_days=s3.abandoned_upload_days,
        )
