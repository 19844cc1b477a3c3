"""The MessageStore on Cassandra 5.0, the cluster backend.

- :mod:`~tidings.storage.cassandra.store`: :class:`CassandraMessageStore` (messages,
  dedupe, receipts, presence), with its inbox and search parts in
  :mod:`~tidings.storage.cassandra.inbox` and :mod:`~tidings.storage.cassandra.search`;
- :mod:`~tidings.storage.cassandra.schema`: versioned migrations (``tidings migrate``);
- :mod:`~tidings.storage.cassandra.io_async`: the store's connection (the C++ driver
  through acsylla);
- :mod:`~tidings.storage.cassandra.io`: cassandra-driver on asyncio, for migrations,
  the operator and tools.
"""
