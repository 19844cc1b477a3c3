"""The Helm chart's own files, read as text and YAML: no `helm` binary, no cluster.

- Chart.yaml's metadata, and ci/full-values.yaml switching every optional part on;
- values.schema.json: closed at every object level; every key of values.yaml documented by
  a comment starting with its name, with a schema and a row in the chart's README;
- the CRD in the chart is crds/'s file (a symlink, not a copy);
- the example ChatCluster, and one per exposure mode, are specs the operator accepts (its
  own parser and builders).

What needs `helm` (lint, template, package, the schema's verdicts) or the API server is in
test_chart.py and test_chart_observability.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_chart import CHART, CRD_IN_CHART, CRD_SOURCE, EXAMPLE, EXPOSE_EXAMPLES, FULL_VALUES

# --------------------------------------------------------------------------------------
# metadata, values and schema
# --------------------------------------------------------------------------------------


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "tidings"
    assert chart["type"] == "application"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == "0.1.0"


def test_full_values_switch_everything_on() -> None:
    full = yaml.safe_load(FULL_VALUES.read_text())
    for part in ("serviceMonitor", "podMonitor", "grafanaDashboard", "networkPolicy"):
        assert full[part]["enabled"] is True, part
    assert full["rbac"]["create"] and full["serviceAccount"]["create"]
    assert full["operator"]["watchNamespaces"], "the full values list namespaces (Roles)"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def _is_map(schema: Mapping[str, Any]) -> bool:
    """A free-form map (labels, annotations): its values have a schema, its keys are data."""
    return isinstance(schema.get("additionalProperties"), dict)


def test_schema_is_closed_at_every_object_level() -> None:
    def walk(node: Mapping[str, Any], path: str) -> Iterator[str]:
        if node.get("type") == "object":
            if path == "global":  # Helm's own: values shared with a parent chart
                assert node.get("additionalProperties") is True
                return
            closed = node.get("additionalProperties") is False and "properties" in node
            if not (closed or _is_map(node)):
                yield path or "<root>"
            for key, child in (node.get("properties") or {}).items():
                yield from walk(child, f"{path}.{key}".lstrip("."))
            if _is_map(node):
                yield from walk(node["additionalProperties"], f"{path}.*")
        if node.get("type") == "array":
            assert "items" in node, f"{path}: an array without items"
            yield from walk(node["items"], f"{path}[]")

    open_objects = list(walk(_schema(), ""))
    assert not open_objects, f"objects without additionalProperties: false: {open_objects}"


def _value_keys() -> list[tuple[str, int, str]]:
    """(dotted path, line number, key) of every key in values.yaml that is a value's name
    (not the keys inside a free-form map such as labels)."""
    schema = _schema()
    found: list[tuple[str, int, str]] = []
    stack: list[tuple[int, str]] = []
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), start=1):
        match = re.match(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        node: Mapping[str, Any] | None = schema
        for _, key in stack[:-1]:
            if node is None or _is_map(node):
                node = None
                break
            node = (node.get("properties") or {}).get(key)
        if node is None or _is_map(node):
            continue  # a key inside a map's default, e.g. grafanaDashboard.labels
        found.append((".".join(k for _, k in stack), number, match.group(2)))
    return found


def test_every_value_is_documented_by_a_comment_starting_with_its_name() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for path, number, key in _value_keys():
        above = lines[number - 2].strip() if number >= 2 else ""
        # The comment block above the key: find its first line.
        first = number - 2
        while first > 0 and lines[first - 1].strip().startswith("#"):
            first -= 1
        head = lines[first].strip()
        if not (above.startswith("#") and re.match(rf"^#\s+{re.escape(key)}\b", head)):
            undocumented.append(f"{path} (line {number})")
    assert not undocumented, f"values without a comment starting with their name: {undocumented}"


def test_every_value_has_a_schema_and_a_readme_row() -> None:
    schema, readme = _schema(), (CHART / "README.md").read_text()
    missing_schema, missing_readme = [], []
    for path, _, _ in _value_keys():
        node: Mapping[str, Any] | None = schema
        for key in path.split("."):
            node = (node.get("properties") or {}).get(key) if node is not None else None
        if node is None or "type" not in node:
            missing_schema.append(path)
        elif (node["type"] != "object" or _is_map(node)) and f"| `{path}` |" not in readme:
            missing_readme.append(path)
    assert not missing_schema, f"values without a schema (type): {missing_schema}"
    assert not missing_readme, f"values missing from the README's table: {missing_readme}"


# --------------------------------------------------------------------------------------
# the CRD and the examples
# --------------------------------------------------------------------------------------


def test_crd_in_chart_is_the_crds_file() -> None:
    assert CRD_IN_CHART.is_symlink(), "the chart's CRD must be a link to crds/, not a copy"
    assert CRD_IN_CHART.resolve() == CRD_SOURCE.resolve()
    assert CRD_IN_CHART.read_bytes() == CRD_SOURCE.read_bytes()
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [CRD_SOURCE.name]


def test_example_spec_is_one_the_operator_accepts() -> None:
    from tidings_operator.spec import check_name, parse_spec

    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    (cluster,) = [d for d in docs if d["kind"] == "ChatCluster"]
    check_name(cluster["metadata"]["name"])
    spec = parse_spec(cluster["spec"])
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    assert sorted(secrets) == spec.secret_names(), "the example ships every Secret it names"
    assert spec.postgres_url.key in secrets[spec.postgres_url.name]["stringData"]
    assert spec.jwt_secret.key in secrets[spec.jwt_secret.name]["stringData"]


@pytest.mark.parametrize("example", EXPOSE_EXAMPLES, ids=lambda p: p.stem)
def test_each_exposure_example_is_one_the_operator_accepts(example: Path) -> None:
    from tidings_operator.builders import build_all
    from tidings_operator.spec import parse_spec

    (cluster,) = [d for d in yaml.safe_load_all(example.read_text()) if d]
    spec = parse_spec(cluster["spec"])
    assert spec.chat.expose.mode == example.stem.replace("port", "Port").replace(
        "balancer", "Balancer"
    )
    main = {d["metadata"]["name"] for d in yaml.safe_load_all(EXAMPLE.read_text()) if d}
    tls = {spec.tls.secret_name} if spec.tls and not spec.tls.issuer else set()
    assert set(spec.secret_names()) - tls <= main, "the main example ships the Secrets"
    owner = {"name": "chat", "namespace": "chat", "uid": "0"}
    kinds = {m["kind"] for m in build_all(owner, spec, chat_replicas=2, inbox_partitions=64)}  # type: ignore[arg-type]
    assert "Service" in kinds
