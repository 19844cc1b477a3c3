"""The leader Lease against an in-memory API server: one holder, takeover, release."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import pytest

from tidings_operator import leader
from tidings_operator.kube import Kube, KubeError


class FakeLeases:
    """GET/POST/PUT on one Lease, with resourceVersion conflicts like the API server's."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def request(
        self, method: str, path: str, body: Any = None, *, missing_ok: bool = False, **_: Any
    ) -> Any:
        await asyncio.sleep(0)  # let racing candidates interleave
        if method == "GET":
            if self.lease is None:
                if missing_ok:
                    return None
                raise KubeError(404, "NotFound", path)
            return copy.deepcopy(self.lease)
        if method == "POST":
            if self.lease is not None:
                raise KubeError(409, "AlreadyExists", path)
        elif method == "PUT":
            assert self.lease is not None
            if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
                raise KubeError(409, "Conflict", path)
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


def _lease(api: FakeLeases, identity: str, lease_s: float = 3.0) -> leader.Lease:
    return leader.Lease(
        cast(Kube, api),
        namespace="ns",
        name="tidings-operator",
        identity=identity,
        lease_s=lease_s,
        renew_s=0.2,
        retry_s=0.05,
    )


def test_of_two_candidates_one_holds_and_the_other_waits() -> None:
    api = FakeLeases()
    a, b = _lease(api, "a"), _lease(api, "b")

    async def run() -> None:
        assert await a.try_acquire()
        assert not await b.try_acquire()
        assert not await b.try_acquire()  # still fresh by b's own clock
        assert await a.try_acquire()  # the holder may renew

    asyncio.run(run())
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "a"


def test_a_lease_not_renewed_for_its_duration_is_taken_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = FakeLeases()
    a, b = _lease(api, "a"), _lease(api, "b")
    clock = [1000.0]
    monkeypatch.setattr(leader.time, "monotonic", lambda: clock[0])

    async def run() -> None:
        assert await a.try_acquire()
        assert not await b.try_acquire()  # first seen now
        clock[0] += 2.9
        assert not await b.try_acquire()
        clock[0] += 0.2  # unchanged for more than 3 s on b's clock
        assert await b.try_acquire()

    asyncio.run(run())
    assert api.lease is not None
    assert api.lease["spec"]["holderIdentity"] == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1


def test_a_released_lease_is_free_at_once_and_hold_notices_a_takeover() -> None:
    api = FakeLeases()
    a, b = _lease(api, "a"), _lease(api, "b")

    async def run() -> None:
        assert await a.try_acquire()
        await a.release()
        assert api.lease is not None and api.lease["spec"]["holderIdentity"] is None
        assert await b.try_acquire()
        # a, still thinking it holds the Lease, sees b and returns from hold().
        await asyncio.wait_for(a.hold(), timeout=2)

    asyncio.run(run())


def test_two_racing_candidates_never_both_win() -> None:
    api = FakeLeases()

    async def run() -> list[bool]:
        return list(await asyncio.gather(*(_lease(api, f"c{i}").try_acquire() for i in range(5))))

    assert sum(asyncio.run(run())) == 1
