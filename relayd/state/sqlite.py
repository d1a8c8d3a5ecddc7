"""The default state store: `state.db`, an SQLite file in WAL mode beside the spool.

It is a separate file from spool.db with its own writer thread, so a spool
commit never waits for a commit here. Every commit is durable
(synchronous=FULL), so a committed idempotency key, a suppression and an
outbox entry survive power loss.
WAL mode also lets `relayd suppression` open the file while the daemon runs.
"""

import sqlite3
from pathlib import Path
from typing import Any, Awaitable, Collection, Iterable

from relayd.spool.database import Database
from relayd.state.base import (
    COMMITTED,
    PENDING,
    RESERVED,
    IdempotencyKey,
    OutboxEntry,
    Reservation,
    StateError,
    Suppression,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS suppressions (
    address    TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    source     TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
);
-- Counts every change to the suppression list, whoever makes it (the
-- daemon, or `relayd suppression` in another process), so the daemon can
-- tell when its copy in memory is out of date.
CREATE TABLE IF NOT EXISTS suppression_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    counter INTEGER NOT NULL
);
INSERT OR IGNORE INTO suppression_changes VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS suppression_inserted AFTER INSERT ON suppressions
    BEGIN UPDATE suppression_changes SET counter = counter + 1; END;
CREATE TRIGGER IF NOT EXISTS suppression_updated AFTER UPDATE ON suppressions
    BEGIN UPDATE suppression_changes SET counter = counter + 1; END;
CREATE TRIGGER IF NOT EXISTS suppression_deleted AFTER DELETE ON suppressions
    BEGIN UPDATE suppression_changes SET counter = counter + 1; END;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    digest     TEXT PRIMARY KEY,
    queue_id   TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys(created_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    body         BLOB NOT NULL,
    created_at   REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    -- NULL while an earlier entry with the same ordering key is waiting.
    next_attempt REAL,
    last_error   TEXT NOT NULL DEFAULT '',
    UNIQUE (endpoint, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(endpoint, next_attempt);
CREATE INDEX IF NOT EXISTS outbox_chain ON outbox(endpoint, ordering_key, seq);
"""

STALE_CLAIM_AGE = 86400.0

_OUTBOX_COLUMNS = (
    "endpoint, event_id, event_type, ordering_key, body, created_at, seq, attempts, next_attempt, last_error"
)


class SqliteStateStore:
    """The StateStore protocol on one SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._database = Database(self.path, SCHEMA, name="state")

    def open(self) -> None:
        try:
            self._database.open()
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the state store at {self.path}: {exc}") from exc

    def close(self) -> None:
        self._database.close()

    async def _write(self, operation):
        return await _translated(self._database.write(operation))

    async def _read(self, query):
        return await _translated(self._database.read(query))

    # Suppression list.

    async def find_suppression(self, address: str, now: float) -> Suppression | None:
        def query(connection: sqlite3.Connection):
            row = connection.execute(
                "SELECT address, reason, source, created_at, expires_at FROM suppressions "
                "WHERE address = ? AND (expires_at IS NULL OR expires_at > ?)",
                (address, now),
            ).fetchone()
            return None if row is None else Suppression(*row)

        return await self._read(query)

    async def add_suppressions(self, entries: Iterable[Suppression]) -> None:
        rows = [(e.address, e.reason, e.source, e.created_at, e.expires_at) for e in entries]

        def insert(connection: sqlite3.Connection) -> None:
            connection.executemany("INSERT OR REPLACE INTO suppressions VALUES (?, ?, ?, ?, ?)", rows)

        await self._write(insert)

    async def remove_suppression(self, address: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            return connection.execute("DELETE FROM suppressions WHERE address = ?", (address,)).rowcount > 0

        return await self._write(delete)

    async def list_suppressions(self, now: float) -> list[Suppression]:
        def query(connection: sqlite3.Connection):
            rows = connection.execute(
                "SELECT address, reason, source, created_at, expires_at FROM suppressions "
                "WHERE expires_at IS NULL OR expires_at > ? ORDER BY address",
                (now,),
            ).fetchall()
            return [Suppression(*row) for row in rows]

        return await self._read(query)

    async def suppression_changes(self) -> int:
        def query(connection: sqlite3.Connection) -> int:
            return connection.execute("SELECT counter FROM suppression_changes").fetchone()[0]

        return await self._read(query)

    async def suppressed_addresses(self, now: float) -> tuple[int, dict[str, float | None]]:
        def query(connection: sqlite3.Connection):
            # One read transaction, so the counter belongs to the addresses read.
            connection.execute("BEGIN")
            try:
                (counter,) = connection.execute("SELECT counter FROM suppression_changes").fetchone()
                rows = connection.execute(
                    "SELECT address, expires_at FROM suppressions WHERE expires_at IS NULL OR expires_at > ?", (now,)
                ).fetchall()
            finally:
                connection.execute("COMMIT")
            return counter, dict(rows)

        return await self._read(query)

    # Idempotency keys.

    async def reserve_key(self, key: IdempotencyKey, queue_id: str, now: float, window: float) -> Reservation:
        digest = key.digest()

        # The writer runs one operation at a time, so the check and the
        # insert below are atomic: two submissions with one key cannot both
        # reserve it.
        def reserve(connection: sqlite3.Connection) -> Reservation:
            row = connection.execute(
                "SELECT queue_id, status, created_at FROM idempotency_keys WHERE digest = ?", (digest,)
            ).fetchone()
            if row is not None and row[2] > now - window:
                return Reservation(COMMITTED if row[1] == COMMITTED else PENDING, row[0])
            connection.execute(
                "INSERT OR REPLACE INTO idempotency_keys VALUES (?, ?, ?, ?)", (digest, queue_id, PENDING, now)
            )
            return Reservation(RESERVED, queue_id)

        return await self._write(reserve)

    async def commit_key(self, key: IdempotencyKey, queue_id: str) -> None:
        def commit(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE idempotency_keys SET status = ? WHERE digest = ? AND queue_id = ?",
                (COMMITTED, key.digest(), queue_id),
            )

        await self._write(commit)

    async def release_key(self, key: IdempotencyKey, queue_id: str) -> None:
        def release(connection: sqlite3.Connection) -> None:
            connection.execute(
                "DELETE FROM idempotency_keys WHERE digest = ? AND queue_id = ? AND status = ?",
                (key.digest(), queue_id, PENDING),
            )

        await self._write(release)

    async def pending_claims(self) -> list[str]:
        def query(connection: sqlite3.Connection):
            rows = connection.execute("SELECT queue_id FROM idempotency_keys WHERE status = ?", (PENDING,))
            return [row[0] for row in rows]

        return await self._read(query)

    async def settle_claims(self, committed: Collection[str], released: Collection[str]) -> None:
        def settle(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "UPDATE idempotency_keys SET status = ? WHERE queue_id = ? AND status = ?",
                [(COMMITTED, queue_id, PENDING) for queue_id in committed],
            )
            connection.executemany(
                "DELETE FROM idempotency_keys WHERE queue_id = ? AND status = ?",
                [(queue_id, PENDING) for queue_id in released],
            )

        await self._write(settle)

    # Webhook outbox.

    async def enqueue_events(self, entries: list[OutboxEntry]) -> int:
        def insert(connection: sqlite3.Connection) -> int:
            added = 0
            for entry in entries:
                # Only the first waiting entry of an ordering key is due; the
                # others get their time when the one before them is done.
                waiting = connection.execute(
                    "SELECT 1 FROM outbox WHERE endpoint = ? AND ordering_key = ? LIMIT 1",
                    (entry.endpoint, entry.ordering_key),
                ).fetchone()
                cursor = connection.execute(
                    "INSERT OR IGNORE INTO outbox (endpoint, event_id, event_type, ordering_key, body, created_at, "
                    "next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.endpoint,
                        entry.event_id,
                        entry.event_type,
                        entry.ordering_key,
                        entry.body,
                        entry.created_at,
                        None if waiting else entry.created_at,
                    ),
                )
                added += cursor.rowcount
            return added

        return await self._write(insert)

    async def due_events(
        self, endpoint: str, now: float, limit: int, exclude: Collection[int]
    ) -> tuple[list[OutboxEntry], float | None]:
        excluded = ",".join(str(int(seq)) for seq in exclude)
        not_excluded = f"AND seq NOT IN ({excluded})" if excluded else ""

        def query(connection: sqlite3.Connection):
            rows = connection.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE endpoint = ? AND next_attempt <= ? {not_excluded} "
                "ORDER BY next_attempt, seq LIMIT ?",
                (endpoint, now, limit),
            ).fetchall()
            later = connection.execute(
                f"SELECT MIN(next_attempt) FROM outbox WHERE endpoint = ? AND next_attempt > ? {not_excluded}",
                (endpoint, now),
            ).fetchone()[0]
            if len(rows) == limit and limit > 0:
                # More may be due than were returned: the caller asks again at once.
                later = now
            return [OutboxEntry(*row) for row in rows], later

        return await self._read(query)

    async def event_done(self, entry: OutboxEntry, now: float) -> None:
        def done(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM outbox WHERE seq = ?", (entry.seq,))
            connection.execute(
                "UPDATE outbox SET next_attempt = ? WHERE seq = (SELECT MIN(seq) FROM outbox "
                "WHERE endpoint = ? AND ordering_key = ?) AND next_attempt IS NULL",
                (now, entry.endpoint, entry.ordering_key),
            )

        await self._write(done)

    async def event_failed(self, entry: OutboxEntry, next_attempt: float, error: str) -> None:
        def failed(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ? WHERE seq = ?",
                (entry.attempts + 1, next_attempt, error, entry.seq),
            )

        await self._write(failed)

    async def drop_endpoints_except(self, endpoints: Collection[str]) -> dict[str, int]:
        keep = set(endpoints)

        def drop(connection: sqlite3.Connection) -> dict[str, int]:
            counts = dict(connection.execute("SELECT endpoint, COUNT(*) FROM outbox GROUP BY endpoint").fetchall())
            dropped = {endpoint: count for endpoint, count in counts.items() if endpoint not in keep}
            connection.executemany("DELETE FROM outbox WHERE endpoint = ?", [(e,) for e in dropped])
            return dropped

        return await self._write(drop)

    async def count_events(self) -> int:
        def count(connection: sqlite3.Connection) -> int:
            return connection.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

        return await self._read(count)

    # Housekeeping.

    async def purge(self, now: float, idempotency_window: float) -> None:
        def purge(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM suppressions WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
            # A pending claim older than a day belongs to a submission that
            # died before it was settled; younger ones may still be storing.
            connection.execute(
                "DELETE FROM idempotency_keys WHERE created_at <= ? AND (status = ? OR created_at <= ?)",
                (now - idempotency_window, COMMITTED, now - STALE_CLAIM_AGE),
            )

        await self._write(purge)


async def _translated(pending: Awaitable[Any]) -> Any:
    """Await `pending`, raising StateError in place of sqlite3.Error."""
    try:
        return await pending
    except sqlite3.Error as exc:
        raise StateError(str(exc)) from exc
