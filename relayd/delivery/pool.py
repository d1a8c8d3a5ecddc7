"""Idle SMTP sessions kept open for the next message to the same destination.

Opening a session costs a TCP and often a TLS handshake plus EHLO; a burst of
transactional mail to one provider reuses a few sessions instead. A session
that ended its last transaction cleanly and was idle only briefly is used
as it is; any other is checked with RSET first (RFC 5321 4.1.1.5). A
session is closed after `idle_timeout` seconds unused.
"""

import asyncio
import time

import aiosmtplib

from relayd.delivery.session import Session, close_session

# Servers close idle sessions themselves (RFC 5321 4.5.3.2.7 tells them to wait
# 5 minutes, many wait less); checking often keeps relayd's side tidy.
REAP_INTERVAL = 1.0

# A session idle for longer is checked with RSET before reuse: a server may
# have timed it out. A shorter pause saves a round trip per message in a
# burst; a session lost even so is replaced by the courier.
PROBE_AFTER_IDLE = 2.0


class SessionPool:
    def __init__(self, idle_timeout: float, command_timeout: float):
        self.idle_timeout = idle_timeout
        self.command_timeout = command_timeout
        self._idle: dict[tuple, list[tuple[Session, float]]] = {}
        self._reaper: asyncio.Task | None = None

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")

    async def take(self, key: tuple) -> Session | None:
        """Return a live idle session for `key`, or None."""
        while self._idle.get(key):
            session, since = self._idle[key].pop()
            if not session.client.is_connected:
                continue
            session.reused = True
            if session.ready and time.monotonic() - since < PROBE_AFTER_IDLE:
                return session
            try:
                response = await session.client.execute_command(b"RSET", timeout=self.command_timeout)
            except (aiosmtplib.SMTPException, OSError):
                session.client.close()
                continue
            if response.code == 250:
                session.ready = True
                return session
            await close_session(session)
        return None

    async def give(self, session: Session) -> None:
        """Keep `session` for reuse, or close it when reuse is off or it is no longer connected."""
        if self.idle_timeout <= 0 or not session.client.is_connected:
            await close_session(session)
            return
        self._idle.setdefault(session.key, []).append((session, time.monotonic()))

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for sessions in self._idle.values():
            for session, _ in sessions:
                await close_session(session)
        self._idle.clear()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            await self.reap()

    async def reap(self) -> None:
        """Close the sessions idle for longer than `idle_timeout`."""
        now = time.monotonic()
        for key in list(self._idle):
            keep = []
            for session, since in self._idle[key]:
                if now - since > self.idle_timeout:
                    await close_session(session)
                else:
                    keep.append((session, since))
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
