"""The spool: durable storage of accepted messages and each recipient's state."""

from relayd.spool.records import (
    FINAL_STATES,
    PENDING_STATES,
    NewMessage,
    RecipientState,
    RecipientUpdate,
    SpooledMessage,
)
from relayd.spool.store import Spool, SpoolError, SpoolFull, new_queue_id

__all__ = [
    "FINAL_STATES",
    "PENDING_STATES",
    "NewMessage",
    "RecipientState",
    "RecipientUpdate",
    "Spool",
    "SpoolError",
    "SpoolFull",
    "SpooledMessage",
    "new_queue_id",
]
