"""An SQLite database in WAL mode, shared by the spool and the state store: one group-commit writer, a few readers.

Blocking SQLite calls never run on the event loop. Writes go through one
GroupCommitWriter; reads run on a few threads with their own connections,
which WAL mode lets run beside the writer.
"""

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from relayd.spool.writer import GroupCommitWriter

Query = Callable[[sqlite3.Connection], Any]


class Database:
    """One SQLite file whose every commit is durable (synchronous=FULL) before its future resolves."""

    def __init__(self, path: Path, schema: str, name: str, readers: int = 2):
        self.path = Path(path)
        self._schema = schema
        self._writer = GroupCommitWriter(self.connect, name=f"{name}-writer")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix=f"{name}-reader")
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL makes every commit fsync the WAL: the durability 250 promises.
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def open(self) -> None:
        """Create the directory and schema if needed and start the writer thread; raise OSError or sqlite3.Error."""
        # Messages contain password resets and 2FA codes, and the state store
        # contains recipient addresses, so only relayd's user may read them.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        connection = self.connect()
        try:
            # One transaction, so creating the schema costs one fsync, not one per statement.
            connection.executescript(f"BEGIN;\n{self._schema}\nCOMMIT;")
        finally:
            connection.close()
        self._writer.start()

    def close(self) -> None:
        self._writer.stop()
        self._readers.shutdown(wait=True)

    async def write(self, operation: Query) -> Any:
        """Run `operation` in a write transaction; return its result once the commit is durable."""
        return await self._writer.submit(operation)

    async def read(self, query: Query) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, query)

    def _run_read(self, query: Query) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self.connect()
            self._local.connection = connection
        return query(connection)
