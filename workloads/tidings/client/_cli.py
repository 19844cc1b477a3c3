"""``tidings client signup|login|send|listen|...``: the client library from a shell.

Beside the chat commands: ``reply``, ``edit``, ``delete`` and ``react`` (acting on a
message: issue #20 in docs/protocol.md), ``channels`` (with unread counts and read
marks), ``send-file`` and ``fetch-file`` (media: docs/protocol.md),
``logout``, ``devices``, ``unlink``, ``find``, ``friends``,
``befriend``, ``unfriend``, ``block``, ``unblock``, ``blocked``, ``invites``, ``join`` and
``decline`` (sessions, devices, friend requests, blocks and group invites: issue #15 in
docs/protocol.md). A USER argument is a user id or, when it is not a number, an exact
username (looked up with ``GET /v1/users?username=``).

:func:`add_chat_commands` adds the ``chat`` command to the ``tidings`` parser; each
subcommand sets ``handler`` (``Namespace -> int`` exit code). Output is JSON, one object
per line, on stdout; problems go to stderr with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ._channel_view import describe_event
from ._e2ee import DeviceCrypto, safety_number
from ._errors import (
    TidingsApiError,
    TidingsConnectionError,
    TidingsError,
    TidingsSessionEndedError,
    TidingsUnauthorizedError,
)
from ._frames import (
    Ack,
    ErrorFrame,
    Event,
    Msg,
    Presence,
    Receipt,
    Synced,
    Typing,
    Welcome,
)
from ._http import ApiClient
from ._state import ChatState, StateError, default_state_path, find_state_path

__all__ = [
    "add_chat_commands",
    "event_to_json",
    "run_account",
    "run_action",
    "run_fetch_file",
    "run_listen",
    "run_login",
    "run_logout",
    "run_send",
    "run_send_file",
    "run_signup",
]

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8080"
PLATFORMS = ("ios", "android", "web", "desktop")

_EVENT_TYPES: dict[type[Any], str] = {
    Msg: "msg",
    Welcome: "welcome",
    Synced: "synced",
    Receipt: "receipt",
    Presence: "presence",
    Typing: "typing",
    ErrorFrame: "error",
    Ack: "ack",
}
_DECIMAL_FIELDS = ("seq", "cursor")  # integers the wire sends as decimal strings
# A message's fields the wire leaves out when they are empty or unset.
_ABSENT_WHEN_EMPTY = ("attachments", "reply_to", "event", "edited_at", "deleted", "reactions")


def event_to_json(event: Event | Ack) -> dict[str, object]:
    """An event as the wire spells it: ``type`` first, sequences as decimal strings. A
    membership event's message also gets ``text``: the event as a line ("Carol added
    Dave")."""
    data: dict[str, object] = {"type": _EVENT_TYPES[type(event)]}
    if isinstance(event, Msg):
        data["seq"] = None  # right after the type, for readers of the output
    for key, value in dataclasses.asdict(event).items():
        if key in _ABSENT_WHEN_EMPTY and not value:
            continue  # as on the wire: absent when there are none
        data[key] = list(value) if key == "attachments" else value
        if key in _DECIMAL_FIELDS:
            data[key] = str(value)
    if isinstance(event, Msg) and event.event is not None:
        data["event"] = event.event.to_json()
        text = describe_event(event.event, event.sender_id)
        if text is not None:
            data["text"] = text
    return data


def _print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False), flush=True)


# -- argument parsing -------------------------------------------------------------------------


def add_chat_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``client signup|login|send|listen`` to the ``tidings`` command."""
    chat = subparsers.add_parser(
        "client",
        help="use a Tidings deployment as a user (signup, login, send, listen, friends, ...)",
        description="Talk to a Tidings deployment. `login` keeps the session and the inbox "
        "cursor in a state file (default ~/.config/tidings/<user>.json) for `send` and `listen`.",
    )
    commands = chat.add_subparsers(dest="chat_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
        parser.add_argument(
            "--ca-file",
            type=Path,
            metavar="PEM",
            help="verify the server's HTTPS/WSS certificate against this CA (e.g. a private "
            "one; default $TIDINGS_CA_FILE, else the one saved at login, else the system's "
            "trust store)",
        )

    def server(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--url",
            default=None,
            help=f"the deployment's HTTP address (default $TIDINGS_URL or {DEFAULT_URL})",
        )
        parser.add_argument("username")
        parser.add_argument("password", nargs="?", help="default $TIDINGS_PASSWORD, else asked for")

    def state(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--state", type=Path, help="state file (default from --user)")
        parser.add_argument(
            "--user",
            help="use ~/.config/tidings/<USER>.json (default: the only state file there)",
        )

    signup = commands.add_parser("signup", help="create an account")
    server(signup)
    signup.add_argument("--display-name")
    common(signup)
    signup.set_defaults(handler=_sync(run_signup))

    login = commands.add_parser(
        "login",
        help="log in and save the session",
        description="Log in and save the session. Logging in again with the same state "
        "file reuses its device (and keeps the cursor) unless --new-device.",
    )
    server(login)
    login.add_argument(
        "--state", type=Path, help="state file (default ~/.config/tidings/USER.json)"
    )
    login.add_argument("--device-name", default="tidings-cli")
    login.add_argument("--platform", choices=PLATFORMS, default="desktop")
    login.add_argument("--new-device", action="store_true", help="register a new device")
    common(login)
    login.set_defaults(handler=_sync(run_login))

    send = commands.add_parser("send", help="send one message and print its ack")
    state(send)
    to = send.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="USER_ID", help="a user (the 1:1 channel)")
    to.add_argument("--channel", metavar="CHANNEL_ID", help="a group or dm channel")
    send.add_argument("body")
    send.add_argument("--client-msg-id", help="for retries: the server sends it once")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the ack")
    common(send)
    send.set_defaults(handler=_sync(run_send))

    def action(name: str, help_text: str, *arguments: tuple[str, str]) -> None:
        """A command acting on a message of a channel (a reply, edit, delete, reaction)."""
        parser = commands.add_parser(name, help=help_text, description=help_text)
        state(parser)
        parser.add_argument("channel_id", metavar="CHANNEL_ID", help="dm:… or g:…")
        parser.add_argument("message_id", metavar="MESSAGE_ID", help="the message acted on")
        for dest, what in arguments:
            parser.add_argument(dest, metavar=dest.upper(), help=what)
        parser.add_argument("--client-msg-id", help="for retries: the server applies it once")
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="seconds to wait for the ack"
        )
        common(parser)
        parser.set_defaults(handler=_sync(run_action), action_command=name)

    action(
        "reply",
        "answer a message of the channel; prints the ack",
        ("body", "the reply's text"),
    )
    action(
        "edit",
        "replace the text of one of your messages (within 15 minutes); prints the ack",
        ("body", "the new text"),
    )
    action("delete", "delete one of your messages for everyone (within 48 hours)")
    action(
        "react",
        "react to a message (one reaction per user: a new one replaces yours)",
        ("emoji", 'the emoji; "" takes your reaction back'),
    )

    send_file = commands.add_parser(
        "send-file",
        help="upload a file and send it (a photo, video, voice note or document)",
        description="Upload a file straight to the deployment's blob store and send it in a "
        "message; prints the media id and the message's ack. TARGET is a channel id (it has "
        "a colon: dm:…, g:…), a user id, or an exact username (the 1:1 channel).",
    )
    state(send_file)
    send_file.add_argument("target", metavar="TARGET", help="a channel id, user id or username")
    send_file.add_argument("path", type=Path, help="the file")
    send_file.add_argument("--caption", default="", help="the message's text")
    send_file.add_argument(
        "--content-type", help="default: from the file's first bytes, else its extension"
    )
    send_file.add_argument("--name", help="the name the others see (default: the file's)")
    send_file.add_argument("--client-msg-id", help="for retries: the server sends it once")
    send_file.add_argument(
        "--timeout", type=float, default=600.0, help="seconds for the upload and the ack"
    )
    common(send_file)
    send_file.set_defaults(handler=_sync(run_send_file))

    fetch_file = commands.add_parser(
        "fetch-file",
        help="download a media (an attachment's media_id), checked against its SHA-256",
        description="Download a media into DEST (a file, or a directory: then DEST/MEDIA_ID "
        "with an extension from its type). The file appears only once its size and SHA-256 "
        "match; prints where it is and its size.",
    )
    state(fetch_file)
    fetch_file.add_argument("media_id", metavar="MEDIA_ID")
    fetch_file.add_argument("dest", metavar="DEST", type=Path)
    fetch_file.add_argument(
        "--thumbnail", action="store_true", help="the preview (WebP) instead of the media"
    )
    fetch_file.add_argument("--timeout", type=float, default=600.0, help="seconds in all")
    common(fetch_file)
    fetch_file.set_defaults(handler=_sync(run_fetch_file))

    listen = commands.add_parser(
        "listen",
        help="print messages as JSON lines, resuming at the saved cursor",
        description="Print one JSON line per message, in inbox order, and save the cursor "
        "after each, so the next listen resumes where this one stopped.",
    )
    state(listen)
    listen.add_argument("--count", type=int, help="exit after this many messages")
    listen.add_argument(
        "--all-events", action="store_true", help="also print receipts, presence, typing, ..."
    )
    listen.add_argument(
        "--receipts", action="store_true", help="send a 'delivered' receipt for each message"
    )
    common(listen)
    listen.set_defaults(handler=_sync(run_listen))

    logout = commands.add_parser(
        "logout",
        help="log this device out (the server unlinks it) and delete the state file",
    )
    state(logout)
    common(logout)
    logout.set_defaults(handler=_sync(run_logout))

    def account(name: str, help_text: str, *arguments: tuple[str, str]) -> None:
        """A command that makes one call of the logged-in user's and prints the answer."""
        parser = commands.add_parser(name, help=help_text, description=help_text)
        state(parser)
        for metavar, what in arguments:
            parser.add_argument("target", metavar=metavar, help=what)
        common(parser)
        parser.set_defaults(handler=_sync(run_account), account_command=name)

    user = ("USER", "a user id, or an exact username")
    account(
        "channels",
        "list channels, one JSON line each: unread (messages from others after your read "
        "mark), read_upto, the others' receipts and, for groups, admin_ids",
    )
    account("devices", "list this user's devices (current: this one)")
    account("unlink", "unlink one of this user's devices", ("DEVICE_ID", "from `devices`"))
    account("find", "look a user up by exact username", ("USERNAME", "the exact username"))
    account("friends", "list friends and pending friend requests (incoming, outgoing)")
    account("befriend", "send a friend request, or accept theirs", user)
    account("unfriend", "end a friendship, withdraw a request or decline theirs", user)
    account("block", "block a user", user)
    account("unblock", "unblock a user", user)
    account("blocked", "list the users this user has blocked")
    account("invites", "list group invites")
    account("join", "accept a group invite", ("CHANNEL_ID", "from `invites`"))
    account("decline", "decline a group invite", ("CHANNEL_ID", "from `invites`"))
    account(
        "keys",
        "publish this device's end-to-end keys (kept in <state>.keys.json, mode 0600)",
    )
    account(
        "safety-number",
        "the safety number of this device with each device of a user: compare it with "
        "theirs out of band (docs/e2ee.md)",
        user,
    )


def _sync(
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        if getattr(args, "verbose", False):
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        try:
            return asyncio.run(run(args))
        except KeyboardInterrupt:
            return 130
        except TimeoutError:
            print("tidings client: timed out", file=sys.stderr)
            return 1
        except TidingsSessionEndedError as exc:
            print(f"tidings client: {exc}: tidings client login", file=sys.stderr)
            return 1
        except TidingsUnauthorizedError as exc:
            print(f"tidings client: {exc} (log in again: tidings client login)", file=sys.stderr)
            return 1
        except TidingsApiError as exc:
            hint = " (log in again: tidings client login)" if exc.status == 401 else ""
            print(f"tidings client: {exc}{hint}", file=sys.stderr)
            return 1
        except TidingsError as exc:
            print(f"tidings client: {exc}", file=sys.stderr)
            return 1

    handler.__name__ = run.__name__
    return handler


def _url(args: argparse.Namespace) -> str:
    url: str = args.url or os.environ.get("TIDINGS_URL") or DEFAULT_URL
    return url


def _ca_file(args: argparse.Namespace, state: ChatState | None = None) -> str | None:
    """--ca-file, else $TIDINGS_CA_FILE (made absolute: login saves it), else the state
    file's."""
    given = getattr(args, "ca_file", None) or os.environ.get("TIDINGS_CA_FILE")
    if given:
        return os.path.abspath(given)
    return state.ca_file if state is not None else None


def _device_crypto(state_path: Path, state: ChatState) -> DeviceCrypto:
    """This device's end-to-end keys, in a file beside the state file (mode 0600)."""
    return DeviceCrypto(state_path.with_suffix(".keys.json"), state.device_id)


def _state_client(args: argparse.Namespace, state: ChatState) -> ApiClient:
    """A client of the logged-in session in ``state``."""
    return ApiClient(state.url, session=state.session, ca_file=_ca_file(args, state))


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        password: str = args.password
        return password
    if "TIDINGS_PASSWORD" in os.environ:
        return os.environ["TIDINGS_PASSWORD"]
    if not sys.stdin.isatty():
        raise StateError("no password: give it as an argument or in $TIDINGS_PASSWORD")
    return getpass.getpass(f"password for {args.username}: ")


# -- the commands -------------------------------------------------------------------------------


async def run_signup(args: argparse.Namespace, api: ApiClient | None = None) -> int:
    async with api or ApiClient(_url(args), ca_file=_ca_file(args)) as client:
        user = await client.signup(args.username, _password(args), display_name=args.display_name)
    _print_json(dataclasses.asdict(user))
    return 0


async def run_login(args: argparse.Namespace, api: ApiClient | None = None) -> int:
    url = _url(args)
    path: Path = args.state or default_state_path(args.username)
    previous = await asyncio.to_thread(_load_if_there, path)
    if previous is not None and (previous.url != url or previous.username != args.username):
        previous = None  # another deployment or user: start over
    device_id = previous.device_id if previous is not None and not args.new_device else None
    ca_file = _ca_file(args)
    async with api or ApiClient(url, ca_file=ca_file) as client:
        session = await client.login(
            args.username,
            _password(args),
            device_name=args.device_name,
            platform=args.platform,
            device_id=device_id,
        )
    state = ChatState(
        url=url,
        username=args.username,
        user_id=session.user_id,
        device_id=session.device_id,
        access_token=session.access_token,
        expires_at=session.expires_at,
        chat_url=session.chat_url,
        cursor=previous.cursor if previous is not None else 0,
        ca_file=ca_file,
    )
    await asyncio.to_thread(state.save, path)
    _print_json({"user_id": state.user_id, "device_id": state.device_id, "state": str(path)})
    return 0


async def run_send(args: argparse.Namespace) -> int:
    _, state = await asyncio.to_thread(_load, args)
    async with (
        asyncio.timeout(args.timeout),
        _state_client(args, state) as api,
        # The cursor is not saved here: messages arriving now are for `listen`.
        api.chat(cursor=state.cursor, max_attempts=3) as conn,
    ):
        ack = await conn.send(
            args.body, to=args.to, channel_id=args.channel, client_msg_id=args.client_msg_id
        )
    _print_json(event_to_json(ack))
    return 0


async def run_action(args: argparse.Namespace) -> int:
    """``reply``, ``edit``, ``delete`` or ``react`` (``args.action_command``) on
    ``args.message_id`` of ``args.channel_id``; prints the ack."""
    _, state = await asyncio.to_thread(_load, args)
    channel, target, cmid = args.channel_id, args.message_id, args.client_msg_id
    async with (
        asyncio.timeout(args.timeout),
        _state_client(args, state) as api,
        # The cursor is not saved here: messages arriving now are for `listen`.
        api.chat(cursor=state.cursor, max_attempts=3) as conn,
    ):
        match args.action_command:
            case "reply":
                ack = await conn.send(
                    args.body, channel_id=channel, reply_to=target, client_msg_id=cmid
                )
            case "edit":
                ack = await conn.edit(channel, target, args.body, client_msg_id=cmid)
            case "delete":
                ack = await conn.delete(channel, target, client_msg_id=cmid)
            case "react":
                ack = await conn.react(channel, target, args.emoji, client_msg_id=cmid)
            case other:
                raise ValueError(f"unknown command {other!r}")
    _print_json(event_to_json(ack))
    return 0


async def _resolve_user(client: ApiClient, target: str) -> str:
    """A user id, or the id of the user with exactly this username."""
    if target.isascii() and target.isdigit():
        return target
    return (await client.find_user(target)).user_id


async def run_send_file(args: argparse.Namespace) -> int:
    """Upload ``args.path`` and send it to ``args.target`` with ``--caption``."""
    _, state = await asyncio.to_thread(_load, args)
    path: Path = args.path
    if not await asyncio.to_thread(path.is_file):
        raise StateError(f"no file at {path}")
    target: str = args.target
    async with asyncio.timeout(args.timeout), _state_client(args, state) as api:
        to = channel_id = None
        if ":" in target:
            channel_id = target
        else:
            to = await _resolve_user(api, target)
        attachment = await api.upload(path, content_type=args.content_type, name=args.name)
        # The cursor is not saved here: messages arriving now are for `listen`.
        async with api.chat(cursor=state.cursor, max_attempts=3) as conn:
            ack = await conn.send(
                args.caption,
                to=to,
                channel_id=channel_id,
                client_msg_id=args.client_msg_id,
                attachments=[attachment],
            )
    _print_json(
        {
            "media_id": attachment.media_id,
            "message_id": ack.message_id,
            "channel_id": ack.channel_id,
            "client_msg_id": ack.client_msg_id,
            "ts": ack.ts,
            "attachment": attachment.to_wire(),
        }
    )
    return 0


_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "audio/ogg": ".ogg",
    "audio/mp4": ".m4a",
    "audio/mpeg": ".mp3",
    "application/pdf": ".pdf",
}


async def run_fetch_file(args: argparse.Namespace) -> int:
    """Download ``args.media_id`` into ``args.dest`` (a file, or a directory)."""
    _, state = await asyncio.to_thread(_load, args)
    dest: Path = args.dest
    async with asyncio.timeout(args.timeout), _state_client(args, state) as api:
        if await asyncio.to_thread(dest.is_dir):
            media = await api.get_media(args.media_id)
            if args.thumbnail:
                suffix = ".thumb.webp"
            else:
                suffix = _EXTENSIONS.get(media.content_type, ".bin")
            dest = dest / f"{args.media_id}{suffix}"
        if args.thumbnail:
            media = await api.download_thumbnail(args.media_id, dest)
        else:
            media = await api.download(args.media_id, dest)
    size = (await asyncio.to_thread(dest.stat)).st_size
    fetched: dict[str, object] = {"media_id": media.media_id, "path": str(dest), "size": size}
    if args.thumbnail:
        fetched.update(content_type="image/webp", thumbnail=True)
    else:
        fetched.update(content_type=media.content_type, sha256=media.sha256, thumbnail=False)
    _print_json(fetched)
    return 0


async def run_listen(args: argparse.Namespace) -> int:
    path, state = await asyncio.to_thread(_load, args)
    printed = 0
    if args.count is not None and args.count <= 0:
        return 0
    async with (
        _state_client(args, state) as api,
        api.chat(cursor=state.cursor, max_attempts=5) as conn,
    ):
        async for event in conn.events():
            if isinstance(event, Msg):
                _print_json(event_to_json(event))
                state.cursor = conn.cursor
                # Saved after printing: a crash in between prints the message again.
                await asyncio.to_thread(state.save, path)
                if args.receipts:
                    try:
                        await conn.receipt(event.channel_id, event.message_id, "delivered")
                    except TidingsConnectionError as exc:  # a later receipt covers this one
                        logger.info("receipt not sent: %s", exc)
                printed += 1
                if args.count is not None and printed >= args.count:
                    break
            elif args.all_events:
                _print_json(event_to_json(event))
    return 0


async def run_logout(args: argparse.Namespace, api: ApiClient | None = None) -> int:
    """Log the device out; its state file goes too (the device is unlinked, so neither
    its token nor its cursor is of use any more)."""
    path, state = await asyncio.to_thread(_load, args)
    async with api or _state_client(args, state) as client:
        try:
            await client.logout()
        except TidingsApiError as exc:
            if exc.status != 401:
                raise  # a 401: the session had ended already; forget it all the same
    await asyncio.to_thread(path.unlink, missing_ok=True)
    _print_json({"logged_out": state.device_id, "state": str(path)})
    return 0


async def run_account(args: argparse.Namespace, api: ApiClient | None = None) -> int:
    """One call of the logged-in user's (``args.account_command``); prints the answer as
    JSON lines (one per item for lists)."""
    state_path, state = await asyncio.to_thread(_load, args)
    command: str = args.account_command
    target: str | None = getattr(args, "target", None)
    async with api or _state_client(args, state) as client:

        async def user_id() -> str:
            assert target is not None
            return await _resolve_user(client, target)

        match command:
            case "channels":
                for channel in await client.channels():
                    _print_json(dataclasses.asdict(channel))
            case "devices":
                for device in await client.list_devices():
                    _print_json(dataclasses.asdict(device))
            case "unlink":
                assert target is not None
                await client.unlink_device(target)
                _print_json({"unlinked": target})
            case "find":
                assert target is not None
                _print_json(dataclasses.asdict(await client.find_user(target)))
            case "friends":
                requests = await client.friend_requests()
                for relation, people in (
                    ("friend", await client.friends()),
                    ("incoming", requests.incoming),
                    ("outgoing", requests.outgoing),
                ):
                    for person in people:
                        _print_json({"relation": relation, **dataclasses.asdict(person)})
            case "befriend":
                uid = await user_id()
                await client.friend_request(uid)
                _print_json({"friend_request": uid})
            case "unfriend":
                uid = await user_id()
                await client.remove_friend(uid)
                _print_json({"unfriended": uid})
            case "block":
                uid = await user_id()
                await client.block(uid)
                _print_json({"blocked": uid})
            case "unblock":
                uid = await user_id()
                await client.unblock(uid)
                _print_json({"unblocked": uid})
            case "blocked":
                for person in await client.blocked():
                    _print_json(dataclasses.asdict(person))
            case "invites":
                for invite in await client.invites():
                    _print_json(dataclasses.asdict(invite))
            case "join":
                assert target is not None
                _print_json(dataclasses.asdict(await client.accept_invite(target)))
            case "keys":
                crypto = _device_crypto(state_path, state)
                count = await client.publish_keys(crypto.keys_body())
                _print_json({"identity_key": crypto.identity_key, "one_time_prekeys": count})
            case "safety-number":
                crypto = _device_crypto(state_path, state)
                for peer in await client.device_keys(await user_id()):
                    number = safety_number(crypto.identity_key, peer["identity_key"])
                    _print_json({"device_id": peer["device_id"], "safety_number": number})
            case "decline":
                assert target is not None
                await client.decline_invite(target)
                _print_json({"declined": target})
            case _:
                raise ValueError(f"unknown command {command!r}")
    return 0


def _load(args: argparse.Namespace) -> tuple[Path, ChatState]:
    path = find_state_path(args.state, args.user)
    return path, ChatState.load(path)


def _load_if_there(path: Path) -> ChatState | None:
    return ChatState.load(path) if path.exists() else None
