"""Presence as a state machine over connect, activity and disconnect, with time passed in.

A user is online while any device is connected. When the last device goes (it closed, or
fell silent and was closed), the user stays online for a grace window; a device that
comes back inside it causes no offline/online pair. When the window ends the user goes
offline with ``last_seen`` = the last moment a device was heard from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PresenceChange:
    user_id: int
    status: str  # "online" | "offline"
    last_seen: int  # ms


class _UserState:
    __slots__ = ("connections", "last_seen", "offline_at")

    def __init__(self, now: int) -> None:
        self.connections = 0
        self.last_seen = now
        self.offline_at: int | None = None


class PresenceTracker:
    """Tracks who is online on this server; all times are milliseconds."""

    def __init__(self, offline_after_ms: int) -> None:
        self.offline_after_ms = offline_after_ms
        self._users: dict[int, _UserState] = {}

    def is_online(self, user_id: int) -> bool:
        """Whether the user is online here (a device connected, or inside the grace window)."""
        return user_id in self._users

    def online_users(self) -> dict[int, int]:
        """Who is online here, with when each was last heard from."""
        return {user_id: state.last_seen for user_id, state in self._users.items()}

    def connect(self, user_id: int, now: int) -> PresenceChange | None:
        """A device of the user connected at ``now``: the change to announce (online), or None
        when the user was online already."""
        state = self._users.get(user_id)
        if state is None:
            state = self._users[user_id] = _UserState(now)
            state.connections = 1
            return PresenceChange(user_id, "online", now)
        state.connections += 1
        state.last_seen = now
        state.offline_at = None  # back inside the window: no flap
        return None

    def disconnect(self, user_id: int, last_heard: int) -> None:
        """A device is gone; ``last_heard`` is when it last sent a frame or closed."""
        state = self._users.get(user_id)
        if state is None:
            return
        state.connections = max(0, state.connections - 1)
        state.last_seen = max(state.last_seen, last_heard)
        if state.connections == 0:
            state.offline_at = state.last_seen + self.offline_after_ms

    def sweep(self, now: int) -> list[PresenceChange]:
        """Users whose window has run out go offline."""
        gone = [
            (user_id, state)
            for user_id, state in self._users.items()
            if state.offline_at is not None and state.offline_at <= now
        ]
        for user_id, _ in gone:
            del self._users[user_id]
        return [PresenceChange(user_id, "offline", state.last_seen) for user_id, state in gone]

    def forget(self, user_id: int) -> None:
        """This server no longer serves the user (their partition moved): no change to
        announce, the new owner tracks them from their reconnect on."""
        self._users.pop(user_id, None)
