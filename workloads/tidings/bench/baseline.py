"""The baseline: a minimal relay server written the obvious way with the ``websockets``
library and its defaults (permessage-deflate on, pings every 20 s, a task per connection).

    python -m tidings.bench.baseline --port 9000 [--no-compression]

Frames (JSON text): ``{"type": "hello", "user": U}`` → ``welcome``;
``{"type": "send", "client_msg_id": C, "to": [U, ...], "body": B}`` → ``msg`` to every
connection of every ``to`` user, then ``ack`` to the sender; ``{"type": "heartbeat"}`` →
``heartbeat_ack``. Nothing is stored: it is the cost floor of relaying over WebSockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve

users: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    """Serve one connection: the frames of the module docstring, until it closes."""
    user: str | None = None
    try:
        async for raw in ws:
            frame: dict[str, Any] = json.loads(raw)
            kind = frame.get("type")
            if kind == "hello":
                user = str(frame["user"])
                users.setdefault(user, set()).add(ws)
                await ws.send(json.dumps({"type": "welcome", "user": user}))
            elif kind == "send" and user is not None:
                out = json.dumps({"type": "msg", "from": user, "body": frame["body"]})
                targets = [c for u in frame["to"] for c in users.get(str(u), ())]
                broadcast(targets, out)
                ack = {"type": "ack", "client_msg_id": frame.get("client_msg_id")}
                await ws.send(json.dumps(ack))
            elif kind == "heartbeat":
                await ws.send('{"type": "heartbeat_ack"}')
    finally:
        if user is not None:
            conns = users.get(user)
            if conns is not None:
                conns.discard(ws)
                if not conns:
                    del users[user]


async def main(host: str, port: int, compression: bool) -> None:
    """Serve on ``host``:``port`` until SIGTERM or SIGINT."""
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler, host, port, compression="deflate" if compression else None, backlog=4096
    ):
        await stop


def run(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="tidings.bench.baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--no-compression", action="store_true")
    args = parser.parse_args(argv)
    from tidings.bench._procstat import raise_nofile

    raise_nofile()
    asyncio.run(main(args.host, args.port, not args.no_compression))


if __name__ == "__main__":
    run()
