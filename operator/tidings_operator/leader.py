"""One active operator among replicas: a ``coordination.k8s.io/v1`` Lease.

Each process has an identity (the pod's name and a random suffix). :meth:`Lease.acquire`
waits until the Lease is free — missing, released (no holder), or not renewed for its
``leaseDurationSeconds`` as seen by *this* process's clock (the holder's clock is never
trusted: what counts is how long the record has stayed unchanged) — and takes it with an
optimistic write (``resourceVersion``), so of two candidates exactly one wins.
:meth:`Lease.hold` renews it every ``renew_s`` and returns when it is lost: someone else
holds it, or no renewal succeeded within the lease's duration. ``__main__`` runs kopf only
between the two, and stops it (and exits) when the Lease is lost; a graceful stop releases
the Lease so a standby takes over at once. A SIGKILLed holder is replaced within
``lease_s + retry_s``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from tidings_operator.kube import Kube, KubeError

__all__ = ["Lease", "default_identity"]

log = logging.getLogger(__name__)


def default_identity() -> str:
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}_{uuid.uuid4().hex[:8]}"


def _micro_time(now: float | None = None) -> str:
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_s: float = 15.0,
        renew_s: float = 5.0,
        retry_s: float = 2.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.retry_s = retry_s
        self._seen: tuple[str, str] | None = None  # (resourceVersion, holder) last seen
        self._seen_at = 0.0  # when it was first seen (monotonic)

    @property
    def _collection(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{quote(self.namespace)}/leases"

    @property
    def _path(self) -> str:
        return f"{self._collection}/{quote(self.name)}"

    def _spec(self, transitions: int) -> dict[str, Any]:
        now = _micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_s)),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def _read(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.kube.request("GET", self._path, missing_ok=True)
        return found

    def _free(self, lease: dict[str, Any]) -> bool:
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        if not holder or holder == self.identity:
            return True
        seen = (str(lease["metadata"].get("resourceVersion")), holder)
        if seen != self._seen:
            self._seen, self._seen_at = seen, time.monotonic()
            return False
        duration = float(spec.get("leaseDurationSeconds") or self.lease_s)
        return time.monotonic() - self._seen_at > duration

    async def try_acquire(self) -> bool:
        """One attempt; True when this process holds the Lease now."""
        lease = await self._read()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0),
            }
            try:
                await self.kube.request("POST", self._collection, body)
            except KubeError as exc:
                if exc.status == 409:  # another candidate created it first
                    return False
                raise
            return True
        if not self._free(lease):
            return False
        spec = lease.get("spec") or {}
        mine = spec.get("holderIdentity") == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        new_spec = self._spec(transitions)
        if mine and spec.get("acquireTime"):
            new_spec["acquireTime"] = spec["acquireTime"]
        body = {**lease, "spec": new_spec}
        try:
            await self.kube.request("PUT", self._path, body)
        except KubeError as exc:
            if exc.status == 409:  # someone wrote it meanwhile
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Wait until this process holds the Lease."""
        waiting_logged = False
        while True:
            try:
                if await self.try_acquire():
                    log.info("holding Lease %s/%s as %s", self.namespace, self.name, self.identity)
                    return
            except KubeError as exc:
                log.warning("cannot take Lease %s/%s: %s", self.namespace, self.name, exc)
            if not waiting_logged:
                log.info(
                    "standing by: Lease %s/%s is held by %s",
                    self.namespace,
                    self.name,
                    self._seen[1] if self._seen else "another operator",
                )
                waiting_logged = True
            await asyncio.sleep(self.retry_s)

    async def hold(self) -> None:
        """Renew until the Lease is lost (then return)."""
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                lease = await self._read()
                spec = (lease or {}).get("spec") or {}
                if lease is None or spec.get("holderIdentity") != self.identity:
                    log.error("Lease %s/%s was taken over", self.namespace, self.name)
                    return
                body = {**lease, "spec": {**spec, "renewTime": _micro_time()}}
                await self.kube.request("PUT", self._path, body)
                last_renewed = time.monotonic()
            except KubeError as exc:
                log.warning("cannot renew Lease %s/%s: %s", self.namespace, self.name, exc)
                if time.monotonic() - last_renewed > self.lease_s - self.renew_s / 2:
                    log.error("Lease %s/%s not renewed in time", self.namespace, self.name)
                    return

    async def release(self) -> None:
        """Give the Lease up (a standby takes it at its next try)."""
        try:
            lease = await self._read()
            spec = (lease or {}).get("spec") or {}
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            released = {**spec, "holderIdentity": None, "leaseDurationSeconds": 1}
            await self.kube.request("PUT", self._path, {**lease, "spec": released})
            log.info("released Lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("cannot release Lease %s/%s: %s", self.namespace, self.name, exc)
