"""``spec.media``: where the media attachments' bytes live (issue #18), as typed values.

Only an S3-compatible store is offered to a ChatCluster (the workloads' ``local`` store
serves one process only). Unset, the operator passes nothing and the servers have no
media store (their media endpoints answer 503).

What the pods get (:func:`media_env`, the api and chat containers; the names are the
workloads' ``TIDINGS_MEDIA_*`` settings): the store, the endpoint the pods reach and the
one clients reach (presigned URLs name it), the bucket, region and addressing style, the
credentials from a Secret (``secretKeyRef``, never inline), the per-kind size caps and the
unreferenced-upload TTL when the spec sets them (unset: the servers' own defaults).

With ``s3.createBucket`` the operator also creates the bucket and keeps a lifecycle rule
on it that aborts multipart uploads abandoned for ``abandonedUploadDays``
(:mod:`tidings_operator.media`). The defaults here are the CRD's (pinned by
``tests/unit/operator/test_operator_media_spec.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ADDRESSING_STYLES",
    "MediaError",
    "MediaLimits",
    "MediaSpec",
    "S3Credentials",
    "S3Spec",
    "media_env",
    "parse_media",
]

ADDRESSING_STYLES = ("path", "virtual", "auto")
# S3's bucket naming rules (the strict, DNS-compatible ones every S3 implementation takes).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_REGION = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ENDPOINT = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
# A Secret's key (a ConfigMap/Secret data key).
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")

MAX_BYTES = 5 << 40  # S3's largest object: 5 TiB
MAX_ABANDONED_UPLOAD_DAYS = 3650
MAX_UNREFERENCED_TTL_S = 366 * 86_400


class MediaError(ValueError):
    """``spec.media`` cannot work as written (spec.SpecError wraps it)."""


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """The Secret with the access key id and the secret access key, and their keys."""

    name: str
    access_key_id_key: str = "accessKeyId"
    secret_access_key_key: str = "secretAccessKey"


@dataclass(frozen=True, slots=True)
class S3Spec:
    bucket: str
    # None: AWS's endpoint for the region (what the pods reach).
    endpoint: str | None = None
    # None: the same as endpoint (what clients reach; presigned URLs name it).
    public_endpoint: str | None = None
    region: str = "us-east-1"
    addressing_style: str = "path"
    # None: the pods use the default AWS credential chain (e.g. a workload identity).
    credentials: S3Credentials | None = None
    create_bucket: bool = False
    abandoned_upload_days: int = 1


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """Per-kind caps in bytes; None: the servers' default."""

    image_bytes: int | None = None
    video_bytes: int | None = None
    audio_bytes: int | None = None
    file_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class MediaSpec:
    s3: S3Spec
    limits: MediaLimits = field(default_factory=MediaLimits)
    # None: the servers' default.
    unreferenced_ttl_s: int | None = None

    def secret_names(self) -> list[str]:
        return [self.s3.credentials.name] if self.s3.credentials else []


def _obj(raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MediaError(f"{path}.{key} must be an object")
    return value


def _str(raw: Mapping[str, Any], key: str, path: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MediaError(f"{path}.{key} must be a string, got {value!r}")
    return value


def _int(raw: Mapping[str, Any], key: str, path: str, lo: int, hi: int) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MediaError(f"{path}.{key} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise MediaError(f"{path}.{key} must be within {lo}..{hi}, got {value}")
    return value


def _endpoint(raw: Mapping[str, Any], key: str, path: str) -> str | None:
    value = _str(raw, key, path)
    if not value:
        return None
    if not _ENDPOINT.match(value):
        raise MediaError(
            f"{path}.{key} {value!r} must be an http:// or https:// URL (scheme and host, "
            "e.g. http://seaweedfs.storage:8333)"
        )
    return value.rstrip("/")


def _bucket(raw: Mapping[str, Any], path: str) -> str:
    bucket = _str(raw, "bucket", path)
    if not bucket:
        raise MediaError(f"{path}.bucket is required")
    if not _BUCKET.match(bucket) or ".." in bucket or _IPV4.match(bucket):
        raise MediaError(
            f"{path}.bucket {bucket!r} is not a valid S3 bucket name (3 to 63 lower-case "
            "letters, digits, '.' and '-', starting and ending with a letter or digit)"
        )
    return bucket


def _credentials(raw: Mapping[str, Any], path: str) -> S3Credentials | None:
    ref = _obj(raw, "credentialsSecretRef", path)
    if ref is None:
        return None
    here = f"{path}.credentialsSecretRef"
    name = _str(ref, "name", here)
    if not name:
        raise MediaError(f"{here}.name is required")
    d = S3Credentials(name)
    keys = []
    for key, default in (
        ("accessKeyIdKey", d.access_key_id_key),
        ("secretAccessKeyKey", d.secret_access_key_key),
    ):
        value = _str(ref, key, here) or default
        if not _SECRET_KEY.match(value):
            raise MediaError(f"{here}.{key} {value!r} is not a valid Secret key")
        keys.append(value)
    return S3Credentials(name, keys[0], keys[1])


def _s3(raw: Mapping[str, Any]) -> S3Spec:
    p = "spec.media.s3"
    d = S3Spec(bucket="")
    region = _str(raw, "region", p) or d.region
    if not _REGION.match(region):
        raise MediaError(f"{p}.region {region!r} is not a region name")
    style = _str(raw, "addressingStyle", p) or d.addressing_style
    if style not in ADDRESSING_STYLES:
        raise MediaError(f"{p}.addressingStyle {style!r} is not path, virtual or auto")
    create = raw.get("createBucket", d.create_bucket)
    if not isinstance(create, bool):
        raise MediaError(f"{p}.createBucket must be true or false")
    days = _int(raw, "abandonedUploadDays", p, 1, MAX_ABANDONED_UPLOAD_DAYS)
    s3 = S3Spec(
        bucket=_bucket(raw, p),
        endpoint=_endpoint(raw, "endpoint", p),
        public_endpoint=_endpoint(raw, "publicEndpoint", p),
        region=region,
        addressing_style=style,
        credentials=_credentials(raw, p),
        create_bucket=create,
        abandoned_upload_days=d.abandoned_upload_days if days is None else days,
    )
    if s3.create_bucket and s3.credentials is None:
        raise MediaError(
            f"{p}.createBucket needs {p}.credentialsSecretRef: the operator creates the "
            "bucket with those credentials"
        )
    return s3


def parse_media(raw: Mapping[str, Any] | None) -> MediaSpec | None:
    """The typed ``spec.media``; None when unset. :class:`MediaError` when it cannot work."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise MediaError("spec.media must be an object")
    s3 = _obj(raw, "s3", "spec.media")
    if s3 is None:
        raise MediaError(
            "spec.media.s3 is required: a ChatCluster keeps its media in an S3-compatible "
            "store (leave spec.media out for no media)"
        )
    limits = _obj(raw, "limits", "spec.media") or {}
    lp = "spec.media.limits"
    return MediaSpec(
        s3=_s3(s3),
        limits=MediaLimits(
            image_bytes=_int(limits, "imageBytes", lp, 1, MAX_BYTES),
            video_bytes=_int(limits, "videoBytes", lp, 1, MAX_BYTES),
            audio_bytes=_int(limits, "audioBytes", lp, 1, MAX_BYTES),
            file_bytes=_int(limits, "fileBytes", lp, 1, MAX_BYTES),
        ),
        unreferenced_ttl_s=_int(
            raw, "unreferencedTTLSeconds", "spec.media", 1, MAX_UNREFERENCED_TTL_S
        ),
    )


def _value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def media_env(media: MediaSpec | None) -> list[dict[str, Any]]:
    """The api and chat containers' ``TIDINGS_MEDIA_*`` environment; none without media."""
    if media is None:
        return []
    s3 = media.s3
    env = [_value("TIDINGS_MEDIA_STORE", "s3")]
    if s3.endpoint:
        env.append(_value("TIDINGS_MEDIA_S3_ENDPOINT", s3.endpoint))
    if s3.public_endpoint:
        env.append(_value("TIDINGS_MEDIA_S3_PUBLIC_ENDPOINT", s3.public_endpoint))
    env += [
        _value("TIDINGS_MEDIA_S3_BUCKET", s3.bucket),
        _value("TIDINGS_MEDIA_S3_REGION", s3.region),
        _value("TIDINGS_MEDIA_S3_ADDRESSING_STYLE", s3.addressing_style),
    ]
    if s3.credentials is not None:
        ref = s3.credentials
        env += [
            _secret("TIDINGS_MEDIA_S3_ACCESS_KEY_ID", ref.name, ref.access_key_id_key),
            _secret("TIDINGS_MEDIA_S3_SECRET_ACCESS_KEY", ref.name, ref.secret_access_key_key),
        ]
    limits = media.limits
    for name, value in (
        ("TIDINGS_MEDIA_MAX_IMAGE_BYTES", limits.image_bytes),
        ("TIDINGS_MEDIA_MAX_VIDEO_BYTES", limits.video_bytes),
        ("TIDINGS_MEDIA_MAX_AUDIO_BYTES", limits.audio_bytes),
        ("TIDINGS_MEDIA_MAX_FILE_BYTES", limits.file_bytes),
    ):
        if value is not None:
            env.append(_value(name, str(value)))
    if media.unreferenced_ttl_s is not None:
        env.append(_value("TIDINGS_MEDIA_UNREFERENCED_TTL_S", str(media.unreferenced_ttl_s)))
    return env
