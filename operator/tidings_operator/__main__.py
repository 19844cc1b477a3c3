"""``python -m tidings_operator``: run the ChatCluster operator.

    python -m tidings_operator --namespace tidings            # one namespace (repeatable)
    python -m tidings_operator --all-namespaces               # cluster-wide
    python -m tidings_operator --liveness http://0.0.0.0:8081/healthz
    python -m tidings_operator --metrics-port 9100             # GET /metrics (0: off)

Credentials: the pod's service account in a cluster, ``$KUBECONFIG`` elsewhere. Of
several replicas one is active: each runs kopf (standalone, no kopf peering objects) only
while it holds the ``--lease-name`` Lease (:mod:`tidings_operator.leader`); the others
stand by (``--no-leader-election`` runs at once). ``tidings operator`` runs
this module too (the workloads never import the operator: it execs it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiohttp.web
import kopf

from tidings_operator import __version__, metrics
from tidings_operator.handlers.chatcluster import register
from tidings_operator.kube import Kube
from tidings_operator.leader import Lease, default_identity
from tidings_operator.reconciler import Options

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tidings_operator",
        description="The Tidings operator: reconciles ChatCluster resources (tidings.dev).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; default: $TIDINGS_OPERATOR_NAMESPACES, "
        "comma-separated, else all namespaces)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness",
        default=os.environ.get("TIDINGS_OPERATOR_LIVENESS"),
        metavar="URL",
        help="serve a liveness endpoint, e.g. http://0.0.0.0:8081/healthz",
    )
    parser.add_argument(
        "--tick-seconds",
        type=float,
        default=float(os.environ.get("TIDINGS_OPERATOR_TICK_S", "2")),
        help="how often each ChatCluster's status, size and rollout are looked at (2)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=float(os.environ.get("TIDINGS_OPERATOR_RESYNC_S", "60")),
        help="re-apply every child at least this often, repairing drift (60)",
    )
    parser.add_argument(
        "--rewire-seconds",
        type=float,
        default=float(os.environ.get("TIDINGS_OPERATOR_REWIRE_S", "300")),
        help="check the Kafka topics and the Cassandra keyspace again this often: a "
        "deleted topic is made again, drift is reported (300; 0 never)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("TIDINGS_OPERATOR_METRICS_PORT", "9100")),
        metavar="PORT",
        help="serve the operator's Prometheus metrics on http://0.0.0.0:PORT/metrics "
        "(9100; 0 disables)",
    )
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("TIDINGS_OPERATOR_LEADER_ELECTION", "1") not in ("0", "false"),
        help="run only while holding a coordination.k8s.io Lease, so that of several "
        "replicas one is active and the others stand by (default: on)",
    )
    parser.add_argument(
        "--lease-name",
        default=os.environ.get("TIDINGS_OPERATOR_LEASE_NAME", "tidings-operator"),
        help="the Lease's name (tidings-operator)",
    )
    parser.add_argument(
        "--lease-namespace",
        default=(
            os.environ.get("TIDINGS_OPERATOR_LEASE_NAMESPACE") or os.environ.get("POD_NAMESPACE")
        ),
        help="the Lease's namespace (default: $POD_NAMESPACE, else the first --namespace, "
        "else default)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=float(os.environ.get("TIDINGS_OPERATOR_LEASE_S", "15")),
        help="a holder that stops renewing is replaced after this long (15); it renews "
        "every third of it",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-json", action="store_true", help="JSON logs (for a cluster)")
    parser.add_argument("--version", action="version", version=__version__)
    return parser


class _QuietEvents(logging.Filter):
    """Drop kopf's "Handler 'chatcluster_event' succeeded", logged for every watch event."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Handler 'chatcluster_event' succeeded")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.tick_seconds <= 0 or args.resync_seconds <= 0:
        raise SystemExit("--tick-seconds and --resync-seconds must be positive")
    if not 0 <= args.metrics_port <= 65535:
        raise SystemExit("--metrics-port must be 0 (off) or a port number")
    if args.lease_seconds < 3:
        raise SystemExit("--lease-seconds must be at least 3")
    namespaces: list[str] = list(args.namespace)
    if not namespaces and not args.all_namespaces:
        from_env = os.environ.get("TIDINGS_OPERATOR_NAMESPACES", "")
        namespaces = [ns.strip() for ns in from_env.split(",") if ns.strip()]
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_json else kopf.LogFormat.FULL,
    )
    logging.getLogger("kopf.objects").addFilter(_QuietEvents())
    if args.rewire_seconds < 0:
        raise SystemExit("--rewire-seconds must not be negative")
    options = Options(
        tick_s=args.tick_seconds,
        resync_s=args.resync_seconds,
        rewire_s=args.rewire_seconds,
        namespaces=tuple(namespaces),
    )
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    registry = kopf.OperatorRegistry()
    register(registry)
    run = functools.partial(
        kopf.operator,
        registry=registry,
        standalone=True,
        namespaces=namespaces,
        clusterwide=not namespaces,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(options=options),
    )
    if not args.leader_election:
        metrics.ACTIVE.set(1)
        asyncio.run(run())
        return 0
    lease_namespace = args.lease_namespace or (namespaces[0] if namespaces else "default")
    return asyncio.run(_elected(run, args, lease_namespace))


async def _standby_health(url: str | None) -> aiohttp.web.AppRunner | None:
    """While standing by, the liveness endpoint answers (kopf's is not up yet)."""
    if not url:
        return None
    parsed = urllib.parse.urlsplit(url)

    async def ok(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"standby": True})

    app = aiohttp.web.Application()
    app.router.add_get(parsed.path or "/", ok)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, parsed.hostname, parsed.port or 80).start()
    return runner


async def _elected(
    run: Callable[..., Coroutine[Any, Any, None]], args: argparse.Namespace, lease_namespace: str
) -> int:
    """Stand by until this process holds the Lease; run kopf while it does."""
    kube = Kube.from_environment()
    lease = Lease(
        kube,
        namespace=lease_namespace,
        name=args.lease_name,
        identity=default_identity(),
        lease_s=args.lease_seconds,
        renew_s=args.lease_seconds / 3,
        retry_s=min(2.0, args.lease_seconds / 5),
    )
    metrics.ACTIVE.set(0)
    health = await _standby_health(args.liveness)
    try:
        await lease.acquire()
    finally:
        if health is not None:
            await health.cleanup()
    metrics.ACTIVE.set(1)
    stop = asyncio.Event()
    holding = asyncio.create_task(lease.hold(), name="lease")
    operator: asyncio.Task[None] = asyncio.create_task(run(stop_flag=stop), name="kopf")
    try:
        await asyncio.wait({holding, operator}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost = holding.done()
        stop.set()
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding
        await operator
        metrics.ACTIVE.set(0)
        if not lost:
            await lease.release()
        kube.close()
    if lost:
        # Another replica may be active already: stop (the pod restarts and stands by).
        raise SystemExit("lost the leader Lease; stopping")
    return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
