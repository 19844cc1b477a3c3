"""Latency histograms (HdrHistogram, microseconds), mergeable across processes."""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # an hour
DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class Latency:
    """Send-to-receive (or other) latencies in microseconds."""

    __slots__ = ("hist",)

    def __init__(self) -> None:
        self.hist = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)

    def record_ns(self, ns: int) -> None:
        """Record one latency given in nanoseconds (clamped to the histogram's range)."""
        self.hist.record_value(min(max(ns // 1000, LOWEST_US), HIGHEST_US))

    @property
    def count(self) -> int:
        """How many latencies were recorded."""
        return int(self.hist.get_total_count())

    def encode(self) -> str:
        """The histogram in HdrHistogram's compressed text form (to pass between processes)."""
        encoded: bytes = self.hist.encode()
        return encoded.decode()

    @classmethod
    def decode(cls, text: str) -> Latency:
        """The histogram :meth:`encode` made (empty for an empty string)."""
        latency = cls()
        if text:
            latency.hist.add(HdrHistogram.decode(text.encode()))
        return latency

    def merge(self, other: Latency) -> None:
        """Add ``other``'s recorded latencies to this one."""
        self.hist.add(other.hist)

    def summary(self) -> dict[str, Any]:
        """Count and p50/p90/p99/p99.9/max in milliseconds (None when empty)."""
        n = self.count
        out: dict[str, Any] = {"count": n}
        for p in PERCENTILES:
            key = f"p{p:g}_ms".replace(".", "_")
            out[key] = self.hist.get_value_at_percentile(p) / 1000 if n else None
        out["max_ms"] = self.hist.get_max_value() / 1000 if n else None
        out["mean_ms"] = round(self.hist.get_mean_value() / 1000, 3) if n else None
        return out
