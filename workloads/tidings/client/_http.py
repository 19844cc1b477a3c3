"""``ApiClient``: the HTTP half of the contract (``/v1``), over ``httpx.AsyncClient``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from ssl import SSLContext
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote, urljoin

import httpx

from ._backoff import Backoff
from ._connection import ChatConnection, ws_url
from ._errors import TidingsApiError, TidingsConnectionError, TidingsProtocolError
from ._frames import Ack
from ._media import MediaSource, download_media, upload_media
from ._models import (
    Attachment,
    Channel,
    Device,
    FriendRequests,
    Group,
    Invite,
    MediaObject,
    Message,
    Profile,
    Session,
    User,
    as_object,
    get_str,
)
from ._tls import client_ssl_context

__all__ = ["ApiClient"]

logger = logging.getLogger(__name__)


def _seg(value: str) -> str:
    """One path segment (ids such as ``dm:1:2`` keep their colons)."""
    return quote(value, safe=":")


def _list(body: object, key: str) -> list[object]:
    items = as_object(body).get(key)
    if not isinstance(items, list):
        raise TidingsProtocolError(f"field {key!r} must be a list")
    return items


class ApiClient:
    """Calls the Tidings HTTP API. After :meth:`login` it holds the session (``token``,
    ``user_id``, ``device_id``, ``chat_url``) and sends the token on every call; a saved
    session can be given back through ``session=``.

    ``async with ApiClient("http://127.0.0.1:8080") as api: ...``

    Over HTTPS and WSS the server is verified against the system's trust store, or
    against ``ca_file`` (a private CA's PEM certificate), or with the ``ssl`` context
    given (:func:`~._tls.client_ssl_context`); the same trust serves :meth:`chat`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        session: Session | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.token = token if token is not None or session is None else session.access_token
        if ssl is None and ca_file is not None:
            ssl = client_ssl_context(ca_file)
        self.ssl = ssl  # None: the system's trust store
        self.timeout = timeout
        self.transport = transport  # also the blob store's, when given (tests)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            verify=ssl if ssl is not None else _system_trust(self.base_url),
        )

    @property
    def blob_verify(self) -> SSLContext | bool:
        """How presigned blob-store URLs are verified: the API's trust."""
        return self.ssl if self.ssl is not None else client_ssl_context()

    @property
    def user_id(self) -> str | None:
        return self.session.user_id if self.session is not None else None

    @property
    def device_id(self) -> str | None:
        return self.session.device_id if self.session is not None else None

    @property
    def chat_url(self) -> str | None:
        return self.session.chat_url if self.session is not None else None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> object:
        return (await self._call(method, path, json=json, params=params))[1]

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> tuple[int, object]:
        """The status and the JSON body (None for none) of a successful call."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = await self._http.request(
                method, path, json=json, params=params, headers=headers
            )
        except httpx.TransportError as exc:
            raise TidingsConnectionError(f"{method} {path}: {exc!r}") from exc
        if response.status_code >= 400:
            raise _api_error(response)
        if response.status_code == 204 or not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError as exc:
            raise TidingsProtocolError(f"{method} {path}: body is not JSON") from exc

    def _resolve_chat_url(self, chat_url: str) -> str:
        return ws_url(urljoin(self.base_url + "/", chat_url))

    # -- accounts and sessions ---------------------------------------------------------------

    async def signup(
        self, username: str, password: str, *, display_name: str | None = None
    ) -> User:
        body: dict[str, str] = {"username": username, "password": password}
        if display_name is not None:
            body["display_name"] = display_name
        return User.from_json(await self._request("POST", "/v1/users", json=body))

    async def login(
        self,
        username: str,
        password: str,
        *,
        device_name: str | None = None,
        platform: str | None = None,
        device_id: str | None = None,
    ) -> Session:
        """Log in (``device_id`` logs an existing device in again) and keep the session."""
        body: dict[str, str] = {"username": username, "password": password}
        for key, value in (
            ("device_name", device_name),
            ("platform", platform),
            ("device_id", device_id),
        ):
            if value is not None:
                body[key] = value
        session = Session.from_json(await self._request("POST", "/v1/sessions", json=body))
        session = Session(
            session.access_token,
            session.expires_at,
            session.user_id,
            session.device_id,
            self._resolve_chat_url(session.chat_url),
        )
        self.session = session
        self.token = session.access_token
        return session

    async def logout(self) -> None:
        """Log this device out (``DELETE /v1/sessions/current``): the server unlinks it, its
        tokens stop working and its sockets close with 4001. The client forgets the
        session."""
        await self._request("DELETE", "/v1/sessions/current")
        self.session = None
        self.token = None

    async def list_devices(self) -> list[Device]:
        """The caller's devices; ``current`` marks the calling one."""
        body = await self._request("GET", "/v1/devices")
        return [Device.from_json(item) for item in _list(body, "devices")]

    async def unlink_device(self, device_id: str) -> None:
        """Unlink one of the caller's devices: its tokens stop working (401), its open
        sockets close with 4001, its push token is forgotten. 404 ``not_found`` when it
        is not one of the caller's."""
        await self._request("DELETE", f"/v1/devices/{_seg(device_id)}")

    async def discover(self) -> str:
        """Where this user's devices connect now."""
        body = as_object(await self._request("GET", "/v1/discover"))
        return self._resolve_chat_url(get_str(body, "chat_url"))

    async def me(self) -> Profile:
        return Profile.from_json(await self._request("GET", "/v1/me"))

    async def set_display_name(self, display_name: str) -> Profile:
        """``PATCH /v1/me``: a new display name (NFKC, 1-128 characters, no control or
        format characters; 422 ``invalid_request``); others see it on their next look-up.
        The caller's profile as it is now."""
        body = {"display_name": display_name}
        return Profile.from_json(await self._request("PATCH", "/v1/me", json=body))

    async def get_user(self, user_id: str) -> Profile:
        """A user the caller is related to (404 ``unknown_user`` for anyone else)."""
        return Profile.from_json(await self._request("GET", f"/v1/users/{_seg(user_id)}"))

    async def find_user(self, username: str) -> User:
        """The user with exactly this username (``GET /v1/users?username=``); 404
        ``unknown_user`` when there is none, 429 ``rate_limited`` after too many misses."""
        body = await self._request("GET", "/v1/users", params={"username": username})
        return User.from_json(body)

    # -- end-to-end keys (docs/e2ee.md) ------------------------------------------------------

    async def publish_keys(self, body: Mapping[str, Any]) -> int:
        """``PUT /v1/keys`` for this device; the one-time prekeys it has now."""
        answer = await self._request("PUT", "/v1/keys", json=body)
        assert isinstance(answer, dict)
        return int(answer["one_time_prekeys"])

    async def device_keys(self, user_id: str, *, claim: bool = False) -> list[dict[str, Any]]:
        """The user's devices with keys; ``claim``: bundles, one one-time prekey each."""
        params: dict[str, str | int] = {} if claim else {"claim": "false"}
        answer = await self._request("GET", f"/v1/users/{user_id}/keys", params=params)
        assert isinstance(answer, dict)
        devices: list[dict[str, Any]] = answer["devices"]
        return devices

    # -- friends ---------------------------------------------------------------------------------

    async def add_friend(self, user_id: str) -> None:
        """``PUT /v1/friends/{user_id}``: a friend request, or accepting theirs (the two
        are friends once both asked). Idempotent."""
        await self._request("PUT", f"/v1/friends/{_seg(user_id)}")

    async def remove_friend(self, user_id: str) -> None:
        """``DELETE /v1/friends/{user_id}``: ends the friendship, withdraws the caller's
        request, or declines theirs."""
        await self._request("DELETE", f"/v1/friends/{_seg(user_id)}")

    async def friend_request(self, user_id: str) -> None:
        """Ask ``user_id`` to be friends (accepts their request if they sent one)."""
        await self.add_friend(user_id)

    async def accept_friend(self, user_id: str) -> None:
        """Accept ``user_id``'s friend request."""
        await self.add_friend(user_id)

    async def decline_friend(self, user_id: str) -> None:
        """Decline ``user_id``'s friend request."""
        await self.remove_friend(user_id)

    async def withdraw_friend_request(self, user_id: str) -> None:
        """Withdraw the caller's friend request to ``user_id``."""
        await self.remove_friend(user_id)

    async def friends(self) -> list[Profile]:
        """Accepted friends only."""
        body = await self._request("GET", "/v1/friends")
        return [Profile.from_json(item) for item in _list(body, "friends")]

    async def friend_requests(self) -> FriendRequests:
        """Pending friend requests: ``incoming`` (to accept or decline) and ``outgoing``."""
        return FriendRequests.from_json(await self._request("GET", "/v1/friends/requests"))

    # -- blocks ----------------------------------------------------------------------------------

    async def block(self, user_id: str) -> None:
        """Block a user: ends a friendship or request between the two, drops their group
        invites to the caller; their sends to the caller are refused (``blocked``)."""
        await self._request("PUT", f"/v1/blocks/{_seg(user_id)}")

    async def unblock(self, user_id: str) -> None:
        await self._request("DELETE", f"/v1/blocks/{_seg(user_id)}")

    async def blocked(self) -> list[Profile]:
        """The users the caller has blocked."""
        body = await self._request("GET", "/v1/blocks")
        return [Profile.from_json(item) for item in _list(body, "blocked")]

    # -- groups and channels -----------------------------------------------------------------

    async def create_group(self, name: str, member_ids: list[str], *, e2e: bool = False) -> Group:
        """A group; ``e2e``: end-to-end for good (docs/e2ee.md)."""
        body = {"name": name, "member_ids": list(member_ids), "e2e": e2e}
        return Group.from_json(await self._request("POST", "/v1/groups", json=body))

    async def get_group(self, channel_id: str) -> Group:
        return Group.from_json(await self._request("GET", f"/v1/groups/{_seg(channel_id)}"))

    async def add_group_member(self, channel_id: str, user_id: str) -> Literal["added", "invited"]:
        """Add a member: ``"added"`` (204, a friend of the caller's) or ``"invited"`` (202:
        anyone else gets an invite to accept or decline)."""
        path = f"/v1/groups/{_seg(channel_id)}/members/{_seg(user_id)}"
        status, _ = await self._call("PUT", path)
        return "invited" if status == 202 else "added"

    async def remove_group_member(self, channel_id: str, user_id: str) -> None:
        """An admin removes a member (403 ``forbidden`` for others); removing oneself is
        :meth:`leave_group`. The members hear of it as a ``member_removed`` event."""
        await self._request("DELETE", f"/v1/groups/{_seg(channel_id)}/members/{_seg(user_id)}")

    async def leave_group(self, channel_id: str) -> None:
        """Leave a group (a ``member_left`` event; the one who leaves hears of it too, and
        of nothing after). When the last admin leaves, the member with the lowest user id
        becomes admin."""
        if self.user_id is None:
            raise ValueError("log in first")
        await self.remove_group_member(channel_id, self.user_id)

    async def update_group(
        self, channel_id: str, *, name: str | None = None, members_can_add: bool | None = None
    ) -> Group:
        """``PATCH /v1/groups/{id}`` (admins only: 403 ``forbidden``): what is given
        changes; each change reaches the members as an event. The group as it is now."""
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if members_can_add is not None:
            body["members_can_add"] = members_can_add
        if not body:
            raise ValueError("give name or members_can_add")
        path = f"/v1/groups/{_seg(channel_id)}"
        return Group.from_json(await self._request("PATCH", path, json=body))

    async def rename_group(self, channel_id: str, name: str) -> Group:
        """Rename a group (1-128 characters; a ``renamed`` event)."""
        return await self.update_group(channel_id, name=name)

    async def set_group_settings(self, channel_id: str, *, members_can_add: bool) -> Group:
        """Whether members who are not admins may add others (a ``settings_changed``
        event); when not, their :meth:`add_group_member` answers 403 ``forbidden``."""
        return await self.update_group(channel_id, members_can_add=members_can_add)

    async def make_admin(self, channel_id: str, user_id: str) -> None:
        """``PUT /v1/groups/{id}/admins/{user_id}`` (idempotent; an ``admin_added``
        event): 403 ``forbidden`` (the caller is no admin), 404 ``unknown_user`` (not a
        member)."""
        await self._request("PUT", f"/v1/groups/{_seg(channel_id)}/admins/{_seg(user_id)}")

    async def unmake_admin(self, channel_id: str, user_id: str) -> None:
        """``DELETE /v1/groups/{id}/admins/{user_id}``: an admin steps down or unmakes
        another (an ``admin_removed`` event); 409 ``last_admin`` when the group would
        have none left."""
        await self._request("DELETE", f"/v1/groups/{_seg(channel_id)}/admins/{_seg(user_id)}")

    # -- group invites ---------------------------------------------------------------------

    async def invites(self) -> list[Invite]:
        """Group invites waiting for the caller."""
        body = await self._request("GET", "/v1/invites")
        return [Invite.from_json(item) for item in _list(body, "invites")]

    async def accept_invite(self, channel_id: str) -> Group:
        """Join the group the caller was invited to (404 ``not_found``: no such invite,
        409 ``group_full``)."""
        body = await self._request("POST", f"/v1/invites/{_seg(channel_id)}/accept")
        return Group.from_json(body)

    async def decline_invite(self, channel_id: str) -> None:
        await self._request("DELETE", f"/v1/invites/{_seg(channel_id)}")

    async def channels(self) -> list[Channel]:
        """The caller's channels, each with the caller's read mark, an unread count and
        the other members' receipt watermarks (and, for groups, the roles)."""
        body = await self._request("GET", "/v1/channels")
        return [Channel.from_json(item) for item in _list(body, "channels")]

    # -- messages ------------------------------------------------------------------------------

    async def history(
        self, channel_id: str, *, before: str | None = None, limit: int | None = None
    ) -> list[Message]:
        """Messages of a channel, newest first; ``before`` a message id, ``limit`` <= 200."""
        params: dict[str, str | int] = {}
        if before is not None:
            params["before"] = before
        if limit is not None:
            params["limit"] = limit
        body = await self._request(
            "GET", f"/v1/channels/{_seg(channel_id)}/messages", params=params
        )
        return [Message.from_json(item) for item in _list(body, "messages")]

    async def search(self, q: str, *, channel_id: str | None = None) -> list[Message]:
        params: dict[str, str | int] = {"q": q}
        if channel_id is not None:
            params["channel_id"] = channel_id
        body = await self._request("GET", "/v1/search", params=params)
        return [Message.from_json(item) for item in _list(body, "messages")]

    async def set_push_token(
        self, provider: str, token: str, *, device_id: str | None = None
    ) -> None:
        """Register this device's (or ``device_id``'s) push token with ``provider``."""
        device = device_id if device_id is not None else self.device_id
        if device is None:
            raise ValueError("no device_id: log in first or pass device_id")
        body = {"provider": provider, "token": token}
        await self._request("PUT", f"/v1/devices/{_seg(device)}/push", json=body)

    # -- media (docs/protocol.md, "Media") -----------------------------------------------------

    async def create_upload(
        self, content_type: str, size: int, sha256: str, *, e2e: bool = False
    ) -> MediaObject:
        """``POST /v1/media``: an upload slot (``upload``: the URLs to PUT the bytes to).
        413 ``payload_too_large`` / ``quota_exceeded``, 415 ``unsupported_media_type``,
        429 ``rate_limited``, 503 ``unavailable`` (no blob store)."""
        body = {"content_type": content_type, "size": size, "sha256": sha256, "e2e": e2e}
        return MediaObject.from_json(await self._request("POST", "/v1/media", json=body))

    async def upload_status(self, media_id: str) -> MediaObject:
        """``GET /v1/media/{id}/upload``: a pending upload with fresh URLs and the parts
        the store holds (``done_parts``); 404 ``unknown_media``."""
        return MediaObject.from_json(
            await self._request("GET", f"/v1/media/{_seg(media_id)}/upload")
        )

    async def complete_upload(
        self, media_id: str, parts: list[dict[str, Any]] | None = None
    ) -> MediaObject:
        """``POST /v1/media/{id}/complete`` (``parts``: ``[{part_number, etag}]`` of a
        multipart upload): the media, ready. 409 ``upload_incomplete``, 413
        ``payload_too_large``, 415 ``content_type_mismatch``, 422 ``sha256_mismatch``."""
        body: dict[str, Any] = {} if parts is None else {"parts": parts}
        path = f"/v1/media/{_seg(media_id)}/complete"
        return MediaObject.from_json(await self._request("POST", path, json=body))

    async def get_media(self, media_id: str) -> MediaObject:
        """``GET /v1/media/{id}``: the media with presigned ``url`` and ``thumbnail_url``
        (valid 5 minutes). 403 ``not_a_member``, 404 ``unknown_media``."""
        return MediaObject.from_json(await self._request("GET", f"/v1/media/{_seg(media_id)}"))

    async def upload(
        self,
        source: MediaSource,
        *,
        content_type: str | None = None,
        name: str | None = None,
        e2e: bool = False,
        media_id: str | None = None,
        etags: Mapping[int, str] | None = None,
        on_part: Callable[[str, int, str], None] | None = None,
    ) -> Attachment:
        """Upload a file (a path, or bytes) and return the :class:`Attachment` to send.

        ``content_type``: default from the first bytes, else the extension. ``name``:
        default the file's name (None for bytes). ``e2e``: ciphertext for an end-to-end
        channel (``application/octet-stream``; the attachment then has no name).
        Resuming an upload a previous run began: ``media_id``, and the parts' ETags it
        kept (``on_part(media_id, part_number, etag)`` is called as each part of a
        multipart upload is stored: keep them); parts the store holds without a known
        ETag are sent again. A media completed already is not sent again.
        """
        return await upload_media(
            self,
            source,
            content_type=content_type,
            name=name,
            e2e=e2e,
            media_id=media_id,
            etags=etags,
            on_part=on_part,
        )

    async def download(self, media_id: str, dest: str | os.PathLike[str]) -> MediaObject:
        """Download a media into the file ``dest``, streamed and checked against the media
        object's size and SHA-256 (:class:`TidingsProtocolError` on a mismatch: nothing is
        written). The media object is returned."""
        media, _ = await download_media(self, media_id, dest)
        return media

    async def download_thumbnail(self, media_id: str, dest: str | os.PathLike[str]) -> MediaObject:
        """Download a media's thumbnail (WebP, at most 320 pixels a side) into ``dest``;
        :class:`TidingsProtocolError` when it has none (``MediaObject.thumbnail``)."""
        media, _ = await download_media(self, media_id, dest, thumbnail=True)
        return media

    async def send_file(
        self,
        chat: ChatConnection,
        source: MediaSource,
        *,
        to: str | None = None,
        channel_id: str | None = None,
        caption: str = "",
        content_type: str | None = None,
        name: str | None = None,
        client_msg_id: str | None = None,
    ) -> tuple[Attachment, Ack]:
        """Upload a file, then send it on ``chat`` to a channel or (``to``) a user, with
        ``caption`` as the body: the attachment and the ``ack``."""
        if (channel_id is None) == (to is None):
            raise ValueError("give exactly one of channel_id or to")
        attachment = await self.upload(source, content_type=content_type, name=name)
        ack = await chat.send(
            caption,
            to=to,
            channel_id=channel_id,
            client_msg_id=client_msg_id,
            attachments=[attachment],
        )
        return attachment, ack

    # -- chat ------------------------------------------------------------------------------------

    def chat(
        self,
        *,
        cursor: int = 0,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
    ) -> ChatConnection:
        """A :class:`ChatConnection` for the logged-in session that rediscovers through this
        client. Start it with ``async with``."""
        if self.session is None or self.token is None:
            raise ValueError("log in first")
        return ChatConnection(
            self.session.chat_url,
            self.token,
            cursor=cursor,
            discover=self.discover,
            backoff=backoff,
            max_attempts=max_attempts,
            ssl=self.ssl,
        )


def _system_trust(base_url: str) -> SSLContext | bool:
    """httpx's ``verify`` without a CA of our own: the system's trust store, as the
    WebSocket gets (httpx would use its bundled one); nothing to load for plain HTTP."""
    return client_ssl_context() if base_url.startswith("https:") else True


def _api_error(response: httpx.Response) -> TidingsApiError:
    code, message = f"http_{response.status_code}", response.reason_phrase
    after_ms: int | None = None
    try:
        body = response.json()
        error = body["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
        if isinstance(body.get("after_ms"), int):
            after_ms = body["after_ms"]
    except (ValueError, KeyError, TypeError, AttributeError):
        logger.debug("error body without {error: {code, message}}: %.200r", response.text)
    return TidingsApiError(response.status_code, code, message, after_ms=after_ms)
