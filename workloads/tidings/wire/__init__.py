"""What the operator and the workloads both speak on the wire, in one place.

- :mod:`~tidings.wire.topics`: the Kafka topic names, their layout and config overrides;
- :mod:`~tidings.wire.topic_admin`: creating those topics or bringing them up to date
  (partitions grow, config overrides merged), the same for the chat servers'
  ``tidings migrate`` and for the operator's wiring;
- :mod:`~tidings.wire.members`: the chat servers' membership record;
- :mod:`~tidings.wire.compacted`: reading a compacted topic from its beginning.

The package imports nothing of ``tidings`` outside itself (no settings: callers pass
aiokafka's client options), so the operator can use it without the servers' code, and
neither side keeps a copy of the other's names (docs/architecture.md, "The dependency
rule").
"""
