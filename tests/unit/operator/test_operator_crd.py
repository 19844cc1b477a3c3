"""The ChatCluster CRD: structural, typed, with subresources and printer columns, served
as v1alpha1 (stored) and v1beta1 with one schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tidings_operator import names

CRD = Path(__file__).resolve().parents[3] / "crds" / "chatclusters.tidings.dev.yaml"


def load() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD.read_text())
    return crd


def stored_version() -> dict[str, Any]:
    """The version objects are stored as (v1alpha1); the others share its schema."""
    (version,) = [v for v in load()["spec"]["versions"] if v["storage"]]
    return version


def test_v1beta1_is_served_beside_v1alpha1_with_the_same_schema() -> None:
    crd = load()
    # No conversion webhook: the API server only rewrites apiVersion between the versions,
    # which is right only while their schemas (defaults, CEL rules) are the same.
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert list(versions) == ["v1alpha1", "v1beta1"]
    assert all(v["served"] for v in versions.values())
    assert [n for n, v in versions.items() if v["storage"]] == ["v1alpha1"]
    alpha, beta = versions["v1alpha1"], versions["v1beta1"]
    for key in ("schema", "subresources", "additionalPrinterColumns"):
        assert beta[key] == alpha[key], key
    assert (
        set(alpha)
        == set(beta)
        == {
            "name",
            "served",
            "storage",
            "schema",
            "subresources",
            "additionalPrinterColumns",
        }
    )


def test_the_operator_watches_the_stored_version() -> None:
    # Switch names.VERSION only in the release that moves storage (docs/upgrading.md).
    assert stored_version()["name"] == names.VERSION
    assert f"{load()['spec']['group']}/{names.VERSION}" == names.API_VERSION


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        out += walk(child, f"{path}.{name}")
    if "items" in node:
        out += walk(node["items"], f"{path}[]")
    return out


# Kubernetes' own types, passed through to the pods as written (the API server checks them
# when the operator applies the workload): the only nodes that keep unknown fields.
PASSED_THROUGH = {"affinity", "labelSelector"}


def test_structural_every_node_typed_nothing_else_preserved() -> None:
    schema = stored_version()["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert "type" in node, path
        leaf = path.rsplit(".", 1)[-1]
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert leaf in PASSED_THROUGH, path
            continue
        if node["type"] == "object" and path not in (".metadata",):
            # An object is a typed record, or a map of strings (labels, annotations).
            assert "properties" in node or node.get("additionalProperties") == {"type": "string"}, (
                path
            )


def test_subresources_and_printer_columns() -> None:
    crd = load()
    assert crd["spec"]["group"] == "tidings.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    version = stored_version()
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.chat.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "Replicas", "Connections", "Age"]


def test_conditions_are_a_map_keyed_by_type() -> None:
    status = stored_version()["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    required = set(conditions["items"]["required"])
    assert {"type", "status"} <= required
    for key in ("observedGeneration", "replicas", "readyReplicas", "connections", "rollout"):
        assert key in status, key
    assert {"pod", "at", "clients", "recoverySeconds"} <= status["lastDisruption"][
        "properties"
    ].keys()
