"""Operator queries on the spool: the queue summary, listing, inspection, retry and delete.

QueueAdmin is mixed into Spool, so these run on the same reader threads and
the same group-commit writer as delivery. The delivery path never calls
them; the HTTP control API and the metrics endpoint do.
"""

import sqlite3
from dataclasses import dataclass

from relayd.spool.records import PENDING_STATES, RecipientState, SpooledMessage

_PENDING = "('" + "','".join(PENDING_STATES) + "')"
_MESSAGE_COLUMNS = "queue_id, sender, received_at, size, client, smtputf8, body_8bit, message_class, message_id"
_RECIPIENT_COLUMNS = "address, domain, state, attempts, next_attempt, last_reply, last_host"

# SQLite before 3.32 allows at most 999 parameters in one statement.
_IDS_PER_QUERY = 500


@dataclass(frozen=True)
class QueuedMessage:
    """A spooled message with its recipients, as the queue commands show it."""

    message: SpooledMessage
    recipients: tuple[RecipientState, ...]


@dataclass(frozen=True)
class QueueSummary:
    """Counts for the queue gauges and `relayd queue stats`.

    `pending` maps (state, class) to a number of pending recipients;
    `messages` maps a class to (messages, oldest acceptance time).
    """

    pending: dict[tuple[str, str], int]
    messages: dict[str, tuple[int, float]]


def _message(row) -> SpooledMessage:
    return SpooledMessage(*row[:5], bool(row[5]), bool(row[6]), row[7], row[8])


def _recipients(connection: sqlite3.Connection, queue_ids: list[str], pending_only: bool) -> dict[str, list]:
    found: dict[str, list] = {queue_id: [] for queue_id in queue_ids}
    where = f" AND state IN {_PENDING}" if pending_only else ""
    for start in range(0, len(queue_ids), _IDS_PER_QUERY):
        chunk = queue_ids[start : start + _IDS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        rows = connection.execute(
            f"SELECT queue_id, {_RECIPIENT_COLUMNS} FROM recipients WHERE queue_id IN ({marks}){where} ORDER BY rowid",
            chunk,
        )
        for row in rows:
            found[row[0]].append(RecipientState(*row[1:]))
    return found


def _queued_message(connection: sqlite3.Connection, queue_id: str) -> QueuedMessage | None:
    row = connection.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
    if row is None:
        return None
    recipients = _recipients(connection, [queue_id], pending_only=False)[queue_id]
    return QueuedMessage(_message(row), tuple(recipients))


class QueueAdmin:
    """Spool methods for operators; needs the host class's `_read`, `_write` and `fresh`."""

    async def summary(self) -> QueueSummary:
        """Count pending recipients by state and class, and messages by class with the oldest one's age."""

        def query(connection: sqlite3.Connection) -> QueueSummary:
            pending = connection.execute(
                "SELECT r.state, m.message_class, COUNT(*) FROM recipients r JOIN messages m USING (queue_id) "
                f"WHERE r.state IN {_PENDING} GROUP BY 1, 2"
            ).fetchall()
            messages = connection.execute(
                "SELECT message_class, COUNT(*), MIN(received_at) FROM messages GROUP BY 1"
            ).fetchall()
            return QueueSummary(
                pending={(state, message_class): count for state, message_class, count in pending},
                messages={message_class: (count, oldest) for message_class, count, oldest in messages},
            )

        return await self._read(query)

    async def list_messages(
        self, *, state: str | None = None, domain: str | None = None, limit: int = 1000
    ) -> tuple[list[QueuedMessage], int]:
        """Return the oldest `limit` messages with a pending recipient matching the filters, and how many match in all.

        Each message comes with its pending recipients only.
        """
        conditions = [f"r.state IN {_PENDING}"]
        parameters: list = []
        if state is not None:
            conditions.append("r.state = ?")
            parameters.append(state)
        if domain is not None:
            conditions.append("r.domain = ?")
            parameters.append(domain)
        match = f"EXISTS (SELECT 1 FROM recipients r WHERE r.queue_id = m.queue_id AND {' AND '.join(conditions)})"

        def query(connection: sqlite3.Connection):
            (total,) = connection.execute(f"SELECT COUNT(*) FROM messages m WHERE {match}", parameters).fetchone()
            rows = connection.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE {match} ORDER BY received_at, queue_id LIMIT ?",
                [*parameters, limit],
            ).fetchall()
            messages = [_message(row) for row in rows]
            recipients = _recipients(connection, [m.queue_id for m in messages], pending_only=True)
            return [QueuedMessage(m, tuple(recipients[m.queue_id])) for m in messages], total

        return await self._read(query)

    async def message(self, queue_id: str) -> QueuedMessage | None:
        """Return a message with all its recipients, final ones included, or None if it is not in the spool."""

        return await self._read(lambda connection: _queued_message(connection, queue_id))

    async def bring_forward(self, queue_id: str | None, now: float) -> list[tuple[str, str]]:
        """Make deferred recipients due at `now`, of one message or of all; return the (queue id, domain) pairs changed.

        Recipients already due keep their time, and the attempt count is
        unchanged, so the retry curve continues where it was.
        """
        scope = "" if queue_id is None else " AND queue_id = ?"
        parameters = [now] if queue_id is None else [now, queue_id]

        def apply(connection: sqlite3.Connection) -> list[tuple[str, str]]:
            pairs = connection.execute(
                f"SELECT DISTINCT queue_id, domain FROM recipients WHERE state = 'deferred' AND next_attempt > ?{scope}",
                parameters,
            ).fetchall()
            connection.execute(
                f"UPDATE recipients SET next_attempt = ? WHERE state = 'deferred' AND next_attempt > ?{scope}",
                [now, *parameters],
            )
            return [tuple(pair) for pair in pairs]

        return await self._write(apply)

    async def delete(self, queue_id: str) -> QueuedMessage | None:
        """Remove a message and all its recipients; return what was removed, or None if it was not in the spool."""
        self.fresh.discard(queue_id)

        def apply(connection: sqlite3.Connection):
            queued = _queued_message(connection, queue_id)
            if queued is not None:
                # Contents and recipients go with it (ON DELETE CASCADE).
                connection.execute("DELETE FROM messages WHERE queue_id = ?", (queue_id,))
            return queued

        return await self._write(apply)
