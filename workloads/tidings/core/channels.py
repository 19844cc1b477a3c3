"""Channel ids: ``dm:<low>:<high>`` for 1:1 chats, ``g:<snowflake>`` for groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tidings.core.ids import parse_decimal_id

ChannelKind = Literal["dm", "group"]
MAX_GROUP_MEMBERS = 100


@dataclass(frozen=True, slots=True)
class ChannelRef:
    channel_id: str
    kind: ChannelKind
    # For a dm: the two user ids, low first. (0, 0) for a group.
    dm_users: tuple[int, int] = (0, 0)


def dm_channel_id(user_a: int, user_b: int) -> str:
    """The id of the direct channel between two users (``dm:<low>:<high>``, either order)."""
    low, high = sorted((user_a, user_b))
    return f"dm:{low}:{high}"


def group_channel_id(snowflake: int) -> str:
    """The id of the group channel with this snowflake (``g:<snowflake>``)."""
    return f"g:{snowflake}"


def parse_channel_id(channel_id: str) -> ChannelRef | None:
    """Parse a channel id, or None when it is not one this system could have made."""
    if channel_id.startswith("dm:"):
        parts = channel_id.split(":")
        if len(parts) != 3:
            return None
        low, high = parse_decimal_id(parts[1]), parse_decimal_id(parts[2])
        if low is None or high is None or low >= high or dm_channel_id(low, high) != channel_id:
            return None
        return ChannelRef(channel_id, "dm", (low, high))
    if channel_id.startswith("g:"):
        group = parse_decimal_id(channel_id[2:])
        if group is None or group_channel_id(group) != channel_id:
            return None
        return ChannelRef(channel_id, "group")
    return None
