"""The schedule: one heap of due work ordered by time, and a bounded pool of attempts.

A job is one (queue id, domain): domains of one message are independent.
There is no sleeping task per message; one loop waits for the earliest due
job or for new work, whichever comes first.
"""

import asyncio
import heapq
import itertools
import time
from typing import Awaitable, Callable

import structlog

log = structlog.get_logger("relayd.scheduler")

# An attempt that fails with an unexpected error is tried again after this
# long instead of being dropped: the recipients are still in the spool.
RETRY_AFTER_INTERNAL_ERROR = 60.0

AttemptFunction = Callable[[str, str], Awaitable[float | None]]


class Scheduler:
    def __init__(self, attempt: AttemptFunction, concurrency: int, clock: Callable[[], float] = time.time):
        self._attempt = attempt
        self._clock = clock
        self._heap: list[tuple[float, int, str, str]] = []
        self._counter = itertools.count()
        self._known: set[tuple[str, str]] = set()
        # The (counter, due time) of the one live heap entry of each waiting
        # job. bring_forward() and remove() leave the old entry in the heap;
        # an entry whose counter is not here is skipped when it comes up.
        self._entries: dict[tuple[str, str], tuple[int, float]] = {}
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
        self._push(queue_id, domain, due)

    def _push(self, queue_id: str, domain: str, due: float) -> None:
        counter = next(self._counter)
        self._entries[(queue_id, domain)] = (counter, due)
        heapq.heappush(self._heap, (due, counter, queue_id, domain))
        self._wake.set()

    def bring_forward(self, queue_id: str | None = None) -> int:
        """Make the waiting jobs of `queue_id`, or all waiting jobs, due now; return how many moved.

        A running attempt is left alone: it schedules its own next attempt
        when it ends.
        """
        now = self._clock()
        moved = 0
        for (job_queue_id, domain), (_, due) in list(self._entries.items()):
            if due > now and (queue_id is None or job_queue_id == queue_id):
                self._push(job_queue_id, domain, now)
                moved += 1
        self._compact()
        return moved

    def remove(self, queue_id: str) -> int:
        """Drop the waiting jobs of `queue_id`; return how many were dropped.

        An attempt already running for it ends by itself: it finds the
        message gone from the spool on its next load.
        """
        keys = [key for key in self._entries if key[0] == queue_id]
        for key in keys:
            del self._entries[key]
            self._known.discard(key)
        self._compact()
        return len(keys)

    def _compact(self) -> None:
        """Rebuild the heap without superseded entries once they outnumber the live ones."""
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [entry for entry in self._heap if self._is_live(entry)]
            heapq.heapify(self._heap)

    def _is_live(self, entry: tuple[float, int, str, str]) -> bool:
        live = self._entries.get((entry[2], entry[3]))
        return live is not None and live[0] == entry[1]

    async def run(self) -> None:
        """Start due jobs for ever, at most `concurrency` at a time."""
        while True:
            await self._slots.acquire()
            try:
                _, _, queue_id, domain = await self._next_due()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._run_job(queue_id, domain), name=f"attempt {queue_id} {domain}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_due(self) -> tuple[float, int, str, str]:
        while True:
            self._wake.clear()
            while self._heap and not self._is_live(self._heap[0]):
                heapq.heappop(self._heap)
            now = self._clock()
            if self._heap and self._heap[0][0] <= now:
                entry = heapq.heappop(self._heap)
                del self._entries[(entry[2], entry[3])]
                return entry
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
        if due is not None:
            self.schedule(queue_id, domain, due)

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
