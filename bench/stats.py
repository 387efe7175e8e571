"""Percentiles and latency summaries (no numpy: the sample sizes are small)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the two nearest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """`<prefix>_p50_ms`, `_p95_ms`, `_p99_ms` of latencies given in seconds."""
    return {
        f"{prefix}_p{q}_ms": percentile(seconds, q) * 1000 if seconds else math.nan
        for q in (50, 95, 99)
    }


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan
