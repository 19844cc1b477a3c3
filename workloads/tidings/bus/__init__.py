"""Inbox transport: one interface, one module per backend (memory, sqlite, later kafka)."""

from tidings.bus.base import EventHandler, InboxBus, InboxEvent

__all__ = ["EventHandler", "InboxBus", "InboxEvent"]
