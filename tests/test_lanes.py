"""Class reservations in slot pools, and the scheduler's pick order across classes and domains."""

import asyncio

import pytest

from relayd.delivery.lanes import RESERVED, SHARED, SlotPool, reserved_slots
from relayd.delivery.scheduler import Scheduler

SHARES = {"auth": 0.2, "transactional": 0.2, "shipping": 0.1, "notification": 0.1}


@pytest.mark.parametrize(
    "total, expected",
    [
        (50, {"auth": 10, "transactional": 10, "shipping": 5, "notification": 5}),
        (10, {"auth": 2, "transactional": 2, "shipping": 1, "notification": 1}),
        (5, {"auth": 1, "transactional": 1, "shipping": 1, "notification": 1}),
        (4, {"auth": 0, "transactional": 1, "shipping": 1, "notification": 1}),
    ],
)
def test_reserved_slots_table(total, expected):
    reserved = reserved_slots(total, SHARES)
    assert reserved == expected
    assert sum(reserved.values()) < total


def test_backlog_leaves_other_reserves():
    pool = SlotPool(10, SHARES)
    taken = 0
    while pool.can_take("notification"):
        pool.take("notification")
        taken += 1
    assert taken == 1 + pool.shared
    assert pool.can_take("auth")
    assert pool.take("auth") == RESERVED


def test_shared_used_after_reserve():
    pool = SlotPool(10, SHARES)
    kinds = [pool.take("auth") for _ in range(3)]
    assert kinds == [RESERVED, RESERVED, SHARED]
    pool.give("auth", RESERVED)
    assert pool.take("auth") == RESERVED


def test_no_shares_all_shared():
    pool = SlotPool(3, {})
    assert [pool.take("notification") for _ in range(3)] == [SHARED, SHARED, SHARED]
    assert not pool.can_take("auth")


class Recorder:
    """An attempt function that records the start order and holds each attempt until released."""

    def __init__(self):
        self.started: list[tuple[str, str]] = []
        self.release = asyncio.Event()

    async def __call__(self, queue_id: str, domain: str):
        self.started.append((queue_id, domain))
        await self.release.wait()
        return None


async def run_until_started(scheduler: Scheduler, recorder: Recorder, count: int) -> None:
    task = asyncio.create_task(scheduler.run())
    for _ in range(200):
        if len(recorder.started) >= count:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.02)
    task.cancel()


# Queue states → the jobs that start, in order: (queue id, domain, class, deadline).
PICK_TABLE = {
    "earliest deadline first across classes": (
        {"concurrency": 1},
        [("N1", "d.test", "notification", 300.0), ("A1", "d.test", "auth", 101.0), ("T1", "d.test", "transactional", 130.0)],
        ["A1"],
    ),
    "auth reserve beats a notification backlog": (
        {"concurrency": 10, "per_domain": 10, "shares": SHARES},
        [(f"N{i}", "d.test", "notification", 200.0 + i) for i in range(20)] + [("A1", "d.test", "auth", 500.0)],
        # Notifications get their reserve (1) and the shared slots (4); auth still starts.
        [f"N{i}" for i in range(5)] + ["A1"],
    ),
    "parked domain does not block others": (
        {"concurrency": 4, "per_domain": 2},
        [("S1", "slow.test", "transactional", 1.0), ("S2", "slow.test", "transactional", 2.0),
         ("S3", "slow.test", "transactional", 3.0), ("F1", "fast.test", "transactional", 4.0)],
        ["S1", "S2", "F1"],
    ),
    "low class keeps its reserve": (
        {"concurrency": 10, "per_domain": 10, "shares": SHARES},
        [(f"A{i}", "d.test", "auth", 100.0 + i) for i in range(20)] + [("N1", "d.test", "notification", 900.0)],
        # Auth gets its reserve (2) and the shared slots (4); the notification still starts.
        [f"A{i}" for i in range(6)] + ["N1"],
    ),
}


@pytest.mark.parametrize("name", sorted(PICK_TABLE))
async def test_scheduler_pick_order(name):
    options, jobs, expected = PICK_TABLE[name]
    recorder = Recorder()
    scheduler = Scheduler(recorder, options["concurrency"], clock=lambda: 1000.0,
                          per_domain=options.get("per_domain"), shares=options.get("shares"))
    for queue_id, domain, message_class, deadline in jobs:
        scheduler.schedule(queue_id, domain, 0.0, message_class, deadline)
    await run_until_started(scheduler, recorder, len(expected))
    assert [queue_id for queue_id, _ in recorder.started] == expected
    recorder.release.set()


async def test_bring_forward_makes_job_due():
    recorder = Recorder()
    scheduler = Scheduler(recorder, 2, clock=lambda: 1000.0)
    scheduler.schedule("LATER", "d.test", 5000.0)
    assert scheduler.bring_forward("LATER") == 1
    await run_until_started(scheduler, recorder, 1)
    assert recorder.started == [("LATER", "d.test")]
    recorder.release.set()
