"""TLS to Kafka and Cassandra: the settings, their contradictions, and bad files.

The connections themselves are tested against the test environment's engines in
tests/integration/test_engine_tls.py; here, what a wrong configuration says at start.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from behaviour._certs import TestCA
from tidings.kafka_config import kafka_client_options, kafka_ssl_context
from tidings.settings import Settings, SettingsError
from tidings.storage.cassandra import io as cassandra_io
from tidings.storage.cassandra import io_async as cassandra_io_async


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    return TestCA.new("first CA").write(tmp_path / "ca.crt")


def bad_files(tmp_path: Path) -> dict[str, Path]:
    """CA files that cannot work, by what is wrong with them."""
    leaf = TestCA.new().issue("127.0.0.1")
    (tmp_path / "empty.crt").write_text("")
    (tmp_path / "garbage.crt").write_text("not a certificate\n")
    (tmp_path / "key-only.pem").write_bytes(leaf.key_pem)
    (tmp_path / "broken.crt").write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    return {name: tmp_path / name for name in BAD}


BAD = ["missing.crt", "empty.crt", "garbage.crt", "key-only.pem", "broken.crt"]


# --- the settings ------------------------------------------------------------------------


def test_the_variables_the_operator_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "TIDINGS_KAFKA_SECURITY_PROTOCOL": "SSL",
        "TIDINGS_KAFKA_SSL_CAFILE": "/etc/tidings/kafka-ca/ca.crt",
        "TIDINGS_KAFKA_SSL_CERTFILE": "/etc/tidings/kafka-user/user.crt",
        "TIDINGS_KAFKA_SSL_KEYFILE": "/etc/tidings/kafka-user/user.key",
        "TIDINGS_CASSANDRA_SSL": "true",
        "TIDINGS_CASSANDRA_SSL_CAFILE": "/etc/tidings/cassandra-ca/ca.crt",
        "TIDINGS_CASSANDRA_SSL_VERIFY_HOSTNAME": "true",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.kafka_ssl_cafile == "/etc/tidings/kafka-ca/ca.crt"
    assert settings.kafka_ssl_certfile == "/etc/tidings/kafka-user/user.crt"
    assert settings.kafka_ssl_keyfile == "/etc/tidings/kafka-user/user.key"
    assert settings.cassandra_ssl is True
    assert settings.cassandra_ssl_cafile == "/etc/tidings/cassandra-ca/ca.crt"
    assert settings.cassandra_ssl_verify_hostname is True


def test_tls_is_off_by_default() -> None:
    settings = Settings()
    assert settings.cassandra_ssl is False
    assert cassandra_io.ssl_context(settings) is None
    assert cassandra_io_async.ssl_options(settings) == {}
    assert "ssl_context" not in kafka_client_options(settings)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"kafka_ssl_cafile": "/ca.crt"}, "TIDINGS_KAFKA_SSL_CAFILE"),
        (
            {"kafka_ssl_certfile": "/u.crt", "kafka_ssl_keyfile": "/u.key"},
            "TIDINGS_KAFKA_SSL_CERTFILE",
        ),
        (
            {"kafka_ssl_cafile": "/ca.crt", "kafka_security_protocol": "SASL_PLAINTEXT"},
            "SASL_PLAINTEXT, which does not use TLS",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/u.key"},
            "TIDINGS_KAFKA_SSL_KEYFILE is set but TIDINGS_KAFKA_SSL_CERTFILE is not",
        ),
        ({"cassandra_ssl_cafile": "/ca.crt"}, "TIDINGS_CASSANDRA_SSL is not"),
        ({"cassandra_ssl_verify_hostname": True}, "TIDINGS_CASSANDRA_SSL_VERIFY_HOSTNAME"),
        ({"cassandra_ssl": True}, "TIDINGS_CASSANDRA_SSL needs TIDINGS_CASSANDRA_SSL_CAFILE"),
    ],
)
def test_contradictions_are_refused_naming_the_setting(
    given: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**given)  # type: ignore[arg-type]
    assert named in str(refused.value)


def test_consistent_tls_settings_are_accepted() -> None:
    Settings(kafka_security_protocol="SSL")  # the system's CAs
    Settings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile="/ca.crt")
    Settings(kafka_security_protocol="SSL", kafka_ssl_certfile="/both-in-one.pem")
    Settings(cassandra_ssl=True, cassandra_ssl_cafile="/ca.crt")


# --- Kafka: the files ------------------------------------------------------------------


def kafka(**tls: object) -> Settings:
    return Settings(kafka_security_protocol="SSL", **tls)  # type: ignore[arg-type]


def test_kafka_trusts_every_certificate_of_the_bundle(tmp_path: Path) -> None:
    first, second = TestCA.new("first CA"), TestCA.new("second CA")
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(first.cert_pem + second.cert_pem)
    context = kafka_client_options(kafka(kafka_ssl_cafile=str(bundle)))["ssl_context"]
    subjects = {dict(rdn[0] for rdn in c["subject"])["commonName"] for c in context.get_ca_certs()}
    assert subjects == {"first CA", "second CA"}
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_kafka_ca_file_names_the_setting_and_the_file(tmp_path: Path, bad: str) -> None:
    path = bad_files(tmp_path)[bad]
    with pytest.raises(SettingsError) as refused:
        kafka_ssl_context(kafka(kafka_ssl_cafile=str(path)))
    assert f"TIDINGS_KAFKA_SSL_CAFILE={path}" in str(refused.value)


def test_kafka_client_certificate_and_key(tmp_path: Path, ca_file: Path) -> None:
    ca = TestCA.new()
    leaf, stranger = ca.issue("tidings"), ca.issue("someone-else")
    leaf.write(tmp_path / "user.crt", tmp_path / "user.key")
    stranger.write(tmp_path / "other.crt", tmp_path / "other.key")
    kafka_ssl_context(
        kafka(
            kafka_ssl_cafile=str(ca_file),
            kafka_ssl_certfile=str(tmp_path / "user.crt"),
            kafka_ssl_keyfile=str(tmp_path / "user.key"),
        )
    )
    # A key that is not the certificate's: refused, naming both files.
    with pytest.raises(SettingsError) as refused:
        kafka_ssl_context(
            kafka(
                kafka_ssl_cafile=str(ca_file),
                kafka_ssl_certfile=str(tmp_path / "user.crt"),
                kafka_ssl_keyfile=str(tmp_path / "other.key"),
            )
        )
    assert f"TIDINGS_KAFKA_SSL_CERTFILE={tmp_path / 'user.crt'}" in str(refused.value)
    assert f"TIDINGS_KAFKA_SSL_KEYFILE={tmp_path / 'other.key'}" in str(refused.value)


# --- Cassandra: the files and both drivers' options --------------------------------------


def cassandra(cafile: Path, *, verify_hostname: bool = False) -> Settings:
    return Settings(
        cassandra_ssl=True,
        cassandra_ssl_cafile=str(cafile),
        cassandra_ssl_verify_hostname=verify_hostname,
    )


def test_cassandra_trusts_every_certificate_of_the_bundle(tmp_path: Path) -> None:
    first, second = TestCA.new("first CA"), TestCA.new("second CA")
    bundle = tmp_path / "bundle.crt"
    # Comments between the certificates (as in distribution bundles) are left out.
    bundle.write_bytes(b"# first\n" + first.cert_pem + b"# second \xc3\xa9\n" + second.cert_pem)
    settings = cassandra(bundle)

    pem = cassandra_io.trusted_ca_pem(settings)
    assert pem == (first.cert_pem + second.cert_pem).decode()

    context = cassandra_io.ssl_context(settings)
    assert context is not None
    assert len(context.get_ca_certs()) == 2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False  # the chain only, by default

    options = cassandra_io_async.ssl_options(settings)
    assert options["ssl_enabled"] is True
    assert options["ssl_trusted_cert"] == pem
    assert options["ssl_verify_flags"].value == 0x01  # CASS_SSL_VERIFY_PEER_CERT


def test_cassandra_hostname_verification_in_both_drivers(ca_file: Path) -> None:
    settings = cassandra(ca_file, verify_hostname=True)
    context = cassandra_io.ssl_context(settings)
    assert context is not None and context.check_hostname is True
    # PEER_CERT | PEER_IDENTITY: the chain and the node's address.
    assert cassandra_io_async.ssl_options(settings)["ssl_verify_flags"].value == 0x03


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_cassandra_ca_file_names_the_setting_and_the_file(tmp_path: Path, bad: str) -> None:
    settings = cassandra(bad_files(tmp_path)[bad])
    expected = f"TIDINGS_CASSANDRA_SSL_CAFILE={tmp_path / bad}"
    with pytest.raises(SettingsError, match=expected):
        cassandra_io.build_cluster(settings)  # migrations' driver
    with pytest.raises(SettingsError, match=expected):
        cassandra_io_async.ssl_options(settings)  # the message store's
