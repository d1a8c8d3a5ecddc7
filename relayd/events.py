"""Events: one record per recipient state change, put into the durable webhook outbox.

An event's id is derived from what it describes (queue id, recipient, type
and attempt), so storing the same state change twice, as a repeated attempt
after a crash does, keeps one event, and a receiver that dedupes on
`webhook-id` processes it once. Only `duplicate` events get a random id,
because each resubmission is a new fact. docs/events.md documents the JSON.
"""

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import structlog

from relayd.config.model import Webhook
from relayd.reply import Reply
from relayd.state import OutboxEntry, OutboxStore, StateError

log = structlog.get_logger("relayd.events")


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    queue_id: str
    # The Message-ID header field of the message, "" when it has none.
    message_id: str
    recipient: str
    domain: str
    timestamp: float
    # 0 for events that no delivery attempt caused: queued, suppressed, duplicate.
    attempt: int = 0
    # The MX host or route the attempt reached, "" when it reached none.
    host: str = ""
    reply: Reply | None = None
    next_attempt: float | None = None
    # Why a suppressed recipient is on the suppression list.
    reason: str = ""

    def to_json(self) -> bytes:
        """Return the webhook request body: compact JSON in UTF-8, the bytes the signature covers."""
        data: dict = {
            "queue_id": self.queue_id,
            "message_id": self.message_id,
            "recipient": self.recipient,
            "domain": self.domain,
            "attempt": self.attempt,
            "host": self.host,
            "reply": _reply_json(self.reply),
        }
        if self.type == "deferred":
            data["next_attempt"] = rfc3339(self.next_attempt) if self.next_attempt is not None else None
        if self.type == "suppressed":
            data["reason"] = self.reason
        document = {"id": self.id, "type": self.type, "timestamp": rfc3339(self.timestamp), "data": data}
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_id(queue_id: str, recipient: str, event_type: str, attempt: int) -> str:
    """Return the id of the event for one state change; the same change always gets the same id."""
    text = f"{queue_id}\0{recipient}\0{event_type}\0{attempt}"
    return "evt_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def state_change(
    event_type: str,
    *,
    queue_id: str,
    message_id: str,
    recipient: str,
    domain: str,
    timestamp: float,
    attempt: int = 0,
    host: str = "",
    reply: Reply | None = None,
    next_attempt: float | None = None,
    reason: str = "",
) -> Event:
    """Build the event for a recipient reaching `event_type` (queued, delivered, deferred, ...)."""
    return Event(
        id=event_id(queue_id, recipient, event_type, attempt),
        type=event_type,
        queue_id=queue_id,
        message_id=message_id,
        recipient=recipient,
        domain=domain,
        timestamp=timestamp,
        attempt=attempt,
        host=host,
        reply=reply,
        next_attempt=next_attempt,
        reason=reason,
    )


def duplicate(*, queue_id: str, message_id: str, recipient: str, domain: str, timestamp: float) -> Event:
    """Build the event for a resubmission that got the queue id of the original message back."""
    return Event(
        id="evt_" + secrets.token_hex(16),
        type="duplicate",
        queue_id=queue_id,
        message_id=message_id,
        recipient=recipient,
        domain=domain,
        timestamp=timestamp,
    )


class EventRecorder:
    """Stores events in the outbox, one entry per webhook subscribed to the event's type.

    `notify` is called with each endpoint URL that got new entries, so its
    sender wakes up at once instead of at its next poll.
    """

    def __init__(self, store: OutboxStore, webhooks: tuple[Webhook, ...], notify: Callable[[str], None] | None = None):
        self.store = store
        self.webhooks = webhooks
        self.notify = notify or (lambda url: None)

    async def record(self, events: list[Event]) -> None:
        """Store `events`; a StateError is logged, not raised, so a failing store cannot hold up mail."""
        entries = [
            OutboxEntry(
                endpoint=hook.url,
                event_id=event.id,
                event_type=event.type,
                ordering_key=event.queue_id,
                body=event.to_json(),
                created_at=event.timestamp,
            )
            for event in events
            for hook in self.webhooks
            if event.type in hook.events
        ]
        if not entries:
            return
        try:
            await self.store.enqueue_events(entries)
        except StateError as exc:
            # XXX: the events are lost; storing them is retried nowhere,
            # because retrying would hold up the attempt that caused them.
            log.error(
                "events_not_stored",
                error=str(exc),
                queue_id=events[0].queue_id,
                event_ids=[e.id for e in events],
            )
            return
        for url in {entry.endpoint for entry in entries}:
            self.notify(url)


def _reply_json(reply: Reply | None) -> dict | None:
    if reply is None:
        return None
    return {"code": reply.code, "enhanced_status": reply.enhanced, "text": reply.text, "command": reply.command}


def rfc3339(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
