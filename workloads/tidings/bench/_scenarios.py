"""The five scenarios. Each starts its target server(s), makes users, runs generator
processes against them and returns a JSON-able result."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidings.bench import _procstat as procstat
from tidings.bench._accounts import (
    Account,
    centrifugo_accounts,
    create_accounts,
    create_groups,
    plain_accounts,
)
from tidings.bench._fleet import Fleet, merge
from tidings.bench._histogram import Latency
from tidings.bench._seed import embedded_accounts, seed_mode, warn_if_fds_short
from tidings.bench._targets import (
    CENTRIFUGO_API_KEY,
    CENTRIFUGO_CHANNEL,
    CENTRIFUGO_SECRET,
    Baseline,
    Centrifugo,
    Cluster,
    Embedded,
    EmbeddedRef,
    Floor,
    Target,
)
from tidings.bench._worker import Plan

log = logging.getLogger(__name__)

SETUP_SERVER_ABOVE = 1000


@dataclass
class Options:
    workdir: Path
    workers: int = 2
    heartbeat_s: float = 5.0
    connections: int = 1000  # idle, storm
    hold_s: float = 20.0  # idle: how long the idle CPU is measured
    pairs: int = 100  # relay, cluster
    rates: list[float] = field(default_factory=lambda: [1000.0])
    duration_s: float = 10.0
    drain_s: float = 10.0
    groups: int = 1
    group_size: int = 100
    body_bytes: int = 64
    data_dir: Path | None = None  # reuse a tidings up data dir (and its users)
    testenv: dict[str, str] = field(default_factory=dict)
    chats: int = 2
    storm_timeout_s: float = 60.0
    connect_concurrency: int = 64
    ref_tree: Path | None = None  # the checkout `tidings-ref` runs (--ref-tree)
    messages: int = 2000  # trace: messages per window
    rate: float = 200.0  # trace: the fixed offered rate
    traced_rate: float | None = None  # trace: the rate under strace/py-spy (default: rate)
    trace_tools: tuple[str, ...] = ("perf", "strace", "py-spy")  # trace: tools to use
    pyspy_rate: int = 50  # trace: py-spy samples per second (it pauses the server each time)
    seed: str = "auto"  # how users are made: direct (embedded only), api, auto (--seed)


def make_target(name: str, opts: Options) -> Target:
    workdir = opts.workdir / name
    if name == "tidings":
        return Embedded(workdir, opts.data_dir)
    if name == "tidings-ref":
        if opts.ref_tree is None:
            raise ValueError("target tidings-ref needs --ref-tree PATH (a checkout to run)")
        # Its own data: the current tree may have changed the schema of the files.
        data_dir = opts.data_dir.with_name(opts.data_dir.name + "-ref") if opts.data_dir else None
        return EmbeddedRef(workdir, opts.ref_tree, data_dir)
    if name == "baseline":
        return Baseline(workdir, compression=True)
    if name == "baseline-nocompress":
        return Baseline(workdir, compression=False)
    if name == "floor":
        return Floor(workdir)
    if name == "centrifugo":
        return Centrifugo(workdir)
    raise ValueError(f"unknown target {name!r}")


def _accounts(
    target: Target, n: int, opts: Options, channels: list[str] | None = None
) -> list[Account]:
    if target.dialect == "baseline":
        return plain_accounts(n)
    if target.dialect == "centrifugo":
        if channels:
            per = -(-n // len(channels))
            out: list[Account] = []
            for g, channel in enumerate(channels):
                chunk = centrifugo_accounts(per, CENTRIFUGO_SECRET, channel)
                for a in chunk:
                    a["user_id"] = a["username"] = f"c{g}_{a['user_id']}"
                out += chunk
            return out[:n]
        return centrifugo_accounts(n, CENTRIFUGO_SECRET, CENTRIFUGO_CHANNEL)
    cache = None
    if isinstance(target, Embedded) and opts.data_dir is not None:
        cache = target.data_dir / "bench-accounts.json"
    t0 = time.monotonic()
    mode = seed_mode(target, opts.seed)
    if mode == "direct":
        assert isinstance(target, Embedded)
        # Straight into the stopped server's SQLite directory (tidings.bench._seed).
        accounts = embedded_accounts(target, n, cache)
    else:
        # Many signups go to a setup server (see Embedded.setup_mode); a few need no restart.
        setup = target if isinstance(target, Embedded) and n > SETUP_SERVER_ABOVE else None
        if setup is not None:
            setup.setup_mode(True)
        accounts = create_accounts(target.api_url, n, cache=cache)
        if setup is not None:
            setup.setup_mode(False)
        if isinstance(target, Embedded):
            for account in accounts:  # cached ones name the port of an earlier run
                account["chat_url"] = target.ws_url
    log.info("%d accounts ready (%s) in %.1fs", n, mode, time.monotonic() - t0)
    if isinstance(target, Embedded):
        warn_if_fds_short(target, n)
    return accounts


def _hosts(w: int) -> list[str]:
    return [
        f"127.0.{1 + w // 100}.{10 + 2 * (w % 100)}",
        f"127.0.{1 + w // 100}.{11 + 2 * (w % 100)}",
    ]


def _split(items: list[Any], k: int) -> list[list[Any]]:
    return [items[i::k] for i in range(k)]


def _plan(target: Target, accounts: list[Account], w: int, opts: Options, **kw: Any) -> Plan:
    return Plan(
        dialect=target.dialect,
        accounts=accounts,
        url=target.ws_url,
        local_hosts=_hosts(w),
        deflate=target.deflate,
        heartbeat_s=opts.heartbeat_s,
        body_bytes=opts.body_bytes,
        api_url=target.api_url,
        api_key=CENTRIFUGO_API_KEY,
        connect_concurrency=opts.connect_concurrency,
        **kw,
    )


def environment() -> dict[str, Any]:
    import platform
    import sys

    from websockets.version import version as websockets_version

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    cpu_model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "loadavg": [float(x) for x in load],
        "mem_total_mib": mem_kib // 1024,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "websockets": websockets_version,
        "note": "shared machine: other people's work ran at the same time",
    }


# --- 1: idle ---------------------------------------------------------------------------


def idle(target: Target, opts: Options) -> dict[str, Any]:
    n = opts.connections
    target.start()
    fleet: Fleet | None = None
    try:
        accounts = _accounts(target, n, opts)
        time.sleep(2.0)
        pid = target.server_pids[0]
        rss0 = procstat.rss_bytes(pid)
        sockstat0 = procstat.sockstat_mem_bytes()
        plans = [
            _plan(target, chunk, w, opts) for w, chunk in enumerate(_split(accounts, opts.workers))
        ]
        setup_cpu = procstat.CpuMeter([pid])
        setup_cpu.start()
        t0 = time.monotonic()
        fleet = Fleet(plans)
        connect_s = time.monotonic() - t0
        time.sleep(3.0)  # let the last handshakes and sync answers settle
        setup = setup_cpu.stop()
        server_cpu, gen_cpu = procstat.CpuMeter([pid]), fleet.meter()
        server_cpu.start()
        gen_cpu.start()
        results = fleet.command("idle", opts.hold_s, timeout=opts.hold_s + 120)
        server = server_cpu.stop()
        generators = gen_cpu.stop()
        rss1 = procstat.rss_bytes(pid)
        sockets, buffers = 0, 0
        for port in target.ports:
            s, b = procstat.socket_buffer_bytes(port)
            sockets += s
            buffers += b
        slabs = procstat.socket_object_bytes()
        connected = fleet.connected
        merged = merge(results)
        per_conn_rss = (rss1 - rss0) / max(connected, 1)
        per_conn_kernel = buffers / max(sockets, 1) + sum(slabs.values())
        return {
            "target": target.describe(),
            "connections_asked": n,
            **fleet.connect_summary(),
            "connect_rate_per_s": round(connected / max(connect_s, 1e-9), 1),
            "server_sockets": sockets,
            "server_rss_before_mib": round(rss0 / 2**20, 1),
            "server_rss_after_mib": round(rss1 / 2**20, 1),
            "rss_per_conn_kib": round(per_conn_rss / 1024, 2),
            "kernel_buffers_per_conn_bytes": round(buffers / max(sockets, 1), 1),
            "kernel_socket_objects_bytes": slabs,
            "kernel_per_conn_kib": round(per_conn_kernel / 1024, 2),
            "total_per_conn_kib": round((per_conn_rss + per_conn_kernel) / 1024, 2),
            "sockstat_tcp_mem_delta_mib": round(
                (procstat.sockstat_mem_bytes() - sockstat0) / 2**20, 2
            ),
            # Accept, HTTP upgrade, handshake, hello, welcome, synced (and retries).
            "setup_cpu_us_per_conn": round(setup["cpu_s"] * 1e6 / max(connected, 1), 1),
            "heartbeat_s": opts.heartbeat_s if target.dialect != "centrifugo" else "server pings",
            "hold_s": opts.hold_s,
            "server_cpu": server,
            "generator_cpu": generators,
            "idle_cpu_us_per_conn_per_s": round(
                server["cpu_s"] * 1e6 / max(connected, 1) / max(server["wall_s"], 1e-9), 3
            ),
            "errors": merged["errors"],
        }
    finally:
        if fleet is not None:
            fleet.close()
        target.stop()


# --- 2 and 4: 1:1 relay at fixed rates --------------------------------------------------


def _relay_steps(
    target: Target,
    accounts: list[Account],
    opts: Options,
    extra_pids: dict[str, list[int]] | None = None,
    fanout: int = 1,
) -> dict[str, Any]:
    """``accounts`` in pairs (a0, b0, a1, b1, ...): each a sends to its b."""
    pairs = [(accounts[2 * i], accounts[2 * i + 1]) for i in range(len(accounts) // 2)]
    chunks = _split(pairs, opts.workers)
    plans = []
    for w, chunk in enumerate(chunks):
        flat = [a for pair in chunk for a in pair]
        senders: list[tuple[int, Any]] = [
            (2 * i, b["user_id"] if target.dialect == "tidings" else [b["user_id"]])
            for i, (_, b) in enumerate(chunk)
        ]
        plans.append(_plan(target, flat, w, opts, senders=senders))
    return _run_steps(target, plans, opts, extra_pids, fanout=fanout)


def _run_steps(
    target: Target,
    plans: list[Plan],
    opts: Options,
    extra_pids: dict[str, list[int]] | None,
    fanout: int,
) -> dict[str, Any]:
    fleet = Fleet(plans)
    steps = []
    try:
        connect = fleet.connect_summary()
        time.sleep(1.0)
        senders = sum(1 for p in plans if p.senders)
        # Warm-up, not recorded: first connections of HTTP clients, caches, JIT-less paths.
        warm = min(opts.rates) / max(senders, 1)
        start = time.monotonic_ns() + 200_000_000
        fleet.command("run", warm, start, 1.0, timeout=120)
        time.sleep(2.0)
        fleet.command("reset")
        for rate in opts.rates:
            per_worker = rate / max(senders, 1)
            base = time.monotonic_ns() + 500_000_000
            gap = int(1e9 / max(rate, 1e-9))
            server = procstat.CpuMeter(target.server_pids)
            gens = fleet.meter()
            backends = {k: procstat.CpuMeter(v) for k, v in (extra_pids or {}).items()}
            for meter in (server, gens, *backends.values()):
                meter.start()
            sent_reports = fleet.send_each(
                [
                    (
                        "run",
                        per_worker if plan.senders else 0.0,
                        base + w * gap // len(plans),
                        opts.duration_s,
                    )
                    for w, plan in enumerate(plans)
                ],
                timeout=opts.duration_s + 120,
            )
            expected = sum(r["sent"] for r in sent_reports) * fanout
            deadline = time.monotonic() + opts.drain_s
            while time.monotonic() < deadline:
                if sum(r["received"] for r in fleet.command("progress")) >= expected:
                    break
                time.sleep(0.1)
            results = fleet.command("results")
            server_cpu = server.stop()
            merged = merge(results)
            counts = merged["counts"]
            sent, received = counts.get("sent", 0), counts.get("received", 0)
            step = {
                "offered_rate": rate,
                "duration_s": opts.duration_s,
                "sent": sent,
                "expected_deliveries": expected,
                "received": received,
                "delivered_rate": round(received / opts.duration_s, 1),
                "lost": max(0, expected - received),
                **merged,
                "server_cpu": server_cpu,
                "generator_cpu": gens.stop(),
                "server_cpu_us_per_message": round(server_cpu["cpu_s"] * 1e6 / max(sent, 1), 1),
            }
            if backends:
                cpu = {k: m.stop() for k, m in backends.items()}
                total = sum(c["cpu_s"] for c in cpu.values())
                step["backend_cpu"] = cpu
                step["persistence_cpu_us_per_message"] = round(total * 1e6 / max(sent, 1), 1)
            steps.append(step)
            fleet.command("reset")  # fresh counters and histograms for the next step
            time.sleep(1.0)
        return {"target": target.describe(), **connect, "steps": steps}
    finally:
        fleet.close()


def relay(target: Target, opts: Options) -> dict[str, Any]:
    target.start()
    try:
        accounts = _accounts(target, 2 * opts.pairs, opts)
        out = _relay_steps(target, accounts, opts)
        out["pairs"] = opts.pairs
        return out
    finally:
        target.stop()


# --- 3: group fan-out -------------------------------------------------------------------


def fanout(target: Target, opts: Options) -> dict[str, Any]:
    size, groups = opts.group_size, opts.groups
    target.start()
    try:
        channels = [f"{CENTRIFUGO_CHANNEL}{g}" for g in range(groups)]
        accounts = _accounts(target, size * groups, opts, channels=channels)
        members = [accounts[g * size : (g + 1) * size] for g in range(groups)]
        if target.dialect == "tidings":
            channels = asyncio.run(create_groups(target.api_url, members))
        per_worker: list[list[tuple[list[Account], str]]] = _split(
            list(zip(members, channels, strict=True)), min(opts.workers, groups)
        )
        # Members of a group are spread over every generator; the sender is the first.
        plans = []
        workers = opts.workers
        flat_by_worker: list[list[Account]] = [[] for _ in range(workers)]
        senders_by_worker: list[list[tuple[int, Any]]] = [[] for _ in range(workers)]
        for chunk in per_worker:
            for group, channel in chunk:
                for i, account in enumerate(group):
                    w = i % workers
                    if i == 0:
                        if target.dialect == "tidings":
                            tgt: Any = channel
                        elif target.dialect == "baseline":
                            tgt = [a["user_id"] for a in group[1:]]
                        else:
                            tgt = channel
                        senders_by_worker[w].append((len(flat_by_worker[w]), tgt))
                    flat_by_worker[w].append(account)
        # Every worker sends at the same share of the rate only if it has senders.
        for w in range(workers):
            plans.append(_plan(target, flat_by_worker[w], w, opts, senders=senders_by_worker[w]))
        sending = [p for p in plans if p.senders]
        quiet = [p for p in plans if not p.senders]
        receivers = size if target.dialect == "centrifugo" else size - 1
        out = _run_steps(target, sending + quiet, opts, None, fanout=receivers)
        out.update({"groups": groups, "group_size": size})
        if target.dialect == "centrifugo":
            out["note"] = (
                "publications through Centrifugo's HTTP API (the app backend's path); the "
                "publisher is not a subscriber, so every member receives"
            )
        return out
    finally:
        target.stop()


# --- 4: the cluster ---------------------------------------------------------------------


def cluster(opts: Options) -> dict[str, Any]:
    target = Cluster(opts.workdir / "cluster", opts.testenv, chats=opts.chats)
    target.start()
    try:
        accounts = _accounts(target, 2 * opts.pairs, opts)
        target.wait_settled(accounts)
        out = _relay_steps(target, accounts, opts, extra_pids=target.backend_pids())
        out.update({"pairs": opts.pairs, "chat_servers": opts.chats})
        return out
    finally:
        target.stop()


# --- 5: reconnect storm -----------------------------------------------------------------


def storm(kind: str, opts: Options) -> dict[str, Any]:
    """``kind`` "tidings": drain `tidings up` (SIGTERM) and start it again on the same
    port and data; "cluster": drain one of the chat servers, its clients move over."""
    target: Embedded | Cluster
    if kind == "cluster":
        target = Cluster(opts.workdir / "storm-cluster", opts.testenv, chats=opts.chats)
    else:
        target = Embedded(opts.workdir / "storm", opts.data_dir)
    target.start()
    fleet: Fleet | None = None
    try:
        accounts = _accounts(target, opts.connections, opts)
        if isinstance(target, Cluster):
            target.wait_settled(accounts)
            victim_url = f"ws://{target.host}:{target.chat_ports[0]}/v1/ws"
            expected = sum(a["chat_url"] == victim_url for a in accounts)
        else:
            expected = len(accounts)
        plans = [
            _plan(target, chunk, w, opts) for w, chunk in enumerate(_split(accounts, opts.workers))
        ]
        fleet = Fleet(plans)
        connected = fleet.connected
        fleet.command("storm")
        t_drain = time.monotonic_ns()
        restart: threading.Thread | None = None
        if isinstance(target, Cluster):
            target.chat_procs[0].signal(15)
        else:
            target.procs[0].signal(15)
            restart = threading.Thread(target=target.restart, daemon=True)
            restart.start()
        deadline = time.monotonic() + opts.storm_timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.25)
            counts = fleet.command("count")
            live = sum(c["live"] for c in counts)
            back = sum(c["reconnects"] for c in counts)
            if back >= expected and live >= connected:
                break
        if restart is not None:
            restart.join(60)
        results = fleet.command("collect")
        back_times = sorted(t for r in results for t in r.get("back_times", []))
        down_times = sorted(t for r in results for t in r.get("down_times", []))
        hist = Latency()
        for t in back_times:
            hist.record_ns(t - t_drain)
        merged = merge(results)
        return {
            "target": {**target.describe(), "storm": kind},
            "connections": connected,
            "drained_clients": expected,
            "came_back": len(back_times),
            "all_back_s": round((back_times[-1] - t_drain) / 1e9, 3) if back_times else None,
            "back_within_10s": sum(1 for t in back_times if t - t_drain <= 10e9),
            "first_disconnect_s": round((down_times[0] - t_drain) / 1e9, 3) if down_times else None,
            "last_disconnect_s": round((down_times[-1] - t_drain) / 1e9, 3) if down_times else None,
            "time_to_back": hist.summary(),
            "server_ready_again_s": (
                round((target.ready_at_ns - t_drain) / 1e9, 3)
                if isinstance(target, Embedded) and target.ready_at_ns > t_drain
                else None
            ),
            "counts": merged["counts"],
            "errors": merged["errors"],
        }
    finally:
        if fleet is not None:
            fleet.close()
        target.stop()
