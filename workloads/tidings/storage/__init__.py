"""Storage behind small interfaces, one module per backend.

- :class:`~tidings.storage.base.Directory`: users, devices, friends, channels
  (SQLAlchemy: SQLite embedded, PostgreSQL in a cluster).
- :class:`~tidings.storage.base.MessageStore`: messages, dedupe records, inboxes,
  receipt watermarks, presence, search (SQLite embedded, Cassandra in a cluster).
"""

from tidings.storage.base import (
    Channel,
    Device,
    Directory,
    GroupFull,
    MessageStore,
    User,
    UsernameTaken,
)

__all__ = [
    "Channel",
    "Device",
    "Directory",
    "GroupFull",
    "MessageStore",
    "User",
    "UsernameTaken",
]
