"""The values the spool stores and returns."""

from dataclasses import dataclass

# A recipient is pending until it reaches one of the final states.
PENDING_STATES = ("queued", "deferred")
FINAL_STATES = ("delivered", "bounced", "expired")


@dataclass(frozen=True)
class NewMessage:
    """A message accepted by the listener, ready to be spooled.

    `recipients` contains (address, domain) pairs: the address as the client gave
    it and the recipient's domain in IDNA ASCII form, the delivery grouping key.
    """

    sender: str
    recipients: tuple[tuple[str, str], ...]
    content: bytes
    received_at: float
    client: str
    smtputf8: bool = False
    body_8bit: bool = False
    message_class: str = "transactional"
    # The Message-ID header field's value, for events; "" when it has none.
    message_id: str = ""


@dataclass(frozen=True)
class SpooledMessage:
    """A spooled message's envelope and metadata, without its content."""

    queue_id: str
    sender: str
    received_at: float
    size: int
    client: str
    smtputf8: bool
    body_8bit: bool
    message_class: str
    message_id: str = ""


@dataclass(frozen=True)
class RecipientState:
    """One recipient as the spool records it."""

    address: str
    domain: str
    state: str
    attempts: int
    next_attempt: float | None
    last_reply: str
    last_host: str


@dataclass(frozen=True)
class RecipientUpdate:
    """The outcome of an attempt for one recipient, to be recorded before it is acted on."""

    address: str
    state: str
    attempts: int
    next_attempt: float | None
    last_reply: str
    last_host: str


@dataclass(frozen=True)
class PendingJob:
    """One (message, domain) with pending recipients, as recovery schedules it."""

    queue_id: str
    domain: str
    due: float
    message_class: str
    received_at: float
    attempted: bool
