"""Smoke test: cert-manager and the Gateway API CRDs of the test environment
(`e2e/env/certmanager.sh`).

Both clusters (kwok's and the real node's) have the cert-manager and Gateway API (standard
channel) CRDs; cert-manager's controller runs against the node cluster only and issues from
a CA Issuer. Every wait is bounded; nothing here can hang past the test timeout.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.kube, pytest.mark.timeout(240)]

T = TypeVar("T")

REQUEST_TIMEOUT = 15  # seconds, for every single API call

CRDS = [
    "httproutes.gateway.networking.k8s.io",
    "tlsroutes.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "certificates.cert-manager.io",
    "issuers.cert-manager.io",
]
DNS_NAMES = ["chat-0.tidings.test", "chat-1.tidings.test"]
IP_ADDRESS = "10.245.0.77"


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Poll `check` until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def versions(testenv) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    # Read first: without certmanager.env the tests fail here, loudly.
    return (
        testenv["TIDINGS_TEST_CERT_MANAGER_VERSION"],
        testenv["TIDINGS_TEST_GATEWAY_API_VERSION"],
    )


@pytest.fixture(scope="module")
def kube_api(testenv, versions) -> Iterator[client.ApiClient]:  # type: ignore[no-untyped-def]
    api_client = config.new_client_from_config(config_file=testenv["TIDINGS_TEST_KUBECONFIG"])
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture(scope="module")
def node_api(testenv, versions) -> Iterator[client.ApiClient]:  # type: ignore[no-untyped-def]
    api_client = config.new_client_from_config(config_file=testenv["TIDINGS_TEST_NODE_KUBECONFIG"])
    try:
        yield api_client
    finally:
        api_client.close()


def crd_conditions(api: client.ApiClient, name: str) -> dict[str, str]:
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(
        name, _request_timeout=REQUEST_TIMEOUT
    )
    return {c.type: c.status for c in (crd.status.conditions or [])}


@pytest.mark.parametrize("cluster", ["kube", "node"])
def test_crds_established(
    cluster: str, kube_api: client.ApiClient, node_api: client.ApiClient, versions: tuple[str, str]
) -> None:
    api = kube_api if cluster == "kube" else node_api
    ext = client.ApiextensionsV1Api(api)
    for name in CRDS:
        assert crd_conditions(api, name).get("Established") == "True", (cluster, name)
    # The standard channel's bundle version, and TLSRoute served as v1 (since Gateway API 1.5).
    tlsroute = ext.read_custom_resource_definition(
        "tlsroutes.gateway.networking.k8s.io", _request_timeout=REQUEST_TIMEOUT
    )
    annotations = tlsroute.metadata.annotations or {}
    assert annotations.get("gateway.networking.k8s.io/bundle-version") == versions[1]
    assert annotations.get("gateway.networking.k8s.io/channel") == "standard"
    assert "v1" in [v.name for v in tlsroute.spec.versions if v.served]


def make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tidings cert-manager smoke CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


@pytest.fixture
def node_namespace(node_api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(node_api)
    name = f"cm-smoke-{uuid.uuid4().hex[:10]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)),
        _request_timeout=REQUEST_TIMEOUT,
    )
    yield name
    try:
        core.delete_namespace(name, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status != 404:
            raise

    def gone() -> bool:
        try:
            core.read_namespace(name, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_for(f"namespace {name} to be deleted", gone, timeout=90)


def ready(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def test_ca_issuer_issues_certificate(
    node_api: client.ApiClient,
    node_namespace: str,
    testenv,  # type: ignore[no-untyped-def]
) -> None:
    core = client.CoreV1Api(node_api)
    custom = client.CustomObjectsApi(node_api)
    ns = node_namespace
    ca_cert, ca_key = make_ca()
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    ca_key_pem = ca_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    core.create_namespaced_secret(
        ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="smoke-ca"),
            type="kubernetes.io/tls",
            data={
                "tls.crt": base64.b64encode(ca_pem).decode(),
                "tls.key": base64.b64encode(ca_key_pem).decode(),
            },
        ),
        _request_timeout=REQUEST_TIMEOUT,
    )
    group, version = "cert-manager.io", "v1"
    issuer = {
        "apiVersion": f"{group}/{version}",
        "kind": "Issuer",
        "metadata": {"name": "smoke-ca"},
        "spec": {"ca": {"secretName": "smoke-ca"}},
    }
    custom.create_namespaced_custom_object(
        group, version, ns, "issuers", issuer, _request_timeout=REQUEST_TIMEOUT
    )
    certificate = {
        "apiVersion": f"{group}/{version}",
        "kind": "Certificate",
        "metadata": {"name": "smoke-tls"},
        "spec": {
            "secretName": "smoke-tls",
            "dnsNames": DNS_NAMES,
            "ipAddresses": [IP_ADDRESS],
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"group": group, "kind": "Issuer", "name": "smoke-ca"},
        },
    }
    custom.create_namespaced_custom_object(
        group, version, ns, "certificates", certificate, _request_timeout=REQUEST_TIMEOUT
    )

    def get(plural: str, name: str) -> dict[str, Any]:
        got: dict[str, Any] = custom.get_namespaced_custom_object(
            group, version, ns, plural, name, _request_timeout=REQUEST_TIMEOUT
        )
        return got

    wait_for("the CA Issuer to be Ready", lambda: ready(get("issuers", "smoke-ca")), timeout=60)
    wait_for(
        "the Certificate to be Ready",
        lambda: ready(get("certificates", "smoke-tls")),
        timeout=60,
    )

    secret = core.read_namespaced_secret("smoke-tls", ns, _request_timeout=REQUEST_TIMEOUT)
    assert secret.type == "kubernetes.io/tls"
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret.data["tls.crt"]))
    # Signed by our CA: the issuer name matches and the CA's key verifies the signature.
    assert leaf.issuer == ca_cert.subject
    leaf.verify_directly_issued_by(ca_cert)
    assert base64.b64decode(secret.data["ca.crt"]) == ca_pem
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(DNS_NAMES)
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(IP_ADDRESS)]
    # The key in the secret is the leaf's.
    key = serialization.load_pem_private_key(base64.b64decode(secret.data["tls.key"]), None)
    assert key.public_key() == leaf.public_key()
    now = datetime.datetime.now(datetime.UTC)
    assert leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc

    # The controller's metrics (TIDINGS_TEST_CERT_MANAGER_METRICS) report it as ready.
    metrics_url = f"http://{testenv['TIDINGS_TEST_CERT_MANAGER_METRICS']}/metrics"
    labels = ('condition="True"', 'name="smoke-tls"', f'namespace="{ns}"')

    def reported() -> bool:
        with urllib.request.urlopen(metrics_url, timeout=REQUEST_TIMEOUT) as response:
            lines = response.read().decode().splitlines()
        return any(
            line.startswith("certmanager_certificate_ready_status{")
            and line.endswith(" 1")
            and all(label in line for label in labels)
            for line in lines
        )

    wait_for(f"certmanager_certificate_ready_status {labels} = 1 in {metrics_url}", reported, 30)
