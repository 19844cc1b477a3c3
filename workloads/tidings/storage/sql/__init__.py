"""The directory's database on SQLAlchemy: one implementation for SQLite (embedded) and
PostgreSQL (cluster).

- :mod:`~tidings.storage.sql.tables` and :mod:`~tidings.storage.sql.directory_schema`:
  the relational tables and their migrations;
- :mod:`~tidings.storage.sql.directory`: the Directory (users, devices, friends, channels);
- :mod:`~tidings.storage.sql.directory_cache`: the in-memory cache in front of it;
- :mod:`~tidings.storage.sql.keys`: the end-to-end key directory;
- :mod:`~tidings.storage.sql.media`: the media uploads' rows.
"""
