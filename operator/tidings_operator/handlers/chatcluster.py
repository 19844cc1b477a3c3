"""kopf handlers for ChatCluster (``tidings.dev/v1alpha1``): thin, the work is elsewhere.

- ``chatcluster_reconcile``, registered for create, update (spec changes, ``/scale``
  included) and resume (operator start): :meth:`Reconciler.reconcile` — check, wire,
  apply, report; ``kopf.TemporaryError`` / ``kopf.PermanentError`` from there.
- the indexes ``tidings_chat_pods``, ``tidings_statefulsets``, ``tidings_deployments``
  (children.py): the children, watched, so a tick reads them from memory.
- ``chatcluster_event`` (every watch event): which ChatClusters exist. The operator's
  ticker (started by ``operator_startup``) runs :meth:`Reconciler.sync` for each of them
  every ``--tick-seconds`` — status, autoscaling, the rollout, disruptions, drift repair.
  It is not a kopf timer because kopf puts a finalizer on objects with timers, and a
  ChatCluster needs none: the children go with their owner references, the topics and
  the keyspace stay. So deleting a ChatCluster never waits for the operator.

Handlers return nothing (nothing lands in ``status.<handler>``); kopf keeps its own
progress in annotations under ``tidings.dev/``, since the status schema is strict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from tidings_operator import names
from tidings_operator.children import Departures, Indexes, index_chat_pods, index_workloads
from tidings_operator.kube import Kube
from tidings_operator.reconciler import Options, Reconciler

__all__ = [
    "chatcluster_event",
    "chatcluster_reconcile",
    "operator_cleanup",
    "operator_login",
    "operator_startup",
    "register",
]

log = logging.getLogger(__name__)

MANAGED_SELECTOR = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
WATCH_SERVER_TIMEOUT_S = 300


def _reconciler(memo: kopf.Memo) -> Reconciler:
    reconciler = memo.get("reconciler")
    if not isinstance(reconciler, Reconciler):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return reconciler


def _namespace(namespace: str | None) -> str:
    if not namespace:
        raise kopf.PermanentError("a ChatCluster is namespaced")
    return namespace


def operator_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The same credentials as our own client: a service account, else ``$KUBECONFIG``."""
    return kopf.login_via_client(**kwargs)


async def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Settings, and the Reconciler with its ticker. kopf passes the indexes as keyword
    arguments named by their ids (live objects: filled as the watches run)."""
    # The status schema is strict (no preserve-unknown-fields): kopf's own bookkeeping
    # goes into annotations, under our group.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{names.GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    # The children's watches: only what the operator made (filtered by the API server),
    # re-established if silent for long (a dead watch would leave the indexes stale).
    for resource in (("v1", "pods"), ("apps", "v1", "statefulsets"), ("apps", "v1", "deployments")):
        settings.watching.label_selectors[resource] = MANAGED_SELECTOR
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_S
    settings.watching.client_timeout = WATCH_SERVER_TIMEOUT_S + 30
    memo["departures"] = departures = Departures()
    options = memo.get("options")
    reconciler = Reconciler(
        Kube.from_environment(),
        options if isinstance(options, Options) else Options(),
        indexes=Indexes(
            kwargs["tidings_chat_pods"],
            kwargs["tidings_statefulsets"],
            kwargs["tidings_deployments"],
        ),
        departures=departures,
    )
    memo["reconciler"] = reconciler
    memo["ticker"] = asyncio.create_task(reconciler.run_ticks(), name="chatcluster-ticker")


async def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
    ticker = memo.get("ticker")
    if isinstance(ticker, asyncio.Task):
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    reconciler = memo.get("reconciler")
    if isinstance(reconciler, Reconciler):
        await reconciler.close()
        reconciler.kube.close()


async def chatcluster_reconcile(
    name: str, namespace: str | None, uid: str, retry: int, memo: kopf.Memo, **_: Any
) -> None:
    """A ChatCluster created, its spec changed, or seen when the operator starts."""
    await _reconciler(memo).reconcile(
        name=name, namespace=_namespace(namespace), uid=uid, retry=retry
    )


async def chatcluster_event(
    type: str | None, name: str, namespace: str | None, uid: str, memo: kopf.Memo, **_: Any
) -> None:
    reconciler = memo.get("reconciler")
    if not isinstance(reconciler, Reconciler) or not namespace:
        return
    if type == "DELETED":
        await reconciler.forget(uid)
    else:
        reconciler.track(name=name, namespace=namespace, uid=uid)


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the handlers (the options come in the memo, see ``__main__``)."""
    group, version, plural = names.GROUP, names.VERSION, names.PLURAL
    kopf.on.login(registry=registry)(operator_login)
    kopf.on.startup(registry=registry)(operator_startup)
    kopf.on.cleanup(registry=registry)(operator_cleanup)
    # One body for the three causes, each under the id it has always had (kopf keeps a
    # handler's progress in annotations named by its id).
    kopf.on.create(group, version, plural, registry=registry, id="chatcluster_create")(
        chatcluster_reconcile
    )
    kopf.on.update(
        group, version, plural, registry=registry, field="spec", id="chatcluster_update"
    )(chatcluster_reconcile)
    kopf.on.resume(group, version, plural, registry=registry, id="chatcluster_resume")(
        chatcluster_reconcile
    )
    kopf.on.event(group, version, plural, registry=registry)(chatcluster_event)
    managed = {names.LABEL_MANAGED_BY: names.MANAGED_BY}
    kopf.index("v1", "pods", id="tidings_chat_pods", labels=managed, registry=registry)(
        index_chat_pods
    )
    for plural_ in ("statefulsets", "deployments"):
        kopf.index(
            "apps", "v1", plural_, id=f"tidings_{plural_}", labels=managed, registry=registry
        )(index_workloads)
