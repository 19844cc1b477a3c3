"""`tidings bench`: what one chat server and one small cluster carry (docs/benchmarks.md).

Open-loop load generators in their own processes, HdrHistogram latencies on one
monotonic clock, CPU and memory of both sides, and a baseline relay measured in the same
run. Heavy imports happen only when a benchmark runs: this module only defines the
arguments (the CLI lists them), and the servers never import the bench (the "bench-apart"
contract in pyproject.toml); its third-party needs are the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_bench_arguments", "run_bench"]

SCENARIOS = ("idle", "relay", "fanout", "cluster", "storm", "trace")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``tidings bench`` (argparse only: nothing of the benchmark loads)."""
    from pathlib import Path

    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument(
        "--targets",
        help="comma-separated servers to measure side by side: tidings, tidings-ref, baseline, "
        "baseline-nocompress, floor (idle only), centrifugo (idle, relay, fanout; default "
        "tidings,baseline), cluster (fanout: --chats chat servers on the test environment); "
        "storm: tidings or cluster; trace: tidings and/or tidings-ref (default tidings, or "
        "tidings-ref when --ref-tree is given)",
    )
    parser.add_argument(
        "--ref-tree",
        type=Path,
        help="target tidings-ref: `tidings up` run from this checkout's code (e.g. a clone at "
        "the commit before a change), with this venv's Python and libraries",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=1000,
        help="idle and storm clients (storm --targets cluster: the drained server's clients)",
    )
    parser.add_argument(
        "--bystanders",
        type=int,
        help="storm --targets cluster: clients kept on the servers not drained (default a "
        "tenth of --connections, at least 10); they send the probe messages",
    )
    parser.add_argument(
        "--storm-timeout",
        type=float,
        default=60.0,
        help="storm: seconds after the SIGTERM to wait for every drained client",
    )
    parser.add_argument("--hold", type=float, default=20.0, help="idle: seconds measured")
    parser.add_argument("--pairs", type=int, default=100, help="relay/cluster: sender pairs")
    parser.add_argument(
        "--rates", default="1000", help="comma-separated offered rates (messages/s), one step each"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per rate step")
    parser.add_argument("--drain", type=float, default=10.0, help="max wait for stragglers")
    parser.add_argument("--groups", type=int, default=1, help="fanout: groups")
    parser.add_argument("--group-size", type=int, default=100, help="fanout: members per group")
    parser.add_argument("--body-bytes", type=int, default=64)
    parser.add_argument("--messages", type=int, default=2000, help="trace: messages per window")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="trace: fixed offered rate (messages/s)"
    )
    parser.add_argument(
        "--traced-rate",
        type=float,
        help="trace: the rate in the strace and py-spy windows (default --rate); the server "
        "runs slower while traced",
    )
    parser.add_argument(
        "--pyspy-rate", type=int, default=50, help="trace: py-spy samples per second"
    )
    parser.add_argument(
        "--trace-tools",
        default="perf,strace,py-spy",
        help="trace: tools to use: perf (syscall counts in the kernel during the SQL counts "
        "window), strace and py-spy (a window each); '' for none",
    )
    parser.add_argument("--workers", type=int, default=2, help="generator processes")
    parser.add_argument(
        "--connect-concurrency", type=int, default=64, help="handshakes in flight per generator"
    )
    parser.add_argument("--heartbeat", type=float, default=5.0, help="client heartbeat seconds")
    parser.add_argument("--chats", type=int, default=2, help="cluster: chat servers")
    parser.add_argument(
        "--testenv-state",
        type=Path,
        help="cluster: the test environment's state dir (default $TIDINGS_TESTENV_STATE or "
        ".testenv) with postgres.env, kafka.env, cassandra.env",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="tidings: reuse this data dir and the users made there"
    )
    parser.add_argument(
        "--seed",
        choices=("auto", "direct", "api"),
        default="auto",
        help="how users are made: direct = written into the stopped embedded server's "
        "SQLite directory or the cluster's PostgreSQL (one argon2 hash for all, tokens "
        "signed with its key; targets tidings and cluster), api = signup and login over "
        "HTTP, auto (default) = direct for tidings and the cluster, api for tidings-ref",
    )
    parser.add_argument("--workdir", type=Path, help="logs and data (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument(
        "--append", action="store_true", help="add to the JSON file in --out instead of replacing"
    )
    parser.set_defaults(handler=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark ``args`` name (``tidings bench <scenario> ...``); the exit code.

    Its third-party needs are the ``bench`` extra (``pip install 'tidings[bench]'``): the
    servers do without them."""
    try:
        from tidings.bench._run import run
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "hdrh":
            raise
        print("tidings bench needs the bench extra: pip install 'tidings[bench]'", file=sys.stderr)
        return 2
    return run(args)
