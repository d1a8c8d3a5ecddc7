"""Percentiles and rates over the benchmark's records."""

import math

from bench.loadgen import Submission

MEGABYTE = 1024 * 1024


def percentile(values: list[float], fraction: float) -> float | None:
    """Return the nearest-rank percentile of `values` (fraction 0.99 for p99), or None for no values.

    math.inf stands for a message that never arrived within the wait: a
    percentile that falls on one is inf, reported as "more than the wait".
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values: list[float]) -> dict[str, float | int | None]:
    """Return the count, p50, p99 and max in milliseconds, and how many never arrived.

    A percentile that falls on a message that never arrived is None: JSON
    has no infinity, and the report prints it as "more than the wait".
    """
    def milliseconds(value: float | None) -> float | None:
        if value is None or math.isinf(value):
            return None
        return round(value * 1000, 1)

    return {
        "count": len(values),
        "not_arrived": sum(1 for value in values if math.isinf(value)),
        "p50_ms": milliseconds(percentile(values, 0.50)),
        "p99_ms": milliseconds(percentile(values, 0.99)),
        "max_ms": milliseconds(max(values) if values else None),
    }


def rate(count: int, start: float, end: float) -> float | None:
    """Return count / (end - start) in messages per second, or None for an empty interval."""
    if count == 0 or end <= start:
        return None
    return round(count / (end - start), 1)


def megabytes(value: int | None) -> float | None:
    """Return a size in bytes as MiB with one decimal."""
    return None if value is None else round(value / MEGABYTE, 1)


def refusals(submissions: list[Submission]) -> dict:
    """Return how many submissions got no 250, with up to three distinct replies as examples."""
    refused = [s for s in submissions if not s.accepted]
    examples = sorted({f"{s.code} {s.reply}"[:120] for s in refused})[:3]
    return {"refused": len(refused), "refusal_examples": examples}
