"""What a tick asks of the API server (docs/operator.md, "At fleet scale"): a steady tick
of a wired ChatCluster is one GET of the ChatCluster — the children come from the watches,
and nothing is written when nothing changed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import yaml

from tidings_operator.children import Indexes
from tidings_operator.kube import Kube
from tidings_operator.reconciler import Options, Reconciler, wiring_key
from tidings_operator.spec import parse_spec

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "chatcluster.yaml"


class CountingKube:
    """A ChatCluster and what was applied; every request recorded as (verb, what)."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.applied: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.requests.append(("GET", kind))
        if kind == "ChatCluster":
            return self.obj
        return {"data": {}} if kind == "Secret" else None

    async def list(self, kind: str, namespace: str, selector: str | None = None) -> list[Any]:
        self.requests.append(("LIST", kind))
        return []

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(("APPLY", manifest["kind"]))
        self.applied[(manifest["kind"], manifest["metadata"]["name"])] = manifest
        return manifest

    async def request(self, method: str, path: str, *_: Any, **__: Any) -> dict[str, Any]:
        self.requests.append((method, path))
        return {}

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.requests.append(("PATCH", "status"))
        merged = dict(self.obj.get("status") or {})
        merged.update({k: v for k, v in status.items() if v is not None})
        self.obj["status"] = merged

    async def post_event(self, obj: Any, **_: Any) -> None:
        self.requests.append(("POST", "Event"))


class WatchedChildren:
    """The watches' view of the children: what was applied, no pods."""

    def __init__(self, kube: CountingKube) -> None:
        self.kube = kube

    def pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]:
        return []

    def workload(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.applied.get((kind, name))


def test_a_steady_tick_is_one_get_of_the_chatcluster() -> None:
    doc = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "ChatCluster")
    obj = {
        "metadata": {"name": "steady", "namespace": "ns-s", "uid": "u-s", "generation": 1},
        "spec": doc["spec"],
    }
    kube = CountingKube(obj)
    indexes = cast(Indexes, WatchedChildren(kube))
    reconciler = Reconciler(cast(Kube, kube), Options(resync_s=3600), indexes=indexes)
    state = reconciler.state("u-s")
    # Wired (as a reconcile leaves it): no engine is reached from here on.
    spec = parse_spec(obj["spec"], cluster=("ns-s", "steady"))
    state.wired_key, state.inbox_partitions = wiring_key(spec), 12
    state.last_attempt_key = state.wired_key

    async def run() -> None:
        reconciler.track(name="steady", namespace="ns-s", uid="u-s")
        await reconciler.sync(name="steady", namespace="ns-s", uid="u-s")
        assert ("APPLY", "StatefulSet") in kube.requests  # the first tick makes the children
        await reconciler.sync(name="steady", namespace="ns-s", uid="u-s")  # sees them made
        kube.requests.clear()
        await reconciler.sync(name="steady", namespace="ns-s", uid="u-s")
        await reconciler.close()

    asyncio.run(run())
    assert kube.requests == [("GET", "ChatCluster")]
