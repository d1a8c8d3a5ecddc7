"""The retry curve as pure functions of attempts, age, policy and a random source."""

from typing import Callable

from relayd.config.model import RetryPolicy

# Spread the retries of recipients deferred together (one outage) over
# ±20% so they do not all return to the destination in the same second.
JITTER = 0.2


def next_delay(attempts: int, policy: RetryPolicy, random: Callable[[], float]) -> float:
    """Return the seconds to wait after `attempts` failed attempts (1 or more)."""
    try:
        base = min(policy.first * policy.multiplier ** max(attempts - 1, 0), policy.max_interval)
    except OverflowError:
        # Hundreds of attempts under a short max_interval: the power
        # overflows a float long after the cap applies.
        base = policy.max_interval
    return base * (1 - JITTER + 2 * JITTER * random())


def next_attempt_time(
    *, received_at: float, now: float, attempts: int, policy: RetryPolicy, random: Callable[[], float]
) -> float | None:
    """Return when to try a deferred recipient again, or None when it has expired.

    The last attempt is placed at the give-up age itself, so a recipient is
    tried once more before it expires even when the backoff would overshoot.
    """
    give_up_at = received_at + policy.give_up
    if now >= give_up_at:
        return None
    return min(now + next_delay(attempts, policy, random), give_up_at)
