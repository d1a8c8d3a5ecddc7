"""The spool: an SQLite database in WAL mode under `server.spool_dir`.

Content and envelope of a message are written in one transaction. The
listener sends 250 only after that transaction is committed with an fsync
(synchronous=FULL), so an accepted message survives kill -9 and power loss.
Content lives in its own table and is read only for an attempt: memory does
not grow with the queue.
"""

import secrets
import sqlite3
import time
from pathlib import Path

from relayd.spool.admin import QueueAdmin
from relayd.spool.database import Database
from relayd.spool.fresh import FreshMessages
from relayd.spool.records import (
    PENDING_STATES,
    NewMessage,
    PendingJob,
    RecipientState,
    RecipientUpdate,
    SpooledMessage,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    queue_id      TEXT PRIMARY KEY,
    sender        TEXT NOT NULL,
    received_at   REAL NOT NULL,
    size          INTEGER NOT NULL,
    client        TEXT NOT NULL,
    smtputf8      INTEGER NOT NULL,
    body_8bit     INTEGER NOT NULL,
    message_class TEXT NOT NULL,
    message_id    TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS contents (
    queue_id TEXT PRIMARY KEY REFERENCES messages(queue_id) ON DELETE CASCADE,
    content  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS recipients (
    queue_id     TEXT NOT NULL REFERENCES messages(queue_id) ON DELETE CASCADE,
    address      TEXT NOT NULL,
    domain       TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,
    last_reply   TEXT NOT NULL DEFAULT '',
    last_host    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (queue_id, address)
);
CREATE INDEX IF NOT EXISTS recipients_by_domain ON recipients(queue_id, domain);
"""

_PENDING = "('" + "','".join(PENDING_STATES) + "')"

# SQLite result codes (sqlite3.h) that mean the disk or the database is full.
_SQLITE_FULL = 13


class SpoolError(Exception):
    """A spool operation failed; nothing of the failed operation was stored."""


class SpoolFull(SpoolError):
    """The disk holding the spool is full."""


def new_queue_id() -> str:
    """Return a new queue id: microseconds since the epoch, then random bits.

    Ids sort by creation time to the microsecond, and the random tail keeps
    two acceptor processes from choosing the same id.
    """
    return f"{time.time_ns() // 1000:013X}{secrets.token_hex(3).upper()}"


class Spool(QueueAdmin):
    """Durable store of messages and recipient states.

    Writes go through one group-commit thread; reads use a small pool of
    threads with their own connections, which WAL mode lets run beside the
    writer.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / "spool.db"
        self._database = Database(self.path, SCHEMA, name="spool")
        self.fresh = FreshMessages()

    def open(self) -> None:
        """Create the directory and schema if needed and start the writer thread."""
        try:
            self._database.open()
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the spool at {self.path}: {exc}") from exc

    def close(self) -> None:
        self._database.close()

    async def _write(self, operation):
        try:
            return await self._database.write(operation)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
                raise SpoolFull(str(exc)) from exc
            raise SpoolError(str(exc)) from exc

    async def _read(self, query):
        return await self._database.read(query)

    async def add(self, queue_id: str, message: NewMessage) -> str:
        """Store `message` durably under `queue_id`; raise SpoolFull or SpoolError."""

        def insert(connection: sqlite3.Connection) -> str:
            connection.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    queue_id,
                    message.sender,
                    message.received_at,
                    len(message.content),
                    message.client,
                    int(message.smtputf8),
                    int(message.body_8bit),
                    message.message_class,
                    message.message_id,
                ),
            )
            connection.execute("INSERT INTO contents VALUES (?, ?)", (queue_id, message.content))
            connection.executemany(
                "INSERT OR IGNORE INTO recipients (queue_id, address, domain, state) VALUES (?, ?, ?, 'queued')",
                [(queue_id, address, domain) for address, domain in message.recipients],
            )
            return queue_id

        await self._write(insert)
        self.fresh.add(queue_id, message)
        return queue_id

    async def pending(self) -> list[PendingJob]:
        """Return one PendingJob for every (message, domain) with pending recipients, earliest due first."""

        def query(connection: sqlite3.Connection):
            rows = connection.execute(
                "SELECT r.queue_id, r.domain, MIN(COALESCE(r.next_attempt, 0)), m.message_class, m.received_at, "
                "MAX(r.attempts) FROM recipients r JOIN messages m ON m.queue_id = r.queue_id "
                f"WHERE r.state IN {_PENDING} GROUP BY r.queue_id, r.domain ORDER BY 3"
            ).fetchall()
            return [PendingJob(q, d, due, c, received, attempts > 0) for q, d, due, c, received, attempts in rows]

        return await self._read(query)

    async def load(self, queue_id: str, domain: str) -> tuple[SpooledMessage, list[RecipientState]] | None:
        """Return a message and its pending recipients in `domain`, or None if it left the spool."""
        cached = self.fresh.take(queue_id, domain)
        if cached is not None:
            return cached

        def query(connection: sqlite3.Connection):
            row = connection.execute(
                "SELECT queue_id, sender, received_at, size, client, smtputf8, body_8bit, message_class, message_id "
                "FROM messages WHERE queue_id = ?",
                (queue_id,),
            ).fetchone()
            if row is None:
                return None
            recipients = connection.execute(
                "SELECT address, domain, state, attempts, next_attempt, last_reply, last_host FROM recipients "
                f"WHERE queue_id = ? AND domain = ? AND state IN {_PENDING} ORDER BY rowid",
                (queue_id, domain),
            ).fetchall()
            message = SpooledMessage(*row[:5], bool(row[5]), bool(row[6]), row[7], row[8])
            return message, [RecipientState(*r) for r in recipients]

        return await self._read(query)

    async def content(self, queue_id: str) -> bytes | None:
        cached = self.fresh.content(queue_id)
        if cached is not None:
            return cached

        def query(connection: sqlite3.Connection):
            row = connection.execute("SELECT content FROM contents WHERE queue_id = ?", (queue_id,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(query)

    async def record(self, queue_id: str, updates: list[RecipientUpdate]) -> bool:
        """Store the outcome of an attempt; return True when the message has left the spool.

        A message leaves the spool in the same transaction in which its last
        pending recipient reaches a final state.
        """

        def apply(connection: sqlite3.Connection) -> bool:
            connection.executemany(
                "UPDATE recipients SET state = ?, attempts = ?, next_attempt = ?, last_reply = ?, last_host = ? "
                "WHERE queue_id = ? AND address = ?",
                [(u.state, u.attempts, u.next_attempt, u.last_reply, u.last_host, queue_id, u.address) for u in updates],
            )
            (remaining,) = connection.execute(
                f"SELECT COUNT(*) FROM recipients WHERE queue_id = ? AND state IN {_PENDING}", (queue_id,)
            ).fetchone()
            if remaining:
                return False
            connection.execute("DELETE FROM messages WHERE queue_id = ?", (queue_id,))
            return True

        # The recorded recipients' states now differ from the copy in memory.
        self.fresh.discard(queue_id)
        return await self._write(apply)

    async def unattempted(self) -> list[tuple[str, str, str, str, float]]:
        """Return (queue id, header message id, recipient, domain, received at) for every recipient never attempted."""

        def query(connection: sqlite3.Connection):
            return connection.execute(
                "SELECT m.queue_id, m.message_id, r.address, r.domain, m.received_at FROM recipients r "
                "JOIN messages m ON m.queue_id = r.queue_id WHERE r.state = 'queued' AND r.attempts = 0 "
                "ORDER BY m.queue_id, r.rowid"
            ).fetchall()

        return await self._read(query)

    async def contains(self, queue_ids: list[str]) -> set[str]:
        """Return the ids among `queue_ids` of messages still in the spool."""

        def query(connection: sqlite3.Connection):
            found = set()
            for queue_id in queue_ids:
                if connection.execute("SELECT 1 FROM messages WHERE queue_id = ?", (queue_id,)).fetchone():
                    found.add(queue_id)
            return found

        return await self._read(query)

    async def count(self) -> int:
        def query(connection: sqlite3.Connection):
            return connection.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

        return await self._read(query)
