"""Channel ids: ``dm:<low>:<high>`` for 1:1 chats, ``g:<snowflake>`` for groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChannelKind = Literal["dm", "group"]
MAX_GROUP_MEMBERS = 100


@dataclass(frozen=True, slots=True)
class ChannelRef:
    channel_id: str
    kind: ChannelKind
    # For a dm: the two user ids, low first. (0, 0) for a group.
    dm_users: tuple[int, int] = (0, 0)


def dm_channel_id(user_a: int, user_b: int) -> str:
    low, high = sorted((user_a, user_b))
    return f"dm:{low}:{high}"


def group_channel_id(snowflake: int) -> str:
    return f"g:{snowflake}"


def parse_channel_id(channel_id: str) -> ChannelRef | None:
    """Parse a channel id, or None when it is not one this system could have made."""
    if channel_id.startswith("dm:"):
        parts = channel_id.split(":")
        if len(parts) != 3 or not all(_is_decimal(p) for p in parts[1:]):
            return None
        low, high = int(parts[1]), int(parts[2])
        if low >= high or dm_channel_id(low, high) != channel_id:
            return None
        return ChannelRef(channel_id, "dm", (low, high))
    if channel_id.startswith("g:") and _is_decimal(channel_id[2:]):
        if group_channel_id(int(channel_id[2:])) != channel_id:
            return None
        return ChannelRef(channel_id, "group")
    return None


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20
