"""The MessageStore on SQLite, the embedded default: one process, one database file.

- :mod:`~tidings.storage.sqlite.store`: :class:`SqliteMessageStore` (messages, inboxes,
  receipts, presence) and :class:`StoreMessageLog`, the embedded message log;
- :mod:`~tidings.storage.sqlite.search`: the full-text index (FTS5) and its queries;
- :mod:`~tidings.storage.sqlite.schema`: the tables and their migrations;
- :mod:`~tidings.storage.sqlite.writer`: group commit, one transaction and one fsync per
  batch of writes.
"""
