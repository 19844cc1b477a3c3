"""The `tidings` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidings import __version__
from tidings.client import add_chat_commands


def _up(args: argparse.Namespace) -> int:
    from tidings import logs
    from tidings.runtime import open_embedded
    from tidings.server import serve
    from tidings.settings import Settings

    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    settings = Settings(**overrides)
    logs.configure(settings.log_level, settings.log_json)
    serve(settings, lambda: open_embedded(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tidings {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up",
        help="run everything in one process on SQLite (the embedded default)",
        description="HTTP API, WebSocket gateway and push dispatch on one port, stored in "
        "SQLite under the data directory. Every option also reads TIDINGS_<NAME>.",
    )
    up.add_argument("--host", help="address to listen on (default 127.0.0.1, TIDINGS_HOST)")
    up.add_argument("--port", type=int, help="port (default 8080, TIDINGS_PORT)")
    up.add_argument(
        "--data-dir", type=Path, help="where data lives (default ./tidings-data, TIDINGS_DATA_DIR)"
    )
    up.set_defaults(handler=_up)

    add_chat_commands(commands)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=lambda _: print(f"tidings {__version__}") or 0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
