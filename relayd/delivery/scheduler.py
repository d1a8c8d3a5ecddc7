"""The schedule: due work ordered by time, then started earliest deadline first.

A job is one (queue id, domain): domains of one message are independent.
There is no sleeping task per message. Jobs wait in a heap by due time.
Once due, they join their class's ready heap, ordered by deadline, and the
job with the earliest deadline among those that have a slot starts next.

Slots come from two pools, all of delivery and the job's domain, each with
a share reserved per class (see lanes.py). A due job whose domain has no
slot for its class is parked, without taking a slot, until an attempt to
that domain ends: a slow destination keeps at most its domain limit, and
every other domain keeps moving. A paused domain's jobs wait for the end of
the pause.
"""

import asyncio
import heapq
import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

import structlog

from relayd.delivery.health import DestinationHealth
from relayd.delivery.lanes import SlotPool

log = structlog.get_logger("relayd.scheduler")

# An attempt that fails with an unexpected error is tried again after this
# long instead of being dropped: the recipients are still in the spool.
RETRY_AFTER_INTERNAL_ERROR = 60.0
DEFAULT_CLASS = "transactional"

AttemptFunction = Callable[[str, str], Awaitable[float | None]]


@dataclass(frozen=True)
class Job:
    queue_id: str
    domain: str
    message_class: str
    deadline: float


class Scheduler:
    def __init__(
        self,
        attempt: AttemptFunction,
        concurrency: int,
        clock: Callable[[], float] = time.time,
        per_domain: int | None = None,
        health: DestinationHealth | None = None,
        shares: Mapping[str, float] | None = None,
    ):
        self._attempt = attempt
        self._clock = clock
        self._health = health
        self._shares = dict(shares or {})
        self._per_domain = per_domain or concurrency
        self._slots = SlotPool(concurrency, self._shares)
        self._domains: dict[str, SlotPool] = {}
        self._timed: list[tuple[float, int, Job]] = []
        self._ready: dict[str, list[tuple[float, int, Job]]] = {}
        self._parked: dict[tuple[str, str], deque[Job]] = {}
        self._counter = itertools.count()
        self._known: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._known)

    def schedule(
        self,
        queue_id: str,
        domain: str,
        due: float,
        message_class: str = DEFAULT_CLASS,
        deadline: float | None = None,
    ) -> None:
        """Add a job unless it is already scheduled or running.

        `deadline` orders due jobs (earliest first); it defaults to `due`.
        """
        key = (queue_id, domain)
        if key in self._known:
            return
        self._known.add(key)
        job = Job(queue_id, domain, message_class, due if deadline is None else deadline)
        heapq.heappush(self._timed, (due, next(self._counter), job))
        self._wake.set()

    def bring_forward(self, queue_id: str | None = None) -> int:
        """Make waiting jobs due now, those of `queue_id` or all; return how many moved."""
        now = self._clock()
        moved = 0
        for index, (due, order, job) in enumerate(self._timed):
            if due > now and (queue_id is None or job.queue_id == queue_id):
                self._timed[index] = (now, order, Job(job.queue_id, job.domain, job.message_class, now))
                moved += 1
        if moved:
            heapq.heapify(self._timed)
            self._wake.set()
        return moved

    def remove(self, queue_id: str) -> int:
        """Drop the waiting jobs of `queue_id`, due or not; return how many were dropped.

        An attempt already running for it ends by itself: it finds the
        message gone from the spool on its next load.
        """
        removed = [job for _, _, job in self._timed if job.queue_id == queue_id]
        self._timed = [entry for entry in self._timed if entry[2].queue_id != queue_id]
        heapq.heapify(self._timed)
        for message_class, heap in self._ready.items():
            removed.extend(job for _, _, job in heap if job.queue_id == queue_id)
            self._ready[message_class] = [entry for entry in heap if entry[2].queue_id != queue_id]
            heapq.heapify(self._ready[message_class])
        for key, parked in list(self._parked.items()):
            removed.extend(job for job in parked if job.queue_id == queue_id)
            kept = deque(job for job in parked if job.queue_id != queue_id)
            if kept:
                self._parked[key] = kept
            else:
                del self._parked[key]
        for job in removed:
            self._known.discard((job.queue_id, job.domain))
        return len(removed)

    async def run(self) -> None:
        """Start jobs for ever, each when it is due and a slot is free for it."""
        while True:
            job = await self._next_job()
            global_kind = self._slots.take(job.message_class)
            domain_kind = self._domain_pool(job.domain).take(job.message_class)
            task = asyncio.create_task(
                self._run_job(job, global_kind, domain_kind), name=f"attempt {job.queue_id} {job.domain}"
            )
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _domain_pool(self, domain: str) -> SlotPool:
        pool = self._domains.get(domain)
        if pool is None:
            pool = self._domains[domain] = SlotPool(self._per_domain, self._shares)
        return pool

    async def _next_job(self) -> Job:
        while True:
            self._wake.clear()
            now = self._clock()
            self._release_due(now)
            job = self._pick()
            if job is not None:
                return job
            timeout = self._timed[0][0] - now if self._timed else None
            # asyncio.timeout rather than wait_for: in Python 3.11, wait_for
            # can swallow a cancellation that arrives as the event is set.
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _release_due(self, now: float) -> None:
        """Move due jobs to their class's ready heap; a paused domain's jobs wait for the pause to end."""
        while self._timed and self._timed[0][0] <= now:
            _, _, job = heapq.heappop(self._timed)
            paused_until = self._health.paused_until(job.domain) if self._health else None
            if paused_until is not None:
                heapq.heappush(self._timed, (paused_until, next(self._counter), job))
                continue
            heapq.heappush(self._ready.setdefault(job.message_class, []), (job.deadline, next(self._counter), job))

    def _pick(self) -> Job | None:
        """Return the ready job with the earliest deadline that has both slots, parking domain-blocked ones."""
        classes = sorted((heap[0][0], name) for name, heap in self._ready.items() if heap)
        for _, message_class in classes:
            if not self._slots.can_take(message_class):
                continue
            heap = self._ready[message_class]
            while heap:
                _, _, job = heapq.heappop(heap)
                if self._domain_pool(job.domain).can_take(message_class):
                    return job
                self._parked.setdefault((job.domain, message_class), deque()).append(job)
        return None

    async def _run_job(self, job: Job, global_kind: str, domain_kind: str) -> None:
        try:
            due = await self._attempt(job.queue_id, job.domain)
        except Exception:
            log.exception("attempt_failed_internally", queue_id=job.queue_id, domain=job.domain)
            due = self._clock() + RETRY_AFTER_INTERNAL_ERROR
        finally:
            self._known.discard((job.queue_id, job.domain))
            self._finish(job, global_kind, domain_kind)
        if due is not None:
            self.schedule(job.queue_id, job.domain, due, job.message_class)

    def _finish(self, job: Job, global_kind: str, domain_kind: str) -> None:
        """Free the job's slots and give each class parked on its domain one more chance."""
        self._slots.give(job.message_class, global_kind)
        pool = self._domains[job.domain]
        pool.give(job.message_class, domain_kind)
        for message_class in [c for d, c in self._parked if d == job.domain]:
            parked = self._parked[(job.domain, message_class)]
            if parked:
                waiting = parked.popleft()
                heapq.heappush(self._ready.setdefault(message_class, []), (waiting.deadline, next(self._counter), waiting))
                if not parked:
                    del self._parked[(job.domain, message_class)]
        if pool.in_use == 0 and not any(domain == job.domain for domain, _ in self._parked):
            del self._domains[job.domain]
        self._wake.set()

    async def drain(self, grace: float) -> int:
        """Wait up to `grace` seconds for running attempts, then cancel the rest; return how many were cancelled.

        A cancelled attempt leaves its recipients pending in the spool, so the
        next start tries them again.
        """
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace)
        pending = [task for task in self._running if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)
