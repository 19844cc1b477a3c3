"""Request bodies and response shapes of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tidings.core.model import Message, PresenceStatus
from tidings.core.names import clean_display_name
from tidings.storage.base import Channel, Device, Invite, User

USERNAME_PATTERN = r"^[a-z0-9_.]{3,32}$"


class SignupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=8, max_length=256)
    display_name: str | None = Field(None, min_length=1, max_length=128)

    @field_validator("display_name")
    @classmethod
    def _clean_display_name(cls, value: str | None) -> str | None:
        return None if value is None else clean_display_name(value)


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)
    device_name: str | None = Field(None, min_length=1, max_length=128)
    platform: Literal["ios", "android", "web", "desktop"] | None = None
    device_id: str | None = Field(None, pattern=r"^[0-9]{1,20}$")

    @field_validator("device_name")
    @classmethod
    def _clean_device_name(cls, value: str | None) -> str | None:
        return None if value is None else clean_display_name(value)


class GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    member_ids: list[str] = Field(default_factory=list, max_length=1000)
    # End-to-end (docs/e2ee.md): fixed for the group's life.
    e2e: bool = False

    @field_validator("name")
    @classmethod
    def _clean_name(cls, value: str) -> str:
        return clean_display_name(value)


class PushTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: Literal["apns", "fcm", "webhook"]
    token: str = Field(min_length=1, max_length=4096)


def user_out(user: User, presence: PresenceStatus | None = None) -> dict[str, Any]:
    """A user as the API shows it (with ``presence`` when given)."""
    out: dict[str, Any] = {
        "user_id": str(user.user_id),
        "username": user.username,
        "display_name": user.display_name,
    }
    if presence is not None:
        out["presence"] = presence.to_wire()
    return out


def device_out(device: Device, current_device_id: int) -> dict[str, Any]:
    """A device as the API shows it; ``current`` when it is ``current_device_id``."""
    return {
        "device_id": str(device.device_id),
        "name": device.name,
        "platform": device.platform,
        "push": device.push_provider,
        "created_at": device.created_at,
        "last_seen": device.last_seen,
        "current": device.device_id == current_device_id,
    }


def invite_out(invite: Invite, inviter: User | None) -> dict[str, Any]:
    """A group invite as the API shows it, with the inviter (null when gone)."""
    return {
        "channel_id": invite.channel_id,
        "name": invite.name,
        "inviter_id": str(invite.inviter_id),
        "inviter": user_out(inviter) if inviter is not None else None,
        "created_at": invite.created_at,
    }


class GroupPatchBody(BaseModel):
    """``PATCH /v1/groups/{id}``: what an admin changes (issue #20)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=128)
    members_can_add: bool | None = None

    @field_validator("name")
    @classmethod
    def _clean_name(cls, value: str | None) -> str | None:
        return None if value is None else clean_display_name(value)


class ProfilePatchBody(BaseModel):
    """``PATCH /v1/me``: a new display name (the sign-up rules)."""

    model_config = ConfigDict(extra="forbid")
    display_name: str = Field(min_length=1, max_length=128)

    @field_validator("display_name")
    @classmethod
    def _clean_display_name(cls, value: str) -> str:
        return clean_display_name(value)


def channel_out(channel: Channel, last_message_id: int | None = None) -> dict[str, Any]:
    """A channel as the API shows it; a group's name, owner, admins and ``members_can_add``
    only for a group; ``last_message_id`` when given."""
    out: dict[str, Any] = {
        "channel_id": channel.channel_id,
        "kind": channel.kind,
        "member_ids": [str(m) for m in channel.member_ids],
        "e2e": channel.e2e,
    }
    if channel.kind == "group":
        out["name"] = channel.name
        out["owner_id"] = str(channel.owner_id)
        out["admin_ids"] = [str(m) for m in channel.admin_ids]
        out["members_can_add"] = channel.members_can_add
    if last_message_id is not None:
        out["last_message_id"] = str(last_message_id)
    return out


def group_out(channel: Channel) -> dict[str, Any]:
    """A group as the API shows it."""
    return {
        "channel_id": channel.channel_id,
        "name": channel.name,
        "owner_id": str(channel.owner_id),
        "member_ids": [str(m) for m in channel.member_ids],
        "e2e": channel.e2e,
        "admin_ids": [str(m) for m in channel.admin_ids],
        "members_can_add": channel.members_can_add,
    }


def messages_out(messages: list[Message], device_id: int) -> dict[str, Any]:
    """Messages as ``device_id`` may see them (its own envelope of end-to-end ones)."""
    return {"messages": [m.to_wire_for(device_id) for m in messages]}
