"""State kept beside the spool: the suppression list, idempotency keys and the webhook outbox."""

from pathlib import Path

from relayd.state.base import (
    COMMITTED,
    PENDING,
    RESERVED,
    IdempotencyKey,
    IdempotencyStore,
    OutboxEntry,
    OutboxStore,
    Reservation,
    StateError,
    StateStore,
    Suppression,
    SuppressionStore,
)
from relayd.state.sqlite import SqliteStateStore

__all__ = [
    "COMMITTED",
    "PENDING",
    "RESERVED",
    "IdempotencyKey",
    "IdempotencyStore",
    "OutboxEntry",
    "OutboxStore",
    "Reservation",
    "StateError",
    "StateStore",
    "Suppression",
    "SuppressionStore",
    "SqliteStateStore",
    "state_path",
]


def state_path(spool_dir: Path) -> Path:
    """Return where the default store keeps its file: `state.db` beside the spool's `spool.db`."""
    return Path(spool_dir) / "state.db"
