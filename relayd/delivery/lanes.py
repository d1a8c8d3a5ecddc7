"""Delivery slots with a share reserved for each message class.

A pool of slots (all delivery slots, or one domain's) keeps a number of
slots for each class and lets every class use the rest. A backlog of one
class can fill its own reserve and the shared slots, never another class's
reserve: a password reset always finds a slot, however many reminders wait.
"""

import math
from typing import Mapping

RESERVED = "reserved"
SHARED = "shared"


def reserved_slots(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Return the slots reserved per class: `share` of `total`, at least one for a non-zero share.

    Rounding up to one keeps a reservation meaningful for small pools (a
    domain limit of 5), and the shares are scaled down if that would leave
    no shared slot at all.
    """
    reserved = {name: (max(1, math.floor(total * share)) if share > 0 else 0) for name, share in shares.items()}
    while sum(reserved.values()) >= total and any(reserved.values()):
        largest = max(reserved, key=lambda name: reserved[name])
        reserved[largest] -= 1
    return reserved


class SlotPool:
    """Slot accounting for one pool; a taken slot is either from its class's reserve or shared."""

    def __init__(self, total: int, shares: Mapping[str, float]):
        self.total = total
        self.reserved = reserved_slots(total, shares)
        self.shared = total - sum(self.reserved.values())
        self._reserved_used: dict[str, int] = {}
        self._shared_used = 0

    @property
    def in_use(self) -> int:
        return self._shared_used + sum(self._reserved_used.values())

    def can_take(self, message_class: str) -> bool:
        if self._reserved_used.get(message_class, 0) < self.reserved.get(message_class, 0):
            return True
        return self._shared_used < self.shared

    def take(self, message_class: str) -> str:
        """Take a slot for `message_class`, its own reserve first; return which kind it was."""
        if self._reserved_used.get(message_class, 0) < self.reserved.get(message_class, 0):
            self._reserved_used[message_class] = self._reserved_used.get(message_class, 0) + 1
            return RESERVED
        if self._shared_used >= self.shared:
            raise RuntimeError(f"no slot free for {message_class}")
        self._shared_used += 1
        return SHARED

    def give(self, message_class: str, kind: str) -> None:
        if kind == RESERVED:
            self._reserved_used[message_class] -= 1
        else:
            self._shared_used -= 1
