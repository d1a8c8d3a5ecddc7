"""Messages just spooled and not yet attempted, kept in memory for their first attempt.

A message is attempted the moment it is accepted. Its first attempt would
read back from the spool what the listener wrote a millisecond earlier, in
two queries on reader threads, each a hand-off and a return through the
event loop. The listener's copy is kept instead, after the spool's commit, so
the spool stays the only record and a restart loses nothing.

An entry contains the message, its content and the recipients of each domain
as they were stored: queued, never attempted. A domain's recipients are
handed out once. The entry is dropped when an outcome of the message is
recorded or the message is deleted, so later attempts read the spool,
where the states live.
The oldest entries are dropped when the memory they take exceeds a bound,
so under a backlog memory does not grow with the queue.
"""

from collections import OrderedDict
from dataclasses import dataclass, field

from relayd.spool.records import NewMessage, RecipientState, SpooledMessage

# About 8,000 messages of 1 KB: seconds of accepted mail at a high rate. An
# entry dropped early costs only the two reads it would have saved.
DEFAULT_LIMIT = 16 * 1024 * 1024
# The memory of an entry besides its content: the records, the recipients
# and the dictionaries, 820 octets for one recipient measured with tracemalloc.
ENTRY_OVERHEAD = 1024


@dataclass
class _Entry:
    message: SpooledMessage
    content: bytes
    recipients: dict[str, list[RecipientState]] = field(default_factory=dict)


class FreshMessages:
    """A bounded, first-in first-out map from queue id to a message not yet attempted."""

    def __init__(self, limit: int = DEFAULT_LIMIT):
        self.limit = limit
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """The octets the entries take, estimated: their contents and ENTRY_OVERHEAD each."""
        return self._size

    def add(self, queue_id: str, message: NewMessage) -> None:
        """Keep `message`, which the spool has just committed under `queue_id`."""
        cost = len(message.content) + ENTRY_OVERHEAD
        if cost > self.limit:
            return
        spooled = SpooledMessage(
            queue_id,
            message.sender,
            message.received_at,
            len(message.content),
            message.client,
            message.smtputf8,
            message.body_8bit,
            message.message_class,
            message.message_id,
        )
        entry = _Entry(spooled, message.content)
        seen = set()
        for address, domain in message.recipients:
            # The spool keeps one row per address (INSERT OR IGNORE).
            if address in seen:
                continue
            seen.add(address)
            entry.recipients.setdefault(domain, []).append(RecipientState(address, domain, "queued", 0, None, "", ""))
        self.discard(queue_id)
        self._entries[queue_id] = entry
        self._size += cost
        while self._size > self.limit:
            _, dropped = self._entries.popitem(last=False)
            self._size -= len(dropped.content) + ENTRY_OVERHEAD

    def take(self, queue_id: str, domain: str) -> tuple[SpooledMessage, list[RecipientState]] | None:
        """Return the message and its recipients in `domain` once, or None when they are not held."""
        entry = self._entries.get(queue_id)
        if entry is None:
            return None
        recipients = entry.recipients.pop(domain, None)
        if recipients is None:
            return None
        return entry.message, recipients

    def content(self, queue_id: str) -> bytes | None:
        """Return the content of a held message; drop the entry once every domain was taken."""
        entry = self._entries.get(queue_id)
        if entry is None:
            return None
        if not entry.recipients:
            self.discard(queue_id)
        return entry.content

    def discard(self, queue_id: str) -> None:
        entry = self._entries.pop(queue_id, None)
        if entry is not None:
            self._size -= len(entry.content) + ENTRY_OVERHEAD
