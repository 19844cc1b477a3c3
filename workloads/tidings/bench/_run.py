"""Run one scenario on each asked target, print a summary, write JSON."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tidings.bench import _scenarios as scenarios
from tidings.bench._procstat import raise_nofile
from tidings.bench.targets import Embedded, read_testenv, rmtree, tempdir

log = logging.getLogger("tidings.bench")


def options(args: argparse.Namespace, workdir: Path) -> scenarios.Options:
    """The scenario options from the command line's ``args``; for the cluster, with the
    test environment's state read."""
    testenv: dict[str, str] = {}
    if args.scenario == "cluster" or "cluster" in str(args.targets or "").split(","):
        state = args.testenv_state or Path(
            os.environ.get("TIDINGS_TESTENV_STATE", Path.cwd() / ".testenv")
        )
        testenv = read_testenv(state)
        testenv["_STATE"] = str(state)
    return scenarios.Options(
        workdir=workdir,
        workers=args.workers,
        heartbeat_s=args.heartbeat,
        connections=args.connections,
        bystanders=args.bystanders,
        hold_s=args.hold,
        pairs=args.pairs,
        rates=[float(r) for r in str(args.rates).split(",") if r],
        duration_s=args.duration,
        drain_s=args.drain,
        groups=args.groups,
        group_size=args.group_size,
        body_bytes=args.body_bytes,
        data_dir=args.data_dir,
        testenv=testenv,
        chats=args.chats,
        storm_timeout_s=args.storm_timeout,
        connect_concurrency=args.connect_concurrency,
        ref_tree=args.ref_tree,
        messages=args.messages,
        rate=args.rate,
        traced_rate=args.traced_rate,
        pyspy_rate=args.pyspy_rate,
        trace_tools=tuple(t for t in str(args.trace_tools).split(",") if t),
        seed=args.seed,
    )


def one(scenario: str, target: str, opts: scenarios.Options) -> dict[str, Any]:
    """Run ``scenario`` on ``target``; its result."""
    if scenario == "cluster":
        return scenarios.cluster(opts)
    if scenario == "storm":
        return scenarios.storm(target, opts)
    if scenario == "trace":
        from tidings.bench import _trace

        embedded = scenarios.make_target(target, opts)
        assert isinstance(embedded, Embedded)
        return _trace.trace(embedded, opts)
    runner = {"idle": scenarios.idle, "relay": scenarios.relay, "fanout": scenarios.fanout}
    return runner[scenario](scenarios.make_target(target, opts), opts)


def run(args: argparse.Namespace) -> int:
    """Run the scenario on each target, print a summary line each, and write the report
    to ``--out``; the exit status (1 when a target failed)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    raise_nofile()
    workdir = args.workdir or tempdir()
    workdir.mkdir(parents=True, exist_ok=True)
    opts = options(args, workdir)
    targets = [t for t in str(args.targets or "tidings,baseline").split(",") if t]
    if args.scenario == "cluster":
        targets = ["cluster"]
    elif args.scenario == "storm":
        targets = [t for t in targets if t in ("tidings", "cluster")] or ["tidings"]
    elif args.scenario == "trace":
        default = "tidings-ref" if args.ref_tree else "tidings"
        targets = [t for t in str(args.targets or default).split(",") if t]
        targets = [t for t in targets if t in ("tidings", "tidings-ref")] or [default]
    report: dict[str, Any] = {
        "environment": scenarios.environment(),
        "command": " ".join(["tidings", "bench", *sys.argv[2:]])
        if sys.argv[1:2] == ["bench"]
        else "",
        "results": [],
    }
    failed = False
    for target in targets:
        log.info("%s on %s", args.scenario, target)
        try:
            result = one(args.scenario, target, opts)
        except Exception as exc:
            log.exception("%s on %s failed", args.scenario, target)
            result = {"target": {"name": target}, "error": repr(exc)}
            failed = True
        result["scenario"] = args.scenario
        for warning in result.get("warnings", []):
            log.warning("%s: %s", target, warning)
        report["results"].append(result)
        print(json.dumps(summary(result)), flush=True)
    add_ratios(report["results"])
    if args.scenario == "trace":
        from tidings.bench._trace import markdown

        report["markdown"] = markdown(report["results"])
        print(report["markdown"], flush=True)
    if args.out is not None:
        write(args.out, report, append=args.append)
    if args.workdir is None and not failed:
        rmtree(workdir)
    return 1 if failed else 0


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """One line per result for the terminal."""
    out: dict[str, Any] = {"scenario": result.get("scenario"), "target": result["target"]["name"]}
    if "error" in result:
        out["error"] = result["error"]
    for key in (
        "connected",
        "total_per_conn_kib",
        "rss_per_conn_kib",
        "kernel_per_conn_kib",
        "idle_cpu_us_per_conn_per_s",
        "drained_clients",
        "came_back",
        "not_back",
        "all_back_s",
        "bystanders_dropped",
    ):
        if key in result:
            out[key] = result[key]
    if "time_to_back" in result:
        out["time_to_back"] = {
            k: result["time_to_back"].get(k) for k in ("p50_ms", "p99_ms", "max_ms")
        }
    if "probe" in result:
        out["probe"] = result["probe"]
    if "per_message" in result:
        out["per_message"] = {
            k: v for k, v in result["per_message"].items() if not isinstance(v, dict)
        }
    for step in result.get("steps", []):
        out[f"rate {step['offered_rate']:g}"] = {
            "sent": step["sent"],
            "received": step["received"],
            "lost": step["lost"],
            "p50": step["latency"]["p50_ms"],
            "p99": step["latency"]["p99_ms"],
            "p99.9": step["latency"]["p99_9_ms"],
            "max": step["latency"]["max_ms"],
            "server_cores": step["server_cpu"]["cores"],
        }
    return out


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Each figure of Tidings as a ratio against the baseline measured in the same run."""
    base = next((r for r in results if r["target"]["name"] == "baseline-websockets"), None)
    if base is None or "error" in base:
        return
    for result in results:
        if result is base or "error" in result:
            continue
        ratios: dict[str, Any] = {}
        for key in ("total_per_conn_kib", "rss_per_conn_kib", "idle_cpu_us_per_conn_per_s"):
            if result.get(key) is not None and base.get(key):
                ratios[key] = round(result[key] / base[key], 3)
        for mine, theirs in zip(result.get("steps", []), base.get("steps", []), strict=False):
            for key in ("p50_ms", "p99_ms"):
                a, b = mine["latency"].get(key), theirs["latency"].get(key)
                if a is not None and b:
                    ratios[f"rate {mine['offered_rate']:g} {key}"] = round(a / b, 2)
        result["vs_baseline"] = ratios


def write(path: Path, report: dict[str, Any], *, append: bool) -> None:
    """Write ``report`` to ``path`` as JSON; with ``append``, add it to the file's ``runs``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if append and path.exists():
        old = json.loads(path.read_text())
        old.setdefault("runs", []).append(report)
        report = old
    elif append:
        report = {"runs": [report]}
    path.write_text(json.dumps(report, indent=2) + "\n")
