"""Percentiles and latency summaries of the benchmark."""

import math

import pytest

from bench.stats import latency_summary, percentile, rate


@pytest.mark.parametrize(
    "values, fraction, expected",
    [
        ([], 0.5, None),
        ([3.0], 0.99, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([4.0, 3.0, 2.0, 1.0], 0.5, 2.0),
        (list(range(1, 101)), 0.99, 99),
        (list(range(1, 101)), 1.0, 100),
        ([1.0, math.inf], 0.5, 1.0),
        ([1.0, math.inf], 0.99, math.inf),
    ],
)
def test_percentile_nearest_rank(values, fraction, expected):
    assert percentile(values, fraction) == expected


def test_latency_summary_milliseconds():
    summary = latency_summary([0.001, 0.002, 0.010])
    assert summary["count"] == 3
    assert summary["not_arrived"] == 0
    assert summary["p50_ms"] == 2.0
    assert summary["p99_ms"] == 10.0
    assert summary["max_ms"] == 10.0


def test_latency_summary_not_arrived():
    summary = latency_summary([0.001] * 98 + [math.inf] * 2)
    assert summary["not_arrived"] == 2
    assert summary["p50_ms"] == 1.0
    assert summary["p99_ms"] is None
    assert summary["max_ms"] is None


def test_rate_empty_interval():
    assert rate(0, 1.0, 2.0) is None
    assert rate(10, 2.0, 2.0) is None
    assert rate(10, 1.0, 3.0) == 5.0
