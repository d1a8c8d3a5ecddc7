"""The state store interface: suppression list, idempotency keys and the webhook outbox.

Callers depend on these protocols only. The default implementation is an
SQLite file beside the spool (relayd.state.sqlite); a store shared by
several nodes can implement the same protocols without touching callers.
"""

import hashlib
from dataclasses import dataclass
from typing import Collection, Iterable, Protocol


class StateError(Exception):
    """A state store operation failed; nothing of the failed operation was stored."""


@dataclass(frozen=True)
class Suppression:
    """One address on the suppression list, in the form normalize_address() returns."""

    address: str
    reason: str
    # "bounce" when a hard bounce added it, "manual" for `relayd suppression add` and imports.
    source: str
    created_at: float
    # None: the entry stays until it is removed.
    expires_at: float | None = None


@dataclass(frozen=True)
class IdempotencyKey:
    """A submission's key, scoped to the client that sent it.

    `kind` is "idempotency-key" for the Idempotency-Key header field and
    "message-id" when the Message-ID field serves as the key.
    """

    client: str
    kind: str
    value: str

    def digest(self) -> str:
        """Return the stored form: a SHA-256 hex digest, so keys of any length take the same space."""
        return hashlib.sha256(f"{self.client}\0{self.kind}\0{self.value}".encode("utf-8", "surrogatepass")).hexdigest()


# The outcomes of IdempotencyStore.reserve_key().
RESERVED = "reserved"      # the key was free and now belongs to the caller's queue id
PENDING = "pending"        # another submission reserved the key and has not stored its message yet
COMMITTED = "committed"    # a message with this key was accepted within the window


@dataclass(frozen=True)
class Reservation:
    status: str
    queue_id: str


@dataclass(frozen=True)
class OutboxEntry:
    """One event waiting to be sent to one webhook endpoint.

    Entries with the same `ordering_key` (the queue id) reach an endpoint in
    `seq` order: an entry is due only once every earlier one with its key was
    sent or given up.
    """

    endpoint: str
    event_id: str
    event_type: str
    ordering_key: str
    body: bytes
    created_at: float
    seq: int = 0
    attempts: int = 0
    next_attempt: float | None = None
    last_error: str = ""


class SuppressionStore(Protocol):
    async def find_suppression(self, address: str, now: float) -> Suppression | None:
        """Return the entry for `address` unless it is absent or expired at `now`."""

    async def add_suppressions(self, entries: Iterable[Suppression]) -> None:
        """Insert the entries in one transaction, replacing any entry for the same address."""

    async def remove_suppression(self, address: str) -> bool:
        """Remove the entry for `address`; return False when there was none."""

    async def list_suppressions(self, now: float) -> list[Suppression]:
        """Return every entry not expired at `now`, ordered by address."""

    async def suppression_changes(self) -> int:
        """Return a counter that grows with every change to the list, from any process."""

    async def suppressed_addresses(self, now: float) -> tuple[int, dict[str, float | None]]:
        """Return the change counter and the expiry time (None: never) of every address not expired at `now`."""


class IdempotencyStore(Protocol):
    async def reserve_key(self, key: IdempotencyKey, queue_id: str, now: float, window: float) -> Reservation:
        """Atomically claim `key` for `queue_id` unless a claim younger than `window` seconds exists.

        Returns RESERVED with `queue_id`, or the existing claim's status
        (PENDING or COMMITTED) and queue id.
        """

    async def commit_key(self, key: IdempotencyKey, queue_id: str) -> None:
        """Mark the claim of `queue_id` as committed: its message is spooled."""

    async def release_key(self, key: IdempotencyKey, queue_id: str) -> None:
        """Drop the claim of `queue_id`, because its message could not be stored."""

    async def pending_claims(self) -> list[str]:
        """Return the queue ids of claims neither committed nor released."""

    async def settle_claims(self, committed: Collection[str], released: Collection[str]) -> None:
        """Commit the pending claims of the `committed` queue ids and drop those of `released`."""


class OutboxStore(Protocol):
    async def enqueue_events(self, entries: list[OutboxEntry]) -> int:
        """Store the entries durably, ignoring any (endpoint, event id) already stored; return how many were new."""

    async def due_events(
        self, endpoint: str, now: float, limit: int, exclude: Collection[int]
    ) -> tuple[list[OutboxEntry], float | None]:
        """Return up to `limit` entries of `endpoint` due at `now`, and when the next other one is due.

        Entries whose seq is in `exclude` (being sent) are left out of both.
        """

    async def event_done(self, entry: OutboxEntry, now: float) -> None:
        """Remove a sent or abandoned entry and make the next entry with its ordering key due at `now`."""

    async def event_failed(self, entry: OutboxEntry, next_attempt: float, error: str) -> None:
        """Record a failed send and when to try again."""

    async def drop_endpoints_except(self, endpoints: Collection[str]) -> dict[str, int]:
        """Remove the entries of every endpoint not in `endpoints`; return the count per endpoint removed."""

    async def count_events(self) -> int:
        """Return how many entries wait in the outbox, for the metrics."""


class StateStore(SuppressionStore, IdempotencyStore, OutboxStore, Protocol):
    def open(self) -> None:
        """Create or open the store; raise StateError when it cannot."""

    def close(self) -> None: ...

    async def purge(self, now: float, idempotency_window: float) -> None:
        """Delete expired suppressions and idempotency claims older than the window."""
