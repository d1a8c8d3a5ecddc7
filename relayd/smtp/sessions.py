"""The open inbound sessions, and the drain that ends them on shutdown.

While draining, the listening sockets stay open so that a new client gets a
clear `421 4.3.2` instead of a refused connection, and a session that starts
a new transaction gets the same reply. Transactions already under way may
finish, so a client that sent its final dot still gets its 250.
"""

import asyncio
from typing import Protocol

import structlog

from relayd import metrics

log = structlog.get_logger("relayd.smtp")

# How often the drain checks whether the sessions in a transaction are done.
POLL_INTERVAL = 0.05


class Session(Protocol):
    @property
    def in_transaction(self) -> bool: ...

    def close_for_shutdown(self) -> None: ...


class Sessions:
    """Open inbound sessions; `draining` is set once shutdown begins and never cleared."""

    def __init__(self) -> None:
        self._open: set[Session] = set()
        self.draining = False

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, session: Session) -> None:
        self._open.add(session)
        metrics.smtp_sessions_open.set(len(self._open))

    def closed(self, session: Session) -> None:
        self._open.discard(session)
        metrics.smtp_sessions_open.set(len(self._open))

    def in_transaction(self) -> int:
        return sum(1 for session in self._open if session.in_transaction)

    async def drain(self, grace: float) -> int:
        """Wait up to `grace` seconds for open transactions, then close every session with 421.

        Return how many sessions were still in a transaction when closed:
        their clients got no 250 and keep their messages.
        """
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.in_transaction() and loop.time() < deadline:
            await asyncio.sleep(POLL_INTERVAL)
        unfinished = self.in_transaction()
        for session in list(self._open):
            session.close_for_shutdown()
        return unfinished
