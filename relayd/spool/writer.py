"""Group commit: one thread applies every spool write, many per transaction.

A commit in SQLite's WAL mode with synchronous=FULL costs one fsync of the
write-ahead log. The writer takes every operation waiting in its queue and
applies them in a single transaction, so concurrent SMTP sessions share that
fsync instead of paying for one each. No caller's future resolves before the
transaction holding its operation is durable.
"""

import asyncio
import queue
import sqlite3
import threading
from typing import Any, Callable

import structlog

log = structlog.get_logger("relayd.spool")

Operation = Callable[[sqlite3.Connection], Any]

# A batch larger than this gains nothing more from sharing an fsync and only
# delays the first caller in it.
MAX_BATCH = 500


class GroupCommitWriter:
    """Serialises spool writes on one connection and commits them in batches."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str = "spool-writer"):
        self._connect = connect
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def submit(self, operation: Operation) -> "asyncio.Future[Any]":
        """Queue `operation`; the returned future resolves once its transaction is committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((operation, future, loop))
        return future

    def _run(self) -> None:
        try:
            connection = self._connect()
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._start_error = exc
            self._started.set()
            return
        self._started.set()

        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(connection, batch)
        connection.close()

    def _commit(self, connection: sqlite3.Connection, batch: list) -> None:
        try:
            connection.execute("BEGIN IMMEDIATE")
            results = [operation(connection) for operation, _, _ in batch]
            connection.execute("COMMIT")
        except Exception as exc:
            _rollback(connection)
            if len(batch) == 1:
                _resolve(batch[0], error=exc)
                return
            # One operation failed (a large message on a full disk, say): the
            # others in the batch must not fail with it, so each is retried in
            # a transaction of its own.
            for item in batch:
                self._commit(connection, [item])
            return
        for item, result in zip(batch, results):
            _resolve(item, result=result)


def _rollback(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error as exc:
        # SQLite rolls back by itself after some I/O errors; nothing is left to undo.
        log.debug("spool_rollback_skipped", error=str(exc))


def _resolve(item: tuple, *, result: Any = None, error: BaseException | None = None) -> None:
    _, future, loop = item

    def settle() -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        # The event loop closed while the daemon was stopping; nobody waits.
        pass
