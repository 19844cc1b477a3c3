"""``python e2e/fleet/run.py``: the operator at fleet scale on kwok (``make fleet``).

    .venv/bin/python e2e/fleet/run.py                         # 200 chat pods on 50 nodes
    .venv/bin/python e2e/fleet/run.py --replicas 20 --nodes 5 --steady 20

Needs the test environment (``make testenv-up``). Prints the figures and writes them as
JSON to ``--out``; exits 1 when a phase did not finish. See docs/operator.md, "At fleet
scale", and :mod:`fleet_driver`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from fleet_driver import FleetConfig, FleetError, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="e2e/fleet/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=200, help="chat pods to reach (200)")
    parser.add_argument("--nodes", type=int, default=50, help="kwok nodes to make (50)")
    parser.add_argument("--start", type=int, default=10, help="chat pods to start with (10)")
    parser.add_argument(
        "--drain-budget", type=int, default=5, help="spec.chat.drainBudgetSeconds (5)"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=None,
        help="seconds a replaced chat server takes to leave (default: the 3 s preStop pause "
        "+ the drain budget; 0: at once, as kwok deletes pods)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="records every ... s (1)")
    parser.add_argument("--steady", type=float, default=60.0, help="steady phase, s (60)")
    parser.add_argument("--out", type=Path, default=Path("fleet.json"), help="fleet.json")
    args = parser.parse_args()
    cfg = FleetConfig(
        replicas=args.replicas,
        nodes=args.nodes,
        start_replicas=args.start,
        drain_budget_s=args.drain_budget,
        drain_s=args.drain,
        interval_s=args.interval,
        steady_s=args.steady,
    )
    try:
        result = asyncio.run(run(cfg, say=lambda line: print(line, flush=True)))
    except FleetError as exc:
        print(f"fleet run failed: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
