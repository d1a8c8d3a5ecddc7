"""The courier: walks the next hops of a domain and runs the attempt's transactions on the first that works."""

import asyncio
import time

import structlog

from relayd.config.model import DeliveryConfig
from relayd.delivery import outcome
from relayd.delivery.errors import HostFailed, local_reply
from relayd.delivery.pool import SessionPool
from relayd.delivery.results import AttemptResult, OutboundEnvelope, RecipientResult
from relayd.delivery.routing import MxHost
from relayd.delivery.session import Session, close_session, open_session
from relayd.delivery.transaction import StaleSession, run_transactions
from relayd.reply import Reply

log = structlog.get_logger("relayd.delivery")


class Courier:
    def __init__(self, hostname: str, config: DeliveryConfig):
        self.hostname = hostname
        self.config = config
        self.pool = SessionPool(config.connection_idle, config.command_timeout)
        self._host_slots: dict[tuple[str, int], asyncio.Semaphore] = {}

    def _host_slot(self, address: str, port: int) -> asyncio.Semaphore:
        """Return the limit on sessions to one MX address, shared by every domain it serves."""
        key = (address, port)
        slot = self._host_slots.get(key)
        if slot is None:
            slot = self._host_slots[key] = asyncio.Semaphore(self.config.max_per_host)
        return slot

    def tls_mode(self, domain: str) -> str:
        return self.config.tls_policy.get(domain, self.config.tls)

    async def deliver(
        self,
        envelope: OutboundEnvelope,
        content: bytes,
        recipients: list[str],
        hosts: list[MxHost],
        domain: str,
        tls_mode: str | None = None,
    ) -> AttemptResult:
        """Deliver `content` to `recipients`, walking `hosts` until one runs the transaction.

        `tls_mode` overrides the configured mode, as an MTA-STS policy does.
        """
        tls_mode = tls_mode or self.tls_mode(domain)
        failures: list[Reply] = []
        last_host = ""
        for host in hosts:
            for address in host.addresses:
                started = time.monotonic()
                last_host = f"{host.name}[{address}]:{host.port}"
                # Domains that share an MX host (one provider's many
                # domains) share this limit; the scheduler limits each domain.
                async with self._host_slot(address, host.port):
                    try:
                        session = await self._session(host, address, tls_mode)
                        connected = time.monotonic()
                        try:
                            results = await run_transactions(session, envelope, content, recipients, host.name, self.config)
                        except StaleSession as exc:
                            # Nothing was sent on the old session, so this sends no second copy.
                            log.info("stale_session_replaced", host=host.name, address=address, reason=str(exc))
                            session.client.close()
                            session = await open_session(self.hostname, host, address, tls_mode, self.config)
                            connected = time.monotonic()
                            results = await run_transactions(session, envelope, content, recipients, host.name, self.config)
                    except HostFailed as exc:
                        failures.append(exc.reply)
                        log.info("host_failed", host=host.name, address=address, reply=str(exc.reply))
                        continue
                    await self._release(session, results)
                delays = {"connect": round(connected - started, 3), "transmit": round(time.monotonic() - connected, 3)}
                return AttemptResult(results, host=session.label, delays=delays, tls=session.tls)

        state = outcome.for_connection(failures)
        last = failures[-1] if failures else local_reply(451, "4.4.4", "No host to connect to", "CONNECT")
        return AttemptResult([RecipientResult(r, state, last, last_host) for r in recipients], host=last_host, connected=False)

    async def _session(self, host: MxHost, address: str, tls_mode: str) -> Session:
        reused = await self.pool.take((address, host.port, tls_mode))
        if reused is not None:
            return reused
        return await open_session(self.hostname, host, address, tls_mode, self.config)

    async def _release(self, session: Session, results: list[RecipientResult]) -> None:
        # RFC 5321 3.8: a 421 means the server is closing the session.
        if any(r.reply.code == 421 for r in results):
            await close_session(session)
        else:
            await self.pool.give(session)
