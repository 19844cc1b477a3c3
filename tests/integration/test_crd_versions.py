"""The ChatCluster CRD's two versions against the real kube-apiserver (docs/upgrading.md).

v1beta1 is served beside v1alpha1 with conversion ``None`` and one schema; objects stay
stored as v1alpha1. What a user upgrading relies on:

- an object written before the upgrade (a CRD with only v1alpha1) reads the same through
  v1beta1 after ``kubectl apply --server-side`` of the new CRD, without being rewritten
  (same resourceVersion, ``storedVersions`` still ``[v1alpha1]``), and can be changed
  through v1beta1;
- the later storage switch docs/upgrading.md describes works: an empty patch rewrites an
  object at the new storage version, and ``storedVersions`` can then drop v1alpha1;
- the immutability rules (``kafka.topicPrefix``, ``cassandra.keyspace``) hold through
  v1beta1 too, and an object made through v1beta1 reads the same through v1alpha1.

The upgrade is rehearsed on a renamed copy of the CRD (its own API group), so the real
``chatclusters.tidings.dev`` that other tests use at the same time is never downgraded;
the real file's v1beta1 is then checked on the real CRD, applied as the docs say.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.kube, pytest.mark.timeout(240)]

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "chatclusters.tidings.dev.yaml"
EXAMPLE = REPO / "examples" / "chatcluster.yaml"
PLURAL = "chatclusters"
REQUEST_TIMEOUT = 15  # seconds, for every single API call
COMMAND_TIMEOUT = 90  # seconds, for one kubectl run
FIELD_MANAGER = "tidings-crd-version-tests"


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def real_crd() -> dict[str, Any]:
    # JSON round trip: the versions share their schema (YAML anchors) as one object here.
    crd: dict[str, Any] = json.loads(json.dumps(yaml.safe_load(CRD_FILE.read_text())))
    return crd


def example_spec() -> dict[str, Any]:
    """The example ChatCluster's spec, with an identity (topics, keyspace) of its own."""
    (cluster,) = [
        d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "ChatCluster"
    ]
    spec: dict[str, Any] = cluster["spec"]
    suffix = uuid.uuid4().hex[:8]
    spec["kafka"]["topicPrefix"] = f"v{suffix}"
    spec["cassandra"]["keyspace"] = f"v_{suffix}"
    return spec


class Kube:
    """The kwok cluster's API through the Python client, and kubectl for applies."""

    def __init__(self, testenv: Any) -> None:
        self.kubeconfig = testenv["TIDINGS_TEST_KUBECONFIG"]
        self.kubectl_bin = str(Path(testenv["TIDINGS_TEST_BIN_DIR"]) / "kubectl")
        self.api = config.new_client_from_config(config_file=self.kubeconfig)
        self.ext = client.ApiextensionsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def apply_crd(self, crd: dict[str, Any]) -> None:
        """What docs/upgrading.md tells users to run, then wait until every version serves."""
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            "-",
            stdin=json.dumps(crd),
        )
        name, group = crd["metadata"]["name"], crd["spec"]["group"]
        wait_for(f"CRD {name} Established", lambda: self.condition(name, "Established"))
        for version in crd["spec"]["versions"]:
            # Established comes first; the new version's endpoint can 404 for a moment.
            wait_for(
                f"/apis/{group}/{version['name']}/{PLURAL}",
                lambda v=version: self.serves(group, v),
            )

    def condition(self, crd_name: str, kind: str) -> bool:
        crd = self.ext.read_custom_resource_definition(crd_name, _request_timeout=REQUEST_TIMEOUT)
        return any(c.type == kind and c.status == "True" for c in crd.status.conditions or [])

    def serves(self, group: str, version: dict[str, Any]) -> bool:
        try:
            self.custom.list_cluster_custom_object(
                group, version["name"], PLURAL, limit=1, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def stored_versions(self, crd_name: str) -> list[str]:
        crd = self.ext.read_custom_resource_definition(crd_name, _request_timeout=REQUEST_TIMEOUT)
        return list(crd.status.stored_versions)

    def get(self, group: str, version: str, ns: str, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(
            group, version, ns, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
        )
        return got

    def patch(
        self, group: str, version: str, ns: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch of the object through ``version``."""
        got: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            group, version, ns, PLURAL, name, body, _request_timeout=REQUEST_TIMEOUT
        )
        return got

    def create(
        self, group: str, version: str, ns: str, name: str, spec: dict[str, Any]
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{group}/{version}",
            "kind": "ChatCluster",
            "metadata": {"name": name},
            "spec": spec,
        }
        got: dict[str, Any] = self.custom.create_namespaced_custom_object(
            group, version, ns, PLURAL, body, _request_timeout=REQUEST_TIMEOUT
        )
        return got


def rejected(call: Callable[[], object]) -> str:
    """The message of the 422 ``call`` must fail with."""
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == 422, info.value
    return str(info.value.body)


@pytest.fixture(scope="module")
def kube(testenv: Any) -> Iterator[Kube]:
    kube = Kube(testenv)
    try:
        yield kube
    finally:
        kube.api.close()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"crdv-{uuid.uuid4().hex[:10]}"
    kube.core.create_namespace({"metadata": {"name": name}}, _request_timeout=REQUEST_TIMEOUT)
    try:
        yield name
    finally:
        kube.core.delete_namespace(name, _request_timeout=REQUEST_TIMEOUT)


@pytest.fixture
def renamed_crd(kube: Kube) -> Iterator[dict[str, Any]]:
    """The real CRD under an API group of its own (removed at the end)."""
    crd = real_crd()
    group = f"v{uuid.uuid4().hex[:10]}.tidings.test"
    crd["spec"]["group"] = group
    crd["metadata"]["name"] = f"{PLURAL}.{group}"
    try:
        yield crd
    finally:
        try:
            kube.ext.delete_custom_resource_definition(
                crd["metadata"]["name"], _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_an_object_stored_before_the_upgrade_reads_and_changes_through_v1beta1(
    kube: Kube, renamed_crd: dict[str, Any], namespace: str
) -> None:
    crd_name, group = renamed_crd["metadata"]["name"], renamed_crd["spec"]["group"]
    # Before: the CRD as it was, with v1alpha1 only.
    before = copy.deepcopy(renamed_crd)
    before["spec"]["versions"] = [v for v in before["spec"]["versions"] if v["name"] == "v1alpha1"]
    del before["spec"]["conversion"]
    kube.apply_crd(before)
    old = kube.create(group, "v1alpha1", namespace, "chat", example_spec())
    assert kube.stored_versions(crd_name) == ["v1alpha1"]

    # The upgrade: the new CRD, applied as docs/upgrading.md says.
    kube.apply_crd(renamed_crd)
    beta = kube.get(group, "v1beta1", namespace, "chat")
    assert beta["apiVersion"] == f"{group}/v1beta1"
    assert beta["spec"] == old["spec"]  # defaults included: the schemas are the same
    assert beta["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"]
    assert beta["metadata"]["uid"] == old["metadata"]["uid"]
    assert kube.stored_versions(crd_name) == ["v1alpha1"]  # reads rewrite nothing

    # Changed through v1beta1, seen through v1alpha1; still stored as v1alpha1.
    kube.patch(group, "v1beta1", namespace, "chat", {"spec": {"image": "example/tidings:2"}})
    alpha = kube.get(group, "v1alpha1", namespace, "chat")
    assert alpha["apiVersion"] == f"{group}/v1alpha1"
    assert alpha["spec"]["image"] == "example/tidings:2"
    assert kube.stored_versions(crd_name) == ["v1alpha1"]
    message = rejected(
        lambda: kube.patch(
            group, "v1beta1", namespace, "chat", {"spec": {"kafka": {"topicPrefix": "other"}}}
        )
    )
    assert "kafka.topicPrefix cannot change after creation" in message

    # The later release's storage switch (docs/upgrading.md, "Moving the storage version").
    switched = copy.deepcopy(renamed_crd)
    for version in switched["spec"]["versions"]:
        version["storage"] = version["name"] == "v1beta1"
    kube.apply_crd(switched)
    stored = kube.get(group, "v1beta1", namespace, "chat")
    rewritten = kube.patch(group, "v1beta1", namespace, "chat", {})
    # The empty patch is a real write: the bytes now say v1beta1.
    assert rewritten["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]
    assert rewritten["spec"] == stored["spec"]
    assert kube.stored_versions(crd_name) == ["v1alpha1", "v1beta1"]
    kube.kubectl(
        "patch",
        "crd",
        crd_name,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"storedVersions":["v1beta1"]}}',
    )
    assert kube.stored_versions(crd_name) == ["v1beta1"]
    assert kube.get(group, "v1alpha1", namespace, "chat")["spec"] == rewritten["spec"]


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
def test_the_real_crd_keeps_identity_fields_through_either_version(
    kube: Kube, namespace: str, version: str
) -> None:
    crd = real_crd()
    crd_name, group = crd["metadata"]["name"], crd["spec"]["group"]
    kube.apply_crd(crd)  # idempotent: other tests apply the same file
    assert kube.stored_versions(crd_name) == ["v1alpha1"]
    other = {"v1alpha1": "v1beta1", "v1beta1": "v1alpha1"}[version]
    made = kube.create(group, version, namespace, "chat", example_spec())
    assert made["apiVersion"] == f"{group}/{version}"
    seen = kube.get(group, other, namespace, "chat")
    assert seen["spec"] == made["spec"]
    assert seen["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]

    changed = kube.patch(group, version, namespace, "chat", {"spec": {"chat": {"maxReplicas": 7}}})
    assert kube.get(group, other, namespace, "chat")["spec"] == changed["spec"]
    for field, text in (
        ({"kafka": {"topicPrefix": "renamed"}}, "kafka.topicPrefix cannot change after creation"),
        ({"cassandra": {"keyspace": "renamed"}}, "cassandra.keyspace cannot change after creation"),
    ):
        patch = {"spec": field}
        message = rejected(lambda p=patch: kube.patch(group, version, namespace, "chat", p))
        assert text in message, message
    after = kube.get(group, version, namespace, "chat")
    assert after["spec"]["kafka"]["topicPrefix"] == made["spec"]["kafka"]["topicPrefix"]
    assert after["spec"]["cassandra"]["keyspace"] == made["spec"]["cassandra"]["keyspace"]
    kube.custom.delete_namespaced_custom_object(
        group, version, namespace, PLURAL, "chat", _request_timeout=REQUEST_TIMEOUT
    )
