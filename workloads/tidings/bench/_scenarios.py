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
from tidings.bench._seed import (
    cluster_accounts,
    embedded_accounts,
    seed_mode,
    warn_if_fds_short,
)
from tidings.bench._worker import Plan
from tidings.bench.targets import (
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

log = logging.getLogger(__name__)

SETUP_SERVER_ABOVE = 1000


@dataclass
class Options:
    workdir: Path
    workers: int = 2
    heartbeat_s: float = 5.0
    connections: int = 1000  # idle, storm (cluster storm: the drained server's clients)
    bystanders: int | None = None  # cluster storm: clients kept on the other servers
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
    """The target called ``name``, not started yet; ``ValueError`` for an unknown name (or
    ``tidings-ref`` without ``--ref-tree``)."""
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
    if name == "cluster":
        return Cluster(workdir, opts.testenv, chats=opts.chats)
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
    if isinstance(target, Cluster):
        accounts = cluster_accounts(target, n, mode)
        log.info("%d accounts made (%s) in %.1fs", n, mode, time.monotonic() - t0)
        target.wait_settled(accounts)  # each account's chat_url: its server now
    elif mode == "direct":
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


def _backend_pids(target: Target) -> dict[str, list[int]] | None:
    """PostgreSQL, Kafka and Cassandra of a cluster target, measured with the servers."""
    return target.backend_pids() if isinstance(target, Cluster) else None


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
    """The machine the run is on: date, CPUs, load, memory, kernel and versions."""
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
    """Scenario 1: hold ``connections`` idle connections (heartbeats only) for ``hold_s``;
    memory per connection (the server's RSS, the kernel's buffers and socket objects),
    setup and idle CPU."""
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
    return _run_steps(target, _pair_plans(target, pairs, opts), opts, extra_pids, fanout=fanout)


def _pair_plans(
    target: Target,
    pairs: list[tuple[Account, Account]],
    opts: Options,
    others: list[Account] | None = None,
) -> list[Plan]:
    """One plan per generator: its share of ``pairs`` (each first sends to its second)
    and of ``others`` (connected, not sending)."""
    plans = []
    rest = _split(others or [], opts.workers)
    for w, chunk in enumerate(_split(pairs, opts.workers)):
        flat = [a for pair in chunk for a in pair] + rest[w]
        senders: list[tuple[int, Any]] = [
            (2 * i, b["user_id"] if target.dialect == "tidings" else [b["user_id"]])
            for i, (_, b) in enumerate(chunk)
        ]
        plans.append(_plan(target, flat, w, opts, senders=senders))
    return plans


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
                if fanout > 1:
                    per_delivery = total * 1e6 / max(received, 1)
                    step["persistence_cpu_us_per_delivery"] = round(per_delivery, 1)
            steps.append(step)
            fleet.command("reset")  # fresh counters and histograms for the next step
            time.sleep(1.0)
        return {"target": target.describe(), **connect, "steps": steps}
    finally:
        fleet.close()


def relay(target: Target, opts: Options) -> dict[str, Any]:
    """Scenario 2: ``pairs`` 1:1 pairs, each sender to its receiver, at each of the rates."""
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
    """Scenario 3: ``groups`` groups of ``group_size``, the first member of each sending to
    the group, at each of the rates."""
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
        out = _run_steps(target, sending + quiet, opts, _backend_pids(target), fanout=receivers)
        out.update({"groups": groups, "group_size": size})
        if isinstance(target, Cluster):
            out["chat_servers"] = opts.chats
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
    """Scenario 4: the 1:1 relay on the test environment's cluster (``chats`` chat servers)."""
    target = make_target("cluster", opts)
    target.start()
    try:
        accounts = _accounts(target, 2 * opts.pairs, opts)
        out = _relay_steps(target, accounts, opts, extra_pids=_backend_pids(target))
        out.update({"pairs": opts.pairs, "chat_servers": opts.chats})
        return out
    finally:
        target.stop()


# --- 5: reconnect storm -----------------------------------------------------------------

# Messages sent across a storm, each checked for delivery: this many pairs, this rate in
# all (messages/s), from a second before the SIGTERM until every drained client is back.
PROBE_PAIRS = 10
PROBE_RATE = 10.0


def _storm_accounts(target: Embedded | Cluster, opts: Options) -> tuple[list[Account], str]:
    """The storm's clients and the URL of the server to drain. Embedded: ``connections``
    clients, all on the one server. Cluster: ``connections`` clients on the first chat
    server (the one drained) and ``bystanders`` (default a tenth of that, at least
    PROBE_PAIRS) on the others. A user's server is its partition's owner, so accounts
    are made in rounds (about ``chats`` times as many as the drained server needs) and
    those beyond the counts are not connected."""
    if not isinstance(target, Cluster):
        return _accounts(target, opts.connections, opts), target.ws_url
    if opts.chats < 2:
        raise ValueError("storm --targets cluster needs --chats 2 or more (one is drained)")
    drained_url = target.chat_urls[0]
    want = opts.connections
    others_wanted = opts.bystanders
    if others_wanted is None:
        others_wanted = max(PROBE_PAIRS, want // 10)
    mine: list[Account] = []
    others: list[Account] = []
    for _ in range(6):
        short = max(
            (want - len(mine)) * opts.chats,
            (others_wanted - len(others)) * opts.chats / (opts.chats - 1),
        )
        if short <= 0:
            break
        for account in _accounts(target, int(short * 1.1) + 16, opts):
            (mine if account["chat_url"] == drained_url else others).append(account)
    if len(mine) < want or len(others) < others_wanted:
        raise RuntimeError(f"{len(mine)} of {want} accounts on the drained server")
    accounts = mine[:want] + others[:others_wanted]
    warn_if_fds_short(target, len(accounts))  # the server left holds them all
    return accounts, drained_url


def _storm_census(target: Target, fleet: Fleet) -> dict[str, Any]:
    """Clients connected, by server URL as the generators see them, and established
    sockets on each server's port as the kernel sees them."""
    by_url: dict[str, int] = {}
    for count in fleet.command("count"):
        for url, live in count["live_by_url"].items():
            by_url[url] = by_url.get(url, 0) + live
    sockets = {str(port): procstat.socket_buffer_bytes(port)[0] for port in target.ports}
    return {"clients_by_server": by_url, "server_sockets_by_port": sockets}


def _drain_settings(target: Embedded | Cluster, clients: int) -> dict[str, Any]:
    """What the drained server was told to do (its settings from its environment)."""
    from tidings.bench._seed import server_settings

    settings = server_settings(target._env(), target.workdir)
    if isinstance(target, Embedded):
        low, high = settings.restart_reconnect_window_ms
        return {"budget_s": settings.drain_budget_s, "restart_reconnect_ms": [low, high]}
    return {
        "budget_s": settings.drain_budget_s,
        "admit_per_s": settings.drain_admit_per_s,
        "min_spread_s": settings.drain_min_spread_s,
        "spread_s": round(settings.drain_spread_s(clients), 3),
    }


def _probe(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether every acked probe message reached its receiver, and once."""
    refs: dict[str, list[str]] = {"sent": [], "acked": [], "received": []}
    for result in results:
        for key, values in result.get("refs", {}).items():
            refs[key] += values
    acked, received = set(refs["acked"]), set(refs["received"])
    return {
        "sent": len(refs["sent"]),
        "acked": len(acked),
        "delivered": len(received),
        "acked_not_delivered": len(acked - received),
        "duplicate_deliveries": len(refs["received"]) - len(received),
        # the bench client does not resend what a dropped connection left unacked
        "unacked": len(set(refs["sent"]) - acked),
        "unacked_delivered": len((set(refs["sent"]) - acked) & received),
    }


def _phases(results: list[dict[str, Any]], t_drain: int) -> dict[str, Any]:
    """Where a drained client's time to back went, over the attempt that brought it
    back: from the SIGTERM to that attempt (the reconnect's after_ms and the failed
    attempts before), its /v1/discover, and from its answer to ``synced`` (connect,
    hello, sync)."""
    waited, discover, hello = Latency(), Latency(), Latency()
    attempts: dict[str, int] = {}
    for result in results:
        for tried, discovered, n, back in result["drained_phases"]:
            waited.record_ns(tried - t_drain)
            discover.record_ns(discovered - tried)
            hello.record_ns(back - discovered)
            attempts[str(n)] = attempts.get(str(n), 0) + 1
    return {
        "until_last_attempt": waited.summary(),
        "discover": discover.summary(),
        "hello_to_synced": hello.summary(),
        "attempts": dict(sorted(attempts.items(), key=lambda kv: int(kv[0]))),
    }


def _seconds(ns: int) -> float:
    return round(ns / 1e9, 3)


def storm(kind: str, opts: Options) -> dict[str, Any]:
    """``kind`` "tidings": drain `tidings up` (SIGTERM) and start it again on the same
    port and data; "cluster": drain one of the chat servers, its clients move over.
    Times are from the SIGTERM to each drained client's first ``synced`` after its
    drop; probe messages to drained clients, sent from a second before the SIGTERM until
    they are all back, must each be delivered once if acked."""
    target: Embedded | Cluster
    if kind == "cluster":
        target = Cluster(opts.workdir / "storm-cluster", opts.testenv, chats=opts.chats)
    else:
        target = Embedded(opts.workdir / "storm", opts.data_dir)
    target.start()
    fleet: Fleet | None = None
    try:
        accounts, drained_url = _storm_accounts(target, opts)
        drained = [a for a in accounts if a["chat_url"] == drained_url]
        others = [a for a in accounts if a["chat_url"] != drained_url]
        # Senders on the servers not drained when there are any (else drained ones too).
        senders, receivers = (others, drained) if others else (drained[1::2], drained[0::2])
        pairs = list(zip(senders, receivers, strict=False))[:PROBE_PAIRS]
        paired = {a["user_id"] for pair in pairs for a in pair}
        rest = [a for a in accounts if a["user_id"] not in paired]
        plans = _pair_plans(target, pairs, opts, rest)
        fleet = Fleet(plans)
        connected = fleet.connected
        before = _storm_census(target, fleet)
        fleet.command("storm", drained_url)
        start = time.monotonic_ns() + 100_000_000
        sending = sum(1 for p in plans if p.senders)
        fleet.command("send", PROBE_RATE / max(sending, 1), start, opts.storm_timeout_s + 5)
        time.sleep(1.1)
        # The API, the chat servers left and Kafka and Cassandra while the clients come
        # back (not PostgreSQL: the drained server's connections end, and with them the
        # backend processes whose CPU the sum started from).
        meters: dict[str, procstat.CpuMeter] = {}
        if isinstance(target, Cluster):
            meters["api"] = procstat.CpuMeter([target.procs[0].pid])
            meters["chat_left"] = procstat.CpuMeter([p.pid for p in target.chat_procs[1:]])
            backends = target.backend_pids()
            meters.update({k: procstat.CpuMeter(backends[k]) for k in ("kafka", "cassandra")})
        meters["generators"] = fleet.meter()
        for meter in meters.values():
            meter.start()
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
            back = sum(c["drained_back"] for c in counts)
            if back >= sum(c["drained"] for c in counts) and sum(c["live"] for c in counts) >= (
                connected
            ):
                break
        storm_s = (time.monotonic_ns() - t_drain) / 1e9
        cpu = {k: m.stop() for k, m in meters.items()}  # from the SIGTERM until all back
        time.sleep(1.0)  # probes to clients that are back, too
        fleet.command("stop_sending")
        deadline = time.monotonic() + opts.drain_s
        while time.monotonic() < deadline:
            progress = fleet.command("progress")
            if sum(p["received"] for p in progress) >= sum(p["acked"] for p in progress):
                break
            time.sleep(0.2)
        if restart is not None:
            restart.join(60)
        after = _storm_census(target, fleet)
        results = fleet.command("collect")
        times = [tuple(t) for r in results for t in r["drained_times"]]
        back_times = sorted(back - t_drain for _, back, _ in times if back)
        down_times = sorted(down - t_drain for down, _, _ in times if down)
        bystanders = [tuple(t) for r in results for t in r["bystander_times"]]
        hist = Latency()
        for t in back_times:
            hist.record_ns(t)
        merged = merge(results)
        return {
            "target": {**target.describe(), "storm": kind},
            "connections": connected,
            **fleet.connect_summary(),
            "drained_clients": len(times),
            "came_back": len(back_times),
            "not_back": len(times) - len(back_times),
            "dropped_more_than_once": sum(1 for _, _, drops in times if drops > 1),
            "all_back_s": _seconds(back_times[-1]) if back_times else None,
            "back_within_10s": sum(1 for t in back_times if t <= 10e9),
            "first_disconnect_s": _seconds(down_times[0]) if down_times else None,
            "last_disconnect_s": _seconds(down_times[-1]) if down_times else None,
            "time_to_back": hist.summary(),
            "time_to_back_phases": _phases(results, t_drain),
            "waited_s": round(storm_s, 3),
            "bystanders": connected - len(times),
            # clients of the servers not drained that lost their connection anyway
            "bystanders_dropped": len(bystanders),
            "before": before,
            "after": after,
            "drain": _drain_settings(target, len(times)),
            "cpu": cpu,
            "probe": _probe(results),
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
