"""Destination health: a domain whose hosts keep failing to respond is paused.

Retrying a dead destination every time a message for it comes due wastes
connection slots and hammers a server that may be recovering; after
`pause_after` attempts in a row that reach no host, the domain's attempts
wait `pause` seconds. One attempt that reaches a host clears the count.
"""

import time
from typing import Callable

import structlog

log = structlog.get_logger("relayd.delivery")


class DestinationHealth:
    def __init__(self, pause_after: int, pause: float, clock: Callable[[], float] = time.time):
        self.pause_after = pause_after
        self.pause = pause
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._paused_until: dict[str, float] = {}

    def record(self, domain: str, reached_host: bool) -> None:
        """Record whether an attempt to `domain` reached any of its hosts."""
        if reached_host:
            self._failures.pop(domain, None)
            if self._paused_until.pop(domain, None) is not None:
                log.info("destination_resumed", domain=domain)
            return
        count = self._failures.get(domain, 0) + 1
        self._failures[domain] = count
        if count >= self.pause_after:
            until = self.clock() + self.pause
            self._paused_until[domain] = until
            self._failures[domain] = 0
            log.warning("destination_paused", domain=domain, failures=count, seconds=self.pause)

    def paused_until(self, domain: str) -> float | None:
        """Return when a paused domain may be tried again, or None when it is not paused."""
        until = self._paused_until.get(domain)
        if until is None:
            return None
        if until <= self.clock():
            return None
        return until

    @property
    def paused(self) -> list[str]:
        now = self.clock()
        return [domain for domain, until in self._paused_until.items() if until > now]
