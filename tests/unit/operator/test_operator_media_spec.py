"""``spec.media`` (issue #18): the parse, its defaults (the CRD's), the pods' environment,
the specs that cannot work, the bucket's lifecycle rule and the MediaReady condition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tidings_operator import names
from tidings_operator.builders import Owner, build_all
from tidings_operator.media import ABORT_RULE_ID, abort_rule, merged_rules
from tidings_operator.media_spec import (
    MediaError,
    S3Credentials,
    media_env,
    parse_media,
)
from tidings_operator.reconciler import wiring_key
from tidings_operator.report import summary
from tidings_operator.spec import ClusterSpec, SpecError, parse_spec

CRD = Path(__file__).resolve().parents[3] / "crds" / "chatclusters.tidings.dev.yaml"
OWNER: Owner = {"name": "demo", "namespace": "chat", "uid": "0000-1111"}

S3 = {
    "endpoint": "http://seaweedfs.storage:8333",
    "publicEndpoint": "https://media.example.com",
    "bucket": "tidings-media",
    "credentialsSecretRef": {"name": "s3-creds"},
}


def spec(media: Any = None, **overrides: Any) -> ClusterSpec:
    raw: dict[str, Any] = {
        "image": "tidings:1",
        "kafka": {"bootstrapServers": "kafka:9092"},
        "cassandra": {"contactPoints": ["cassandra"]},
        "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
        "jwtSecretRef": {"name": "jwt", "key": "secret"},
        **overrides,
    }
    if media is not None:
        raw["media"] = media
    return parse_spec(raw)


def media_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    # The stored version; the others share its schema (test_operator_crd.py).
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    node: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return dict(node["properties"]["media"])


def env_by_name(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container["env"]}


def containers(s: ClusterSpec) -> dict[str, dict[str, Any]]:
    out = {}
    for child in build_all(OWNER, s, chat_replicas=2, inbox_partitions=64):
        if child["kind"] in ("StatefulSet", "Deployment"):
            (container,) = child["spec"]["template"]["spec"]["containers"]
            out[container["name"]] = container
    return out


def test_defaults_are_the_crds() -> None:
    s3 = media_schema()["properties"]["s3"]["properties"]
    media = parse_media({"s3": {"bucket": "b-1"}})
    assert media is not None
    assert media.s3.region == s3["region"]["default"] == "us-east-1"
    assert media.s3.addressing_style == s3["addressingStyle"]["default"] == "path"
    assert media.s3.create_bucket is s3["createBucket"]["default"] is False
    assert media.s3.abandoned_upload_days == s3["abandonedUploadDays"]["default"] == 1
    creds = s3["credentialsSecretRef"]["properties"]
    ref = S3Credentials("x")
    assert ref.access_key_id_key == creds["accessKeyIdKey"]["default"] == "accessKeyId"
    assert ref.secret_access_key_key == creds["secretAccessKeyKey"]["default"]
    assert media.s3.endpoint is None and media.s3.public_endpoint is None
    assert media.s3.credentials is None
    assert media.unreferenced_ttl_s is None
    assert media.limits.image_bytes is None


def test_crd_bounds_match_the_parse() -> None:
    schema = media_schema()
    assert schema["required"] == ["s3"]
    s3 = schema["properties"]["s3"]
    assert s3["required"] == ["bucket"]
    assert s3["properties"]["addressingStyle"]["enum"] == ["path", "virtual", "auto"]
    days = s3["properties"]["abandonedUploadDays"]
    parse_media({"s3": {"bucket": "bkt", "abandonedUploadDays": days["maximum"]}})
    with pytest.raises(MediaError):
        parse_media({"s3": {"bucket": "bkt", "abandonedUploadDays": days["maximum"] + 1}})
    ttl = schema["properties"]["unreferencedTTLSeconds"]
    parse_media({"s3": {"bucket": "bkt"}, "unreferencedTTLSeconds": ttl["maximum"]})
    with pytest.raises(MediaError):
        parse_media({"s3": {"bucket": "bkt"}, "unreferencedTTLSeconds": ttl["maximum"] + 1})
    for kind in ("imageBytes", "videoBytes", "audioBytes", "fileBytes"):
        bound = schema["properties"]["limits"]["properties"][kind]
        parse_media({"s3": {"bucket": "bkt"}, "limits": {kind: bound["maximum"]}})
        with pytest.raises(MediaError):
            parse_media({"s3": {"bucket": "bkt"}, "limits": {kind: bound["minimum"] - 1}})


def test_no_media_no_environment() -> None:
    s = spec()
    assert s.media is None
    assert media_env(None) == []
    for container in containers(s).values():
        assert not [e for e in container["env"] if e["name"].startswith("TIDINGS_MEDIA_")]
    assert "s3-creds" not in s.secret_names()


def test_api_and_chat_get_the_media_settings_credentials_by_secret_ref() -> None:
    s = spec(
        {
            "s3": {
                **S3,
                "region": "eu-central-1",
                "addressingStyle": "virtual",
                "credentialsSecretRef": {
                    "name": "s3-creds",
                    "accessKeyIdKey": "AK",
                    "secretAccessKeyKey": "SK",
                },
            },
            "limits": {"imageBytes": 1000, "fileBytes": 2000},
            "unreferencedTTLSeconds": 3600,
        }
    )
    assert "s3-creds" in s.secret_names()
    found = containers(s)
    for component in (names.API, names.CHAT):
        env = env_by_name(found[component])
        values = {k: e.get("value") for k, e in env.items() if k.startswith("TIDINGS_MEDIA_")}
        assert values == {
            "TIDINGS_MEDIA_STORE": "s3",
            "TIDINGS_MEDIA_S3_ENDPOINT": "http://seaweedfs.storage:8333",
            "TIDINGS_MEDIA_S3_PUBLIC_ENDPOINT": "https://media.example.com",
            "TIDINGS_MEDIA_S3_BUCKET": "tidings-media",
            "TIDINGS_MEDIA_S3_REGION": "eu-central-1",
            "TIDINGS_MEDIA_S3_ADDRESSING_STYLE": "virtual",
            "TIDINGS_MEDIA_S3_ACCESS_KEY_ID": None,
            "TIDINGS_MEDIA_S3_SECRET_ACCESS_KEY": None,
            "TIDINGS_MEDIA_MAX_IMAGE_BYTES": "1000",
            "TIDINGS_MEDIA_MAX_FILE_BYTES": "2000",
            "TIDINGS_MEDIA_UNREFERENCED_TTL_S": "3600",
        }
        assert env["TIDINGS_MEDIA_S3_ACCESS_KEY_ID"]["valueFrom"] == {
            "secretKeyRef": {"name": "s3-creds", "key": "AK"}
        }
        assert env["TIDINGS_MEDIA_S3_SECRET_ACCESS_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "s3-creds", "key": "SK"}
        }
    # Not the push servers, and no secret in the shared ConfigMap.
    assert not [e for e in found[names.PUSH]["env"] if e["name"].startswith("TIDINGS_MEDIA_")]
    config_map = build_all(OWNER, s, chat_replicas=2, inbox_partitions=64)[0]
    assert config_map["kind"] == "ConfigMap"
    assert not [k for k in config_map["data"] if k.startswith("TIDINGS_MEDIA_")]


def test_unset_optionals_are_not_passed() -> None:
    media = parse_media({"s3": {"bucket": "tidings-media"}})
    env = {e["name"]: e.get("value") for e in media_env(media)}
    assert env == {
        "TIDINGS_MEDIA_STORE": "s3",
        "TIDINGS_MEDIA_S3_BUCKET": "tidings-media",
        "TIDINGS_MEDIA_S3_REGION": "us-east-1",
        "TIDINGS_MEDIA_S3_ADDRESSING_STYLE": "path",
    }


def test_the_environment_parses_as_the_workloads_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tidings.settings import Settings

    media = parse_media(
        {
            "s3": S3,
            "limits": {"imageBytes": 1, "videoBytes": 2, "audioBytes": 3, "fileBytes": 4},
            "unreferencedTTLSeconds": 60,
        }
    )
    for entry in media_env(media):
        # A secretKeyRef is resolved by the kubelet; stand in for it.
        value = entry.get("value", f"from-{entry['name']}")
        monkeypatch.setenv(entry["name"], value)
    settings = Settings()
    assert settings.media_store == "s3"
    assert settings.media_s3_endpoint == "http://seaweedfs.storage:8333"
    assert settings.media_s3_public_endpoint == "https://media.example.com"
    assert settings.media_s3_bucket == "tidings-media"
    assert settings.media_s3_region == "us-east-1"
    assert settings.media_s3_addressing_style == "path"
    assert settings.media_s3_access_key_id == "from-TIDINGS_MEDIA_S3_ACCESS_KEY_ID"
    assert settings.media_s3_secret_access_key is not None
    assert (
        settings.media_max_image_bytes,
        settings.media_max_video_bytes,
        settings.media_max_audio_bytes,
        settings.media_max_file_bytes,
    ) == (1, 2, 3, 4)
    assert settings.media_unreferenced_ttl_s == 60


@pytest.mark.parametrize(
    ("media", "says"),
    [
        ({}, "spec.media.s3 is required"),
        ({"s3": {}}, "spec.media.s3.bucket is required"),
        ({"s3": {"bucket": "Tidings_Media"}}, "not a valid S3 bucket name"),
        ({"s3": {"bucket": "ab"}}, "not a valid S3 bucket name"),
        ({"s3": {"bucket": "a..b"}}, "not a valid S3 bucket name"),
        ({"s3": {"bucket": "192.168.1.1"}}, "not a valid S3 bucket name"),
        ({"s3": {"bucket": "b-1", "endpoint": "seaweedfs:8333"}}, "http:// or https://"),
        ({"s3": {"bucket": "b-1", "publicEndpoint": "ftp://x"}}, "http:// or https://"),
        ({"s3": {"bucket": "b-1", "addressingStyle": "dns"}}, "not path, virtual or auto"),
        ({"s3": {"bucket": "b-1", "region": "us east"}}, "not a region name"),
        ({"s3": {"bucket": "b-1", "createBucket": "yes"}}, "true or false"),
        ({"s3": {"bucket": "b-1", "createBucket": True}}, "needs spec.media.s3.credentials"),
        ({"s3": {"bucket": "b-1", "abandonedUploadDays": 0}}, "within 1..3650"),
        ({"s3": {"bucket": "b-1", "credentialsSecretRef": {}}}, "name is required"),
        (
            {
                "s3": {
                    "bucket": "b-1",
                    "credentialsSecretRef": {"name": "s", "accessKeyIdKey": "a b"},
                }
            },
            "not a valid Secret key",
        ),
        ({"s3": {"bucket": "b-1"}, "limits": {"imageBytes": 0}}, "within 1.."),
        ({"s3": {"bucket": "b-1"}, "limits": {"imageBytes": "1Mi"}}, "must be an integer"),
        ({"s3": {"bucket": "b-1"}, "unreferencedTTLSeconds": True}, "must be an integer"),
        ({"s3": "bucket"}, "spec.media.s3 must be an object"),
        ("s3", "spec.media must be an object"),
    ],
)
def test_specs_that_cannot_work(media: Any, says: str) -> None:
    with pytest.raises(SpecError, match=says.replace(".", r"\.").replace("(", r"\(")):
        spec(media)


def test_endpoints_lose_a_trailing_slash() -> None:
    media = parse_media({"s3": {"bucket": "b-1", "endpoint": "http://s3.local:8333/"}})
    assert media is not None and media.s3.endpoint == "http://s3.local:8333"


def test_wiring_key_follows_the_bucket_not_the_pods_only_fields() -> None:
    base = wiring_key(spec({"s3": S3}))
    assert base != wiring_key(spec())
    assert base != wiring_key(spec({"s3": {**S3, "createBucket": True}}))
    assert base != wiring_key(spec({"s3": {**S3, "bucket": "other"}}))
    assert base == wiring_key(spec({"s3": {**S3, "publicEndpoint": "https://cdn.example"}}))
    assert base == wiring_key(spec({"s3": S3, "limits": {"imageBytes": 5}}))


def test_the_abort_rule_is_merged_with_other_rules() -> None:
    mine = abort_rule(2)
    assert mine == {
        "ID": ABORT_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
    }
    assert merged_rules([], 2) == [mine]
    other = {"ID": "expire-tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}}
    assert merged_rules([other], 2) == [other, mine]
    # In place already: nothing to write.
    assert merged_rules([other, abort_rule(2)], 2) is None
    # Another day count (or a disabled rule) is replaced, the other rules kept.
    assert merged_rules([abort_rule(1), other], 2) == [other, mine]
    disabled = {**abort_rule(2), "Status": "Disabled"}
    assert merged_rules([disabled], 2) == [mine]


def test_ready_takes_media_ready_only_once_written() -> None:
    ok = [
        {"type": "KafkaReady", "status": "True", "reason": "TopicsReady"},
        {"type": "CassandraReady", "status": "True", "reason": "SchemaReady"},
        {"type": "ChatServersReady", "status": "True", "reason": "AllReady"},
    ]
    _, ready = summary(ok, [], None)
    assert ready.status == "True"
    failing = {
        "type": "MediaReady",
        "status": "False",
        "reason": "MediaUnavailable",
        "message": "cannot reach S3",
    }
    _, ready = summary([*ok, failing], [], None)
    assert (ready.status, ready.reason) == ("False", "MediaUnavailable")
    assert "MediaReady: cannot reach S3" in ready.message
    fine = {**failing, "status": "True", "reason": "BucketReady"}
    _, ready = summary([*ok, fine], [], None)
    assert ready.status == "True"


def test_the_example_is_one_the_operator_accepts() -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "media" / "chatcluster-s3.yaml"
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
    (cluster,) = [d for d in docs if d["kind"] == "ChatCluster"]
    s = parse_spec(cluster["spec"])
    assert s.media is not None and s.media.s3.create_bucket
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs if d["kind"] == "Secret"}
    creds = s.media.s3.credentials
    assert creds is not None and set(secrets) == {creds.name}
    assert {creds.access_key_id_key, creds.secret_access_key_key} <= set(secrets[creds.name])
    env = {e["name"] for e in containers(s)[names.API]["env"]}
    assert {"TIDINGS_MEDIA_STORE", "TIDINGS_MEDIA_S3_ACCESS_KEY_ID"} <= env
