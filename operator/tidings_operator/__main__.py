"""``python -m tidings_operator``: run the ChatCluster operator.

    python -m tidings_operator --namespace tidings            # one namespace (repeatable)
    python -m tidings_operator --all-namespaces               # cluster-wide
    python -m tidings_operator --liveness http://0.0.0.0:8081/healthz
    python -m tidings_operator --metrics-port 9100             # GET /metrics (0: off)

Credentials: the pod's service account in a cluster, ``$KUBECONFIG`` elsewhere. The
operator is standalone (one replica, no kopf peering objects). ``tidings operator`` runs
this module too (the workloads never import the operator: it execs it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence

import kopf

from tidings_operator import __version__, metrics
from tidings_operator.handlers.chatcluster import register
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
        default=float(os.environ.get("TIDINGS_OPERATOR_TICK_S", "5")),
        help="how often each ChatCluster's status, size and rollout are looked at (5)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=float(os.environ.get("TIDINGS_OPERATOR_RESYNC_S", "60")),
        help="re-apply every child at least this often, repairing drift (60)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("TIDINGS_OPERATOR_METRICS_PORT", "9100")),
        metavar="PORT",
        help="serve the operator's Prometheus metrics on http://0.0.0.0:PORT/metrics "
        "(9100; 0 disables)",
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
    namespaces: list[str] = list(args.namespace)
    if not namespaces and not args.all_namespaces:
        from_env = os.environ.get("TIDINGS_OPERATOR_NAMESPACES", "")
        namespaces = [ns.strip() for ns in from_env.split(",") if ns.strip()]
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_json else kopf.LogFormat.FULL,
    )
    logging.getLogger("kopf.objects").addFilter(_QuietEvents())
    options = Options(tick_s=args.tick_seconds, resync_s=args.resync_seconds)
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    registry = kopf.OperatorRegistry()
    register(registry)
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=True,
            namespaces=namespaces,
            clusterwide=not namespaces,
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(options=options),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
