"""The inbox producer's settings, without a broker."""

from __future__ import annotations

import pytest


def test_the_inbox_producer_compresses_with_lz4_and_falls_back_without_cramjam(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiokafka import codec

    from tidings.bus.kafka import compression_type

    assert compression_type("lz4") == "lz4"  # cramjam is a dependency (aiokafka[lz4])
    assert compression_type("none") is None
    assert compression_type("gzip") == "gzip"
    monkeypatch.setattr(codec, "has_lz4", lambda: False)
    assert compression_type("lz4") is None
