"""Tests for relayd.delivery.scheduler.Scheduler with a fake attempt and a fake clock."""

import asyncio
import contextlib

import pytest

from relayd.delivery.scheduler import RETRY_AFTER_INTERNAL_ERROR, Scheduler

pytestmark = pytest.mark.timeout(2)

# A job due this far in the future never runs during a test; scheduling one wakes the loop.
NEVER = 1e12


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _until(predicate, timeout: float = 1.0) -> None:
    """Wait until `predicate()` is true; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.001)


async def _settle() -> None:
    """Give the scheduler loop and its tasks time to act on what just changed."""
    await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler):
    task = asyncio.create_task(scheduler.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_jobs_run_in_due_order():
    clock = FakeClock(100.0)
    started = []

    async def attempt(queue_id, domain):
        started.append(queue_id)
        return None

    scheduler = Scheduler(attempt, concurrency=1, clock=clock)
    for queue_id, due in [("Q50", 50.0), ("Q10", 10.0), ("Q90", 90.0), ("Q30", 30.0), ("Q30b", 30.0)]:
        scheduler.schedule(queue_id, "example.com", due)

    async with running(scheduler):
        await _until(lambda: len(started) == 5)

    assert started == ["Q10", "Q30", "Q30b", "Q50", "Q90"]


async def test_future_job_waits_for_clock():
    clock = FakeClock(100.0)
    started = []

    async def attempt(queue_id, domain):
        started.append(queue_id)
        return None

    scheduler = Scheduler(attempt, concurrency=2, clock=clock)
    scheduler.schedule("LATER", "example.com", 200.0)

    async with running(scheduler):
        await _settle()
        assert started == []
        clock.now = 200.0
        scheduler.schedule("WAKE", "example.com", NEVER)
        await _until(lambda: started == ["LATER"])


async def test_job_not_scheduled_twice():
    clock = FakeClock(100.0)
    release = asyncio.Event()
    calls = []

    async def attempt(queue_id, domain):
        calls.append((queue_id, domain))
        await release.wait()
        return None

    scheduler = Scheduler(attempt, concurrency=4, clock=clock)
    scheduler.schedule("Q1", "example.com", 0.0)
    scheduler.schedule("Q1", "example.com", 0.0)
    scheduler.schedule("Q1", "example.org", 0.0)

    assert len(scheduler) == 2

    async with running(scheduler):
        await _until(lambda: len(calls) == 2)
        scheduler.schedule("Q1", "example.com", 0.0)
        assert len(scheduler) == 2
        release.set()
        await _until(lambda: len(scheduler) == 0)
        await _settle()

    assert sorted(calls) == [("Q1", "example.com"), ("Q1", "example.org")]


async def test_finished_job_schedulable_again():
    clock = FakeClock(100.0)
    calls = []

    async def attempt(queue_id, domain):
        calls.append(queue_id)
        return None

    scheduler = Scheduler(attempt, concurrency=1, clock=clock)
    scheduler.schedule("Q1", "example.com", 0.0)

    async with running(scheduler):
        await _until(lambda: len(calls) == 1 and len(scheduler) == 0)
        scheduler.schedule("Q1", "example.com", 0.0)
        await _until(lambda: len(calls) == 2)


async def test_returned_due_reschedules():
    clock = FakeClock(100.0)
    calls = []

    async def attempt(queue_id, domain):
        calls.append(clock.now)
        return 150.0 if len(calls) == 1 else None

    scheduler = Scheduler(attempt, concurrency=1, clock=clock)
    scheduler.schedule("Q1", "example.com", 0.0)

    async with running(scheduler):
        await _until(lambda: len(calls) == 1)
        await _settle()
        assert len(scheduler) == 1
        assert calls == [100.0]
        clock.now = 150.0
        scheduler.schedule("WAKE", "example.com", NEVER)
        await _until(lambda: len(calls) == 2)

    assert calls == [100.0, 150.0]


async def test_none_due_drops_job():
    clock = FakeClock(100.0)
    calls = []

    async def attempt(queue_id, domain):
        calls.append(queue_id)
        return None

    scheduler = Scheduler(attempt, concurrency=1, clock=clock)
    scheduler.schedule("Q1", "example.com", 0.0)

    async with running(scheduler):
        await _until(lambda: len(calls) == 1)
        await _settle()

    assert len(scheduler) == 0
    assert calls == ["Q1"]


async def test_error_retries_after_delay():
    clock = FakeClock(1000.0)
    calls = []

    async def attempt(queue_id, domain):
        calls.append(clock.now)
        if len(calls) == 1:
            raise RuntimeError("attempt broke")
        return None

    scheduler = Scheduler(attempt, concurrency=1, clock=clock)
    scheduler.schedule("Q1", "example.com", 0.0)

    async with running(scheduler):
        await _until(lambda: len(calls) == 1)
        await _settle()
        assert len(scheduler) == 1

        clock.now = 1000.0 + RETRY_AFTER_INTERNAL_ERROR - 0.5
        scheduler.schedule("WAKE1", "example.com", NEVER)
        await _settle()
        assert len(calls) == 1

        clock.now = 1000.0 + RETRY_AFTER_INTERNAL_ERROR
        scheduler.schedule("WAKE2", "example.com", NEVER)
        await _until(lambda: len(calls) == 2)

    assert calls == [1000.0, 1000.0 + RETRY_AFTER_INTERNAL_ERROR]


async def test_concurrency_limit_respected():
    clock = FakeClock(100.0)
    current = 0
    highest = 0
    finished = []

    async def attempt(queue_id, domain):
        nonlocal current, highest
        current += 1
        highest = max(highest, current)
        await asyncio.sleep(0.01)
        current -= 1
        finished.append(queue_id)
        return None

    scheduler = Scheduler(attempt, concurrency=3, clock=clock)
    for index in range(10):
        scheduler.schedule(f"Q{index}", "example.com", 0.0)

    async with running(scheduler):
        await _until(lambda: len(finished) == 10)

    assert highest == 3


async def test_error_frees_slot():
    clock = FakeClock(100.0)
    calls = []

    async def attempt(queue_id, domain):
        calls.append(queue_id)
        raise RuntimeError("attempt broke")

    scheduler = Scheduler(attempt, concurrency=1, clock=clock)
    scheduler.schedule("Q1", "example.com", 0.0)
    scheduler.schedule("Q2", "example.com", 0.0)

    async with running(scheduler):
        await _until(lambda: len(calls) == 2)

    assert calls == ["Q1", "Q2"]


async def test_drain_cancels_after_grace():
    clock = FakeClock(100.0)
    started = []
    cancelled = []
    finished = []

    async def attempt(queue_id, domain):
        started.append(queue_id)
        try:
            if queue_id == "QUICK":
                await asyncio.sleep(0.01)
            else:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(queue_id)
            raise
        finished.append(queue_id)
        return 500.0

    scheduler = Scheduler(attempt, concurrency=5, clock=clock)
    for queue_id in ["STUCK1", "QUICK", "STUCK2", "STUCK3"]:
        scheduler.schedule(queue_id, "example.com", 0.0)

    async with running(scheduler) as task:
        await _until(lambda: len(started) == 4)
    assert task.cancelled()

    loop = asyncio.get_running_loop()
    started = loop.time()
    count = await scheduler.drain(grace=0.2)
    elapsed = loop.time() - started

    assert count == 3
    assert sorted(cancelled) == ["STUCK1", "STUCK2", "STUCK3"]
    assert finished == ["QUICK"]
    assert 0.2 <= elapsed < 1.0
    assert len(scheduler) == 1


async def test_drain_without_attempts():
    async def attempt(queue_id, domain):
        return None

    scheduler = Scheduler(attempt, concurrency=1, clock=FakeClock(0.0))

    assert await scheduler.drain(grace=5.0) == 0


async def test_drain_waits_for_finish():
    clock = FakeClock(100.0)
    started = []
    finished = []

    async def attempt(queue_id, domain):
        started.append(queue_id)
        await asyncio.sleep(0.05)
        finished.append(queue_id)
        return None

    scheduler = Scheduler(attempt, concurrency=2, clock=clock)
    scheduler.schedule("Q1", "example.com", 0.0)
    scheduler.schedule("Q2", "example.com", 0.0)

    async with running(scheduler):
        await _until(lambda: len(started) == 2)

    assert await scheduler.drain(grace=1.0) == 0
    assert sorted(finished) == ["Q1", "Q2"]


def recording_scheduler(clock: FakeClock, concurrency: int = 1) -> tuple[Scheduler, list]:
    """Return a scheduler whose attempts only record (queue id, domain), and that record."""
    started = []

    async def attempt(queue_id, domain):
        started.append((queue_id, domain))
        return None

    return Scheduler(attempt, concurrency=concurrency, clock=clock), started


async def test_bring_forward_one_message():
    scheduler, started = recording_scheduler(FakeClock(100.0), concurrency=2)
    scheduler.schedule("Q1", "example.com", 500.0)
    scheduler.schedule("Q1", "example.org", 600.0)
    scheduler.schedule("Q2", "example.com", 500.0)

    async with running(scheduler):
        await _settle()
        assert started == []
        assert scheduler.bring_forward("Q1") == 2
        await _until(lambda: len(started) == 2)
        await _settle()

    assert sorted(started) == [("Q1", "example.com"), ("Q1", "example.org")]
    assert len(scheduler) == 1


async def test_bring_forward_runs_job_once():
    clock = FakeClock(100.0)
    scheduler, started = recording_scheduler(clock)
    scheduler.schedule("Q1", "example.com", 500.0)
    scheduler.bring_forward()

    async with running(scheduler):
        await _until(lambda: started == [("Q1", "example.com")])
        # The superseded entry for 500.0 comes up and is skipped.
        clock.now = 500.0
        scheduler.schedule("WAKE", "example.com", NEVER)
        await _settle()

    assert started == [("Q1", "example.com")]


def blocking_scheduler(clock: FakeClock) -> tuple[Scheduler, list, asyncio.Event]:
    """Return a one-slot scheduler whose attempts record their queue id and wait for the returned event."""
    release = asyncio.Event()
    started = []

    async def attempt(queue_id, domain):
        started.append(queue_id)
        await release.wait()
        return None

    return Scheduler(attempt, concurrency=1, clock=clock), started, release


async def test_bring_forward_leaves_running_job():
    scheduler, started, release = blocking_scheduler(FakeClock(100.0))
    scheduler.schedule("Q1", "example.com", 0.0)

    async with running(scheduler):
        await _until(lambda: started == ["Q1"])
        assert scheduler.bring_forward("Q1") == 0
        release.set()
        await _until(lambda: len(scheduler) == 0)
        await _settle()

    assert started == ["Q1"]


async def test_bring_forward_skips_due_jobs():
    scheduler, _ = recording_scheduler(FakeClock(100.0))
    scheduler.schedule("Q1", "example.com", 50.0)

    assert scheduler.bring_forward() == 0


async def test_remove_drops_waiting_jobs():
    clock = FakeClock(100.0)
    scheduler, started = recording_scheduler(clock)
    scheduler.schedule("GONE", "example.com", 150.0)
    scheduler.schedule("GONE", "example.org", 150.0)
    scheduler.schedule("KEPT", "example.com", 150.0)

    assert scheduler.remove("GONE") == 2
    assert len(scheduler) == 1
    async with running(scheduler):
        clock.now = 200.0
        scheduler.schedule("WAKE", "example.com", NEVER)
        await _until(lambda: started == [("KEPT", "example.com")])
        await _settle()

    assert started == [("KEPT", "example.com")]
    # A removed job can be scheduled again, as a restart would.
    scheduler.schedule("GONE", "example.com", 0.0)
    assert len(scheduler) == 2



async def test_remove_drops_due_job_waiting_for_slot():
    scheduler, started, release = blocking_scheduler(FakeClock(100.0))
    scheduler.schedule("BUSY", "example.com", 0.0)

    async with running(scheduler):
        await _until(lambda: started == ["BUSY"])
        scheduler.schedule("GONE", "example.org", 0.0)
        await _settle()
        assert scheduler.remove("GONE") == 1
        release.set()
        await _until(lambda: len(scheduler) == 0)
        await _settle()

    assert started == ["BUSY"]
