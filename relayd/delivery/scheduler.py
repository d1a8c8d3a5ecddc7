"""The schedule: one heap of due work ordered by time, and a bounded pool of attempts.

A job is one (queue id, domain): domains of one message are independent.
There is no sleeping task per message; one loop waits for the earliest due
job or for new work, whichever comes first.

A due job whose domain already has `per_domain` attempts in progress is
parked, without taking a slot, until one of them ends: a slow destination
keeps at most that many slots, and every other domain keeps moving. A
paused domain's jobs wait for the end of the pause.
"""

import asyncio
import heapq
import itertools
import time
from collections import deque
from typing import Awaitable, Callable

from relayd.delivery.health import DestinationHealth

import structlog

log = structlog.get_logger("relayd.scheduler")

# An attempt that fails with an unexpected error is tried again after this
# long instead of being dropped: the recipients are still in the spool.
RETRY_AFTER_INTERNAL_ERROR = 60.0

AttemptFunction = Callable[[str, str], Awaitable[float | None]]


class Scheduler:
    def __init__(
        self,
        attempt: AttemptFunction,
        concurrency: int,
        clock: Callable[[], float] = time.time,
        per_domain: int | None = None,
        health: DestinationHealth | None = None,
    ):
        self._attempt = attempt
        self._clock = clock
        self._per_domain = per_domain or concurrency
        self._health = health
        self._active: dict[str, int] = {}
        self._parked: dict[str, deque[str]] = {}
        self._heap: list[tuple[float, int, str, str]] = []
        self._counter = itertools.count()
        self._known: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._known)

    def schedule(self, queue_id: str, domain: str, due: float) -> None:
        """Add a job unless it is already scheduled or running."""
        key = (queue_id, domain)
        if key in self._known:
            return
        self._known.add(key)
        heapq.heappush(self._heap, (due, next(self._counter), queue_id, domain))
        self._wake.set()

    async def run(self) -> None:
        """Start due jobs for ever, at most `concurrency` at a time."""
        while True:
            await self._slots.acquire()
            try:
                _, _, queue_id, domain = await self._next_due()
            except BaseException:
                self._slots.release()
                raise
            self._active[domain] = self._active.get(domain, 0) + 1
            task = asyncio.create_task(self._run_job(queue_id, domain), name=f"attempt {queue_id} {domain}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_due(self) -> tuple[float, int, str, str]:
        while True:
            self._wake.clear()
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                item = heapq.heappop(self._heap)
                _, _, queue_id, domain = item
                paused_until = self._health.paused_until(domain) if self._health else None
                if paused_until is not None:
                    heapq.heappush(self._heap, (paused_until, next(self._counter), queue_id, domain))
                elif self._active.get(domain, 0) >= self._per_domain:
                    self._parked.setdefault(domain, deque()).append(queue_id)
                else:
                    return item
            timeout = self._heap[0][0] - now if self._heap else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _run_job(self, queue_id: str, domain: str) -> None:
        key = (queue_id, domain)
        try:
            due = await self._attempt(queue_id, domain)
        except Exception:
            log.exception("attempt_failed_internally", queue_id=queue_id, domain=domain)
            due = self._clock() + RETRY_AFTER_INTERNAL_ERROR
        finally:
            self._slots.release()
            self._known.discard(key)
            self._finish(domain)
        if due is not None:
            self.schedule(queue_id, domain, due)

    def _finish(self, domain: str) -> None:
        """Free the domain's slot and move one of its parked jobs back to the due heap."""
        self._active[domain] -= 1
        if not self._active[domain]:
            del self._active[domain]
        parked = self._parked.get(domain)
        if parked:
            heapq.heappush(self._heap, (self._clock(), next(self._counter), parked.popleft(), domain))
            self._wake.set()
            if not parked:
                del self._parked[domain]

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
