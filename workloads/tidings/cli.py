"""The `tidings` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tidings import __version__
from tidings.client import add_chat_commands
from tidings.settings import Settings, SettingsError


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the command's flags on top; logging set up."""
    from tidings import logs

    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("host", "port", "data_dir", "metrics_host", "metrics_port")
        if getattr(args, name, None) is not None
    }
    settings = Settings(**overrides)
    logs.configure(settings.log_level, settings.log_json)
    return settings


def _up(args: argparse.Namespace) -> int:
    from tidings.public_url import with_public_chat_url
    from tidings.runtime import open_embedded
    from tidings.server import serve

    settings = with_public_chat_url(_settings(args))
    serve(settings, lambda: open_embedded(settings))
    return 0


def _rotate_jwt_key(args: argparse.Namespace) -> int:
    from tidings.auth import key_id
    from tidings.runtime import rotate_dev_secret

    settings = _settings(args)
    if settings.jwt_secret:
        print(
            "tidings rotate-jwt-key: TIDINGS_JWT_SECRET is set, and a server with it signs "
            "with that, not with the data directory's key. Rotate it by moving it into "
            "TIDINGS_JWT_PREVIOUS_SECRETS and setting a new one (docs/security.md, Tokens).",
            file=sys.stderr,
        )
        return 2
    if not settings.data_dir.is_dir():
        print(f"tidings rotate-jwt-key: no data directory {settings.data_dir}", file=sys.stderr)
        return 2
    new, previous = rotate_dev_secret(settings.data_dir, args.keep)
    print(json.dumps({"kid": key_id(new), "previous_kids": [key_id(key) for key in previous]}))
    print(
        "tidings rotate-jwt-key: a running `tidings up` signs with the new key once it is "
        "restarted; tokens of the previous keys keep working until they expire.",
        file=sys.stderr,
    )
    return 0


def _cluster_process(args: argparse.Namespace) -> int:
    from tidings.runtime_cluster import open_api, open_chat, require_cluster_settings
    from tidings.server import serve

    settings = _settings(args)
    chat = args.command == "chat"
    require_cluster_settings(settings, chat=chat)  # SettingsError: main() says what is wrong
    opener = open_chat if chat else open_api
    serve(settings, lambda: opener(settings))
    return 0


def _push(args: argparse.Namespace) -> int:
    from tidings.push.worker import run_push_worker

    settings = _settings(args)
    if not settings.postgres_url:
        print(
            "tidings push: TIDINGS_POSTGRES_URL is not set (postgresql+asyncpg://...)",
            file=sys.stderr,
        )
        return 2
    asyncio.run(run_push_worker(settings))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from tidings.migrate import ENGINES, migrate_all

    try:
        only = tuple(args.only) if args.only else ENGINES
        report = asyncio.run(migrate_all(_settings(args), only))
    except Exception as exc:
        print(f"tidings migrate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


def _exec_operator(operator_args: Sequence[str]) -> None:
    """`tidings operator ...` is `python -m tidings_operator ...`: the workloads never
    import the operator; both ship in the same distribution."""
    import os

    os.execv(sys.executable, [sys.executable, "-m", "tidings_operator", *operator_args])


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _add_listen_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--host", help=f"address {what} listens on (TIDINGS_HOST)")
    parser.add_argument("--port", type=int, help="port (TIDINGS_PORT)")


def _add_metrics_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on a port of their own, GET /metrics "
        "(TIDINGS_METRICS_PORT; default: no metrics endpoint at all)",
    )
    parser.add_argument(
        "--metrics-host",
        metavar="HOST",
        help="address the metrics port listens on (default 127.0.0.1, TIDINGS_METRICS_HOST)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``tidings`` argument parser: a subcommand per command, its function as ``handler``."""
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tidings {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up",
        help="run everything in one process on SQLite (the embedded default)",
        description="HTTP API, WebSocket gateway and push dispatch on one port, stored in "
        "SQLite under the data directory (Prometheus metrics only on --metrics-port). Every "
        "option also reads TIDINGS_<NAME>.",
    )
    up.add_argument("--host", help="address to listen on (default 127.0.0.1, TIDINGS_HOST)")
    up.add_argument("--port", type=int, help="port (default 8080, TIDINGS_PORT)")
    up.add_argument(
        "--data-dir", type=Path, help="where data lives (default ./tidings-data, TIDINGS_DATA_DIR)"
    )
    _add_metrics_flags(up)
    up.set_defaults(handler=_up)

    rotate = commands.add_parser(
        "rotate-jwt-key",
        help="embedded: a new generated token signing key; tokens of the old one keep working",
        description="For `tidings up` without TIDINGS_JWT_SECRET: generate a new signing key "
        "in the data directory and keep the current one as a previous key, which still "
        "verifies tokens (at most --keep previous keys; the tokens of older ones stop "
        "working). A running `tidings up` picks the new key up when it restarts.",
    )
    rotate.add_argument(
        "--data-dir", type=Path, help="the server's data (default ./tidings-data, TIDINGS_DATA_DIR)"
    )
    rotate.add_argument(
        "--keep",
        type=_non_negative,
        default=3,
        help="previous keys to keep accepting (default 3; 0 logs every device out)",
    )
    rotate.set_defaults(handler=_rotate_jwt_key)

    add_chat_commands(commands)

    api = commands.add_parser(
        "api",
        help="cluster: the HTTP API on PostgreSQL, Cassandra and Kafka",
        description="Stateless HTTP API; login and /v1/discover answer with the chat server "
        "that owns the user. Needs TIDINGS_JWT_SECRET, TIDINGS_POSTGRES_URL, "
        "TIDINGS_CASSANDRA_*, TIDINGS_KAFKA_*.",
    )
    _add_listen_flags(api, "the API")
    _add_metrics_flags(api)
    api.set_defaults(handler=_cluster_process, command="api")

    chat_server = commands.add_parser(
        "chat",
        help="cluster: a chat server (WebSocket gateway owning inbox partitions)",
        description="A chat server: WebSocket gateway, inbox consumer of the partitions the "
        "consumer group gives it, membership record. Also needs TIDINGS_PUBLIC_CHAT_URL and "
        "TIDINGS_SERVER_ID / TIDINGS_WORKER_ID unique per server.",
    )
    _add_listen_flags(chat_server, "the chat server")
    _add_metrics_flags(chat_server)
    chat_server.set_defaults(handler=_cluster_process, command="chat")

    push = commands.add_parser(
        "push",
        help="cluster: consume push requests and send them through APNs, FCM or a webhook",
        description="Consumes push requests from Kafka and sends them to devices (see "
        "docs/push.md). Needs TIDINGS_POSTGRES_URL, TIDINGS_KAFKA_* and the credentials of "
        "the providers in use (TIDINGS_APNS_*, TIDINGS_FCM_*, TIDINGS_WEBHOOK_*). It serves "
        "no HTTP but its metrics, and those only with --metrics-port.",
    )
    _add_metrics_flags(push)
    push.set_defaults(handler=_push)

    migrate = commands.add_parser(
        "migrate",
        help="cluster: create or upgrade the PostgreSQL schema, Cassandra keyspace and Kafka "
        "topics (idempotent)",
    )
    migrate.add_argument(
        "--only",
        action="append",
        choices=("postgres", "cassandra", "kafka"),
        help="migrate just this engine (repeatable; default: all three). The operator "
        "makes the Kafka topics and the Cassandra keyspace itself and runs "
        "`tidings migrate --only postgres` before each api pod starts.",
    )
    migrate.set_defaults(handler=_migrate)

    # Listed for --help; main() hands `tidings operator ...` over before parsing.
    commands.add_parser(
        "operator", help="run the ChatCluster operator (python -m tidings_operator)"
    )

    from tidings.bench import add_bench_arguments

    add_bench_arguments(
        commands.add_parser(
            "bench",
            help="benchmarks: idle connections, relay, fan-out, cluster, reconnect storm",
            description="Open-loop load against a server started for the run, side by side "
            "with a baseline relay; see docs/benchmarks.md.",
        )
    )

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=lambda _: print(f"tidings {__version__}") or 0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tidings`` with these arguments (default: the process's); returns the exit
    status, 2 for settings that cannot work. ``operator`` hands the process over to
    ``python -m tidings_operator``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["operator"]:
        _exec_operator(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except SettingsError as exc:  # settings that cannot work: say which, exit 2
        print(f"tidings {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            print(f"tidings {args.command}: {where or 'settings'}: {message}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
