"""What processes and the kernel spend: CPU and RSS from /proc, socket memory from
``ss -tm`` and the slab object sizes a TCP socket costs."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _process_table() -> dict[int, tuple[int, int]]:
    """Every process: pid -> (parent pid, session id), from /proc/<pid>/stat."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), int(fields[3]))
    return table


def session_pids(sid: int) -> list[int]:
    """Every process in session ``sid`` (the test environment starts each daemon with
    setsid, so a service is its session)."""
    return [pid for pid, (_, session) in _process_table().items() if session == sid]


def family(pid: int) -> list[int]:
    """``pid``, every process in its session and every descendant."""
    table = _process_table()
    parents = {p: parent for p, (parent, _) in table.items()}
    sessions = {p: session for p, (_, session) in table.items()}
    found = {pid} | {p for p, s in sessions.items() if s == pid}
    grew = True
    while grew:
        more = {p for p, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return sorted(p for p in found if p in parents)


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes, summed."""
    return sum(cpu_seconds(p) for p in pids)


@dataclass
class CpuMeter:
    """CPU seconds of some processes over a wall-clock window."""

    pids: list[int]
    start_cpu: float = 0.0
    start_wall: float = 0.0

    def start(self) -> None:
        """Start the window now."""
        self.start_cpu = tree_cpu_seconds(self.pids)
        self.start_wall = _now()

    def stop(self) -> dict[str, float]:
        """CPU seconds, wall seconds and cores (CPU over wall) since :meth:`start`."""
        cpu = tree_cpu_seconds(self.pids) - self.start_cpu
        wall = max(_now() - self.start_wall, 1e-9)
        return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "cores": round(cpu / wall, 3)}


def _now() -> float:
    import time

    return time.monotonic()


_SKMEM = re.compile(r"skmem:\(([^)]*)\)")


def socket_buffer_bytes(port: int) -> tuple[int, int]:
    """(sockets, bytes) of the established TCP sockets whose local port is ``port``:
    receive + send queues, forward allocation and option memory from ``ss -tm``."""
    out = subprocess.run(
        ["ss", "-tmnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sockets = total = 0
    for match in _SKMEM.finditer(out):
        fields = dict(_split_skmem(item) for item in match.group(1).split(","))
        sockets += 1
        total += sum(fields.get(k, 0) for k in ("r", "w", "f", "o", "bl"))
    return sockets, total


def _split_skmem(item: str) -> tuple[str, int]:
    name = item.rstrip("0123456789")
    return name, int(item[len(name) :] or 0)


# Kernel objects behind one accepted TCP socket in an epoll loop.
_SOCKET_SLABS = ("TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq")


def socket_object_bytes() -> dict[str, int]:
    """Object sizes (bytes) of the slab caches one TCP socket uses (needs root)."""
    sizes: dict[str, int] = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] in _SOCKET_SLABS:
                    sizes[parts[0]] = int(parts[3])
    except OSError:
        pass
    return sizes


def sockstat_mem_bytes() -> int:
    """The kernel's TCP buffer memory (/proc/net/sockstat ``mem``, all sockets)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * PAGE
    return 0


def raise_nofile(limit: int = 1 << 20) -> int:
    """Raise RLIMIT_NOFILE as far as allowed; returns the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (limit, 262144, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            return want
        except (ValueError, OSError):
            continue
    return soft
