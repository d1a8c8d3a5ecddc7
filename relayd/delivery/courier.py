"""The courier: walks the next hops of a domain and runs the attempt's transactions on the first that works."""

import ssl
import time

import aiosmtplib
import structlog

from relayd.config.model import DeliveryConfig
from relayd.delivery import outcome
from relayd.delivery.errors import HostFailed, local_reply, translate_error
from relayd.delivery.results import AttemptResult, OutboundEnvelope, RecipientResult
from relayd.delivery.routing import MxHost
from relayd.delivery.transaction import run_transactions
from relayd.reply import Reply

log = structlog.get_logger("relayd.delivery")


class Courier:
    def __init__(self, hostname: str, config: DeliveryConfig):
        self.hostname = hostname
        self.config = config

    async def deliver(
        self, envelope: OutboundEnvelope, content: bytes, recipients: list[str], hosts: list[MxHost]
    ) -> AttemptResult:
        """Deliver `content` to `recipients`, walking `hosts` until one runs the transaction."""
        failures: list[Reply] = []
        last_host = ""
        for host in hosts:
            for address in host.addresses:
                started = time.monotonic()
                last_host = f"{host.name}[{address}]:{host.port}"
                try:
                    client = await self._open(host, address)
                except HostFailed as exc:
                    failures.append(exc.reply)
                    log.info("host_failed", host=host.name, address=address, reply=str(exc.reply))
                    continue
                connected = time.monotonic()
                try:
                    results = await run_transactions(client, envelope, content, recipients, host.name, self.config)
                finally:
                    await _close(client)
                delays = {"connect": round(connected - started, 3), "transmit": round(time.monotonic() - connected, 3)}
                return AttemptResult(results, host=f"{host.name}[{address}]:{host.port}", delays=delays)

        state = outcome.for_connection(failures)
        last = failures[-1] if failures else local_reply(451, "4.4.4", "No host to connect to", "CONNECT")
        return AttemptResult([RecipientResult(r, state, last, last_host) for r in recipients], host=last_host)

    async def _open(self, host: MxHost, address: str) -> aiosmtplib.SMTP:
        """Connect, read the greeting, send EHLO (or HELO) and start TLS when the mode requires it."""
        tls = self.config.tls
        client = await self._connect(host, address)
        if tls == "off":
            return client
        if not client.supports_extension("starttls"):
            if tls == "required":
                await _close(client)
                raise HostFailed(local_reply(451, "4.7.10", f"{host.name} does not offer STARTTLS and delivery.tls is required", "EHLO"))
            return client
        try:
            await client.starttls(server_hostname=host.name, validate_certs=False, timeout=self.config.command_timeout)
            await client.ehlo(timeout=self.config.command_timeout)
            return client
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            await _close(client)
            reply = translate_error(exc, "STARTTLS")
            if tls == "required":
                raise HostFailed(reply) from exc
            # RFC 7435: opportunistic TLS falls back to plain text when the
            # handshake fails.
            log.info("starttls_failed_falling_back", host=host.name, address=address, reply=str(reply))
            client = await self._connect(host, address)
            return client

    async def _connect(self, host: MxHost, address: str) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=address,
            port=host.port,
            local_hostname=self.hostname,
            timeout=self.config.command_timeout,
            start_tls=False,
            use_tls=False,
        )
        try:
            await client.connect(timeout=self.config.connect_timeout)
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise HostFailed(Reply.parse(exc.code, exc.message, "CONNECT")) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise HostFailed(translate_error(exc, "CONNECT")) from exc
        try:
            await client.ehlo(timeout=self.config.command_timeout)
        except aiosmtplib.SMTPHeloError:
            try:
                await client.helo(timeout=self.config.command_timeout)
            except (aiosmtplib.SMTPException, OSError) as exc:
                await _close(client)
                raise HostFailed(translate_error(exc, "HELO")) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await _close(client)
            raise HostFailed(translate_error(exc, "EHLO")) from exc
        return client

async def _close(client: aiosmtplib.SMTP) -> None:
    """End the session politely; a failure here changes no outcome."""
    if client.is_connected:
        try:
            await client.quit(timeout=5)
        except (aiosmtplib.SMTPException, OSError):
            client.close()
