"""The floor: what answering a heartbeat costs when the server does nothing else.

    python -m tidings.bench.floor --port 9000

A bare ``asyncio.Protocol`` on uvloop (as ``tidings up`` runs): the opening handshake,
then every chunk of bytes a client sends is answered with one fixed ``heartbeat_ack``
frame (the first, its ``hello``, with a ``welcome``), without reading what it says. No
parsing, no registry, no timers: one ``recv`` and one ``send`` per heartbeat, which is
what the kernel and the event loop charge any server for it. The idle scenario runs it
beside Tidings so the heartbeat figures have their floor from the same run.
"""

from __future__ import annotations

import argparse
import asyncio

from tidings.gateway.framing import OP_TEXT, encode_frame
from tidings.gateway.handshake import answer

WELCOME = encode_frame(OP_TEXT, b'{"type":"welcome"}')
HEARTBEAT_ACK = encode_frame(OP_TEXT, b'{"type":"heartbeat_ack","ts":0}')


class Floor(asyncio.Protocol):
    __slots__ = ("head", "said_hello", "transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Wait for the opening handshake."""
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.head: bytes | None = b""
        self.said_hello = False

    def data_received(self, data: bytes) -> None:
        """Gather the opening handshake and answer it (closing if it is refused); after
        that, answer each chunk with ``welcome`` (the first) or ``heartbeat_ack``, unread."""
        if self.head is None:
            self.transport.write(HEARTBEAT_ACK if self.said_hello else WELCOME)
            self.said_hello = True
            return
        head, blank, _ = (self.head + data).partition(b"\r\n\r\n")
        if not blank:
            self.head = head
            return
        outcome = answer(head, "/")
        self.transport.write(outcome.response)
        self.head = None
        if not outcome.accepted:
            self.transport.close()


async def main(host: str, port: int) -> None:
    """Serve on ``host``:``port`` forever."""
    server = await asyncio.get_running_loop().create_server(Floor, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def run(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring), on uvloop."""
    parser = argparse.ArgumentParser(prog="tidings.bench.floor", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    from tidings.bench._procstat import raise_nofile

    raise_nofile()
    import uvloop

    uvloop.run(main(args.host, args.port))


if __name__ == "__main__":
    run()
