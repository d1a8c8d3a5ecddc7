"""Tests for relayd.delivery.retry: the backoff curve, its jitter and the give-up age."""

import pytest

from relayd.config.model import RetryPolicy
from relayd.delivery.retry import next_attempt_time, next_delay

POLICY = RetryPolicy(first=30.0, multiplier=2.0, max_interval=3600.0, give_up=2 * 86400.0)

# attempts -> delay before jitter: 30 s doubling, capped at one hour from the 8th attempt on.
BASE_DELAYS = {1: 30.0, 2: 60.0, 3: 120.0, 4: 240.0, 5: 480.0, 6: 960.0, 7: 1920.0, 8: 3600.0, 9: 3600.0, 10: 3600.0}

# random() value -> factor applied to the base delay
JITTER_FACTORS = {0.0: 0.8, 0.5: 1.0, 1.0: 1.2}


@pytest.mark.parametrize(("attempts", "base"), BASE_DELAYS.items())
@pytest.mark.parametrize(("random_value", "factor"), JITTER_FACTORS.items())
def test_next_delay_table(attempts, base, random_value, factor):
    delay = next_delay(attempts, POLICY, lambda: random_value)

    assert delay == pytest.approx(base * factor)


@pytest.mark.parametrize(
    ("multiplier", "attempts", "base"),
    [(1.0, 5, 30.0), (3.0, 3, 270.0), (1.5, 4, 101.25), (10.0, 4, 3600.0)],
)
def test_next_delay_multiplier(multiplier, attempts, base):
    policy = RetryPolicy(first=30.0, multiplier=multiplier, max_interval=3600.0, give_up=86400.0)

    assert next_delay(attempts, policy, lambda: 0.5) == pytest.approx(base)


def test_next_delay_cap_with_jitter():
    policy = RetryPolicy(first=10.0, multiplier=2.0, max_interval=100.0, give_up=86400.0)

    assert next_delay(20, policy, lambda: 0.0) == pytest.approx(80.0)
    assert next_delay(20, policy, lambda: 1.0) == pytest.approx(120.0)


@pytest.mark.parametrize(("multiplier", "attempts"), [(2.0, 1100), (100.0, 200)])
def test_next_delay_many_attempts(multiplier, attempts):
    policy = RetryPolicy(first=30.0, multiplier=multiplier, max_interval=60.0, give_up=2 * 86400.0)

    assert next_delay(attempts, policy, lambda: 0.5) == pytest.approx(60.0)


@pytest.mark.parametrize("attempts", [0, -3])
def test_next_delay_below_one(attempts):
    assert next_delay(attempts, POLICY, lambda: 0.5) == pytest.approx(30.0)


def test_next_attempt_adds_delay():
    when = next_attempt_time(received_at=1000.0, now=1100.0, attempts=3, policy=POLICY, random=lambda: 0.5)

    assert when == pytest.approx(1100.0 + 120.0)


@pytest.mark.parametrize("attempts", range(1, 11))
@pytest.mark.parametrize("random_value", [0.0, 0.5, 1.0])
def test_next_attempt_within_give_up(attempts, random_value):
    policy = RetryPolicy(first=60.0, multiplier=2.0, max_interval=3600.0, give_up=1000.0)
    received_at = 5000.0
    now = received_at + 900.0

    when = next_attempt_time(received_at=received_at, now=now, attempts=attempts, policy=policy, random=lambda: random_value)

    assert when is not None
    assert when > now
    assert when <= received_at + policy.give_up


def test_next_attempt_clamped_to_give_up():
    policy = RetryPolicy(first=600.0, multiplier=2.0, max_interval=3600.0, give_up=1000.0)

    when = next_attempt_time(received_at=0.0, now=990.0, attempts=1, policy=policy, random=lambda: 0.5)

    assert when == 1000.0


@pytest.mark.parametrize("age", [1000.0, 1000.5, 50_000.0])
def test_next_attempt_expired(age):
    policy = RetryPolicy(first=60.0, multiplier=2.0, max_interval=3600.0, give_up=1000.0)

    when = next_attempt_time(received_at=200.0, now=200.0 + age, attempts=4, policy=policy, random=lambda: 0.5)

    assert when is None
