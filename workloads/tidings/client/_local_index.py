"""The client's own search over what it decrypted: the server cannot search end-to-end
channels (it holds ciphertext only), so the device keeps an index of the plaintexts it
opened, in a SQLite file (FTS5) only the user can read (mode 0600)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Found", "LocalIndex"]


@dataclass(frozen=True, slots=True)
class Found:
    message_id: str
    channel_id: str
    sender_id: str
    text: str


class LocalIndex:
    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # made private before any write
        os.close(fd)
        os.chmod(path, 0o600)
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS opened USING fts5("
            "text, message_id UNINDEXED, channel_id UNINDEXED, sender_id UNINDEXED)"
        )

    def add(self, message_id: str, channel_id: str, sender_id: str, text: str) -> None:
        with self.db:
            known = self.db.execute(
                "SELECT 1 FROM opened WHERE message_id = ?", (message_id,)
            ).fetchone()
            if known is None:
                self.db.execute(
                    "INSERT INTO opened (text, message_id, channel_id, sender_id) "
                    "VALUES (?, ?, ?, ?)",
                    (text, message_id, channel_id, sender_id),
                )

    def search(self, words: str, limit: int = 50) -> list[Found]:
        """Messages with all these words (newest first)."""
        terms = " ".join('"' + w.replace('"', '""') + '"' for w in words.split())
        if not terms:
            return []
        rows = self.db.execute(
            "SELECT message_id, channel_id, sender_id, text FROM opened WHERE opened MATCH ? "
            "ORDER BY CAST(message_id AS INTEGER) DESC LIMIT ?",
            (terms, limit),
        ).fetchall()
        return [Found(*row) for row in rows]

    def close(self) -> None:
        self.db.close()
