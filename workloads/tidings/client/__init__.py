"""Python client for Tidings: the HTTP API and a self-healing chat connection.

::

    async with ApiClient("http://127.0.0.1:8080") as api:
        await api.login("ada", "correct horse")
        async with api.chat(cursor=saved_cursor) as chat:
            ack = await chat.send("hello", to=bob_id)
            photo, ack = await api.send_file(chat, "beach.jpg", to=bob_id, caption="the beach")
            async for event in chat.events():
                if isinstance(event, Msg):
                    print(event.body)
                    save(chat.cursor)

Replies, edits, deletes and reactions (``chat.send(..., reply_to=)``, ``chat.edit``,
``chat.delete``, ``chat.react``) arrive as messages with an ``event``; a
:class:`ChannelView` folds them into a channel's lines.
"""

from ._backoff import Backoff
from ._channel_view import ChannelView, Line, describe_event
from ._cli import add_chat_commands
from ._connection import ChatConnection, DiscoverFn, ws_url
from ._cursor import Inbox, InboxTracker, Step, SyncPlan
from ._e2ee import DeviceCrypto, E2eeError, safety_number
from ._end_to_end import EndToEnd, Opened, SecretFile
from ._errors import (
    SessionEnded,
    TidingsApiError,
    TidingsChatError,
    TidingsConnectionError,
    TidingsError,
    TidingsProtocolError,
    TidingsSessionEndedError,
    TidingsSupersededError,
    TidingsUnauthorizedError,
)
from ._frames import (
    Ack,
    ErrorFrame,
    Event,
    HeartbeatAck,
    Msg,
    Presence,
    Receipt,
    Reconnect,
    Redirect,
    ServerFrame,
    Synced,
    Typing,
    Welcome,
    parse_server_frame,
)
from ._http import ApiClient
from ._local_index import Found, LocalIndex
from ._media import CONTENT_TYPES, MediaSource, guess_content_type, sniff_content_type
from ._models import (
    Attachment,
    Channel,
    ChannelEvent,
    Device,
    FriendRequests,
    Group,
    Invite,
    MediaObject,
    Message,
    PresenceInfo,
    Profile,
    ReceiptMarks,
    Session,
    User,
)
from ._tls import client_ssl_context

__all__ = [
    "CONTENT_TYPES",
    "Ack",
    "ApiClient",
    "Attachment",
    "Backoff",
    "Channel",
    "ChannelEvent",
    "ChannelView",
    "ChatConnection",
    "Device",
    "DeviceCrypto",
    "DiscoverFn",
    "E2eeError",
    "EndToEnd",
    "ErrorFrame",
    "Event",
    "Found",
    "FriendRequests",
    "Group",
    "HeartbeatAck",
    "Inbox",
    "InboxTracker",
    "Invite",
    "Line",
    "LocalIndex",
    "MediaObject",
    "MediaSource",
    "Message",
    "Msg",
    "Opened",
    "Presence",
    "PresenceInfo",
    "Profile",
    "Receipt",
    "ReceiptMarks",
    "Reconnect",
    "Redirect",
    "SecretFile",
    "ServerFrame",
    "Session",
    "SessionEnded",
    "Step",
    "SyncPlan",
    "Synced",
    "TidingsApiError",
    "TidingsChatError",
    "TidingsConnectionError",
    "TidingsError",
    "TidingsProtocolError",
    "TidingsSessionEndedError",
    "TidingsSupersededError",
    "TidingsUnauthorizedError",
    "Typing",
    "User",
    "Welcome",
    "add_chat_commands",
    "client_ssl_context",
    "describe_event",
    "guess_content_type",
    "parse_server_frame",
    "safety_number",
    "sniff_content_type",
    "ws_url",
]
