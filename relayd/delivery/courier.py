"""The courier: one SMTP transaction per (message, domain) with aiosmtplib.

aiosmtplib, ssl and OSError exceptions end here: every failure becomes a
Reply, and the outcome module turns replies into recipient states.
"""

import ssl
import time
from dataclasses import dataclass, field

import aiosmtplib
import idna
import structlog

from relayd.config.model import DeliveryConfig
from relayd.delivery import outcome
from relayd.delivery.routing import MxHost
from relayd.reply import Reply

log = structlog.get_logger("relayd.delivery")


@dataclass(frozen=True)
class OutboundEnvelope:
    sender: str
    smtputf8: bool = False
    body_8bit: bool = False


@dataclass(frozen=True)
class RecipientResult:
    """The decision of one attempt for one recipient."""

    address: str
    state: str
    reply: Reply
    host: str


@dataclass
class AttemptResult:
    results: list[RecipientResult]
    host: str = ""
    delays: dict = field(default_factory=dict)


class HostFailed(Exception):
    """A host could not start a transaction; the next host is tried."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


def wire_address(address: str) -> str:
    """Return `address` with its domain in IDNA ASCII form, the local part unchanged."""
    if not address:
        return ""
    local, _, domain = address.rpartition("@")
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        pass
    return f"{local}@{domain}"


def _local_reply(code: int, enhanced: str, text: str, command: str) -> Reply:
    return outcome.local_reply(code, enhanced, text, command)


def _translate(exc: BaseException, command: str) -> Reply:
    """Turn a library exception into the transient reply relayd records for it."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return Reply.parse(exc.code, exc.message, command)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return _local_reply(451, "4.4.2", f"Timed out waiting for the reply to {command}", command)
    if isinstance(exc, ssl.SSLError):
        return _local_reply(451, "4.7.0", f"TLS handshake failed: {exc.reason or exc}", command)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return _local_reply(451, "4.4.2", f"Connection lost during {command}", command)
    if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return _local_reply(451, "4.4.1", "Connection refused", command)
    return _local_reply(451, "4.4.1", f"Connection failed: {exc}", command)


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
                    results = await self._transaction(client, envelope, content, recipients, host.name)
                finally:
                    await _close(client)
                delays = {"connect": round(connected - started, 3), "transmit": round(time.monotonic() - connected, 3)}
                return AttemptResult(results, host=f"{host.name}[{address}]:{host.port}", delays=delays)

        state = outcome.for_connection(failures)
        last = failures[-1] if failures else _local_reply(451, "4.4.4", "No host to connect to", "CONNECT")
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
                raise HostFailed(_local_reply(451, "4.7.10", f"{host.name} does not offer STARTTLS and delivery.tls is required", "EHLO"))
            return client
        try:
            await client.starttls(server_hostname=host.name, validate_certs=False, timeout=self.config.command_timeout)
            await client.ehlo(timeout=self.config.command_timeout)
            return client
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            await _close(client)
            reply = _translate(exc, "STARTTLS")
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
            raise HostFailed(_translate(exc, "CONNECT")) from exc
        try:
            await client.ehlo(timeout=self.config.command_timeout)
        except aiosmtplib.SMTPHeloError:
            try:
                await client.helo(timeout=self.config.command_timeout)
            except (aiosmtplib.SMTPException, OSError) as exc:
                await _close(client)
                raise HostFailed(_translate(exc, "HELO")) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await _close(client)
            raise HostFailed(_translate(exc, "EHLO")) from exc
        return client

    async def _transaction(
        self, client: aiosmtplib.SMTP, envelope: OutboundEnvelope, content: bytes, recipients: list[str], host: str
    ) -> list[RecipientResult]:
        decided: dict[str, RecipientResult] = {}

        def decide(address: str, state: str, reply: Reply) -> None:
            decided[address] = RecipientResult(address, state, reply, host)

        wire = {r: wire_address(r) for r in recipients}
        sender = wire_address(envelope.sender)

        # The listener never accepts a control character in an address, and
        # aiosmtplib would pass CR or LF to the next hop as command
        # separators, so a spool entry that somehow carries one is bounced.
        if _has_control(sender):
            reply = _local_reply(550, "5.1.7", "The sender address contains a control character", "MAIL")
            return [RecipientResult(r, outcome.BOUNCED, reply, host) for r in recipients]
        for address in recipients:
            if _has_control(wire[address]):
                decide(address, outcome.BOUNCED, _local_reply(550, "5.1.3", "The address contains a control character", "RCPT"))

        utf8 = client.supports_extension("smtputf8")
        if not utf8 and not sender.isascii():
            reply = _local_reply(550, "5.6.7", f"{host} does not support SMTPUTF8, needed for the non-ASCII sender", "MAIL")
            return [RecipientResult(r, outcome.BOUNCED, reply, host) for r in recipients]
        for address in recipients:
            if not utf8 and not wire[address].isascii():
                decide(address, outcome.BOUNCED, _local_reply(550, "5.6.7", f"{host} does not support SMTPUTF8, needed for this address", "RCPT"))

        command = "MAIL"
        try:
            reply = await self._command(client, b"MAIL", b"FROM:<" + sender.encode() + b">", *self._mail_options(client, envelope, content))
            if reply.code != 250:
                state = outcome.for_reply(reply)
                return [decided.get(r) or RecipientResult(r, state, reply, host) for r in recipients]

            command = "RCPT"
            accepted = []
            for address in recipients:
                if address in decided:
                    continue
                reply = await self._command(client, b"RCPT", b"TO:<" + wire[address].encode() + b">")
                state = outcome.for_recipient(reply)
                if state is None:
                    accepted.append(address)
                else:
                    decide(address, state, reply)
            if not accepted:
                return [decided[r] for r in recipients]

            command = "DATA"
            try:
                response = await client.data(content, timeout=self.config.data_timeout)
                reply = Reply.parse(response.code, response.message, "DATA")
            except aiosmtplib.SMTPDataError as exc:
                reply = Reply.parse(exc.code, exc.message, "DATA")
            state = outcome.for_reply(reply)
            for address in accepted:
                decide(address, state, reply)
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            # The connection broke mid-transaction: whatever is not decided
            # yet is deferred. If the final dot was already sent, the next
            # attempt may deliver a second copy, the one duplicate allowed.
            reply = _translate(exc, command)
            for address in recipients:
                if address not in decided:
                    decide(address, outcome.DEFERRED, reply)
        return [decided[r] for r in recipients]

    async def _command(self, client: aiosmtplib.SMTP, verb: bytes, *args: bytes) -> Reply:
        response = await client.execute_command(verb, *args, timeout=self.config.command_timeout)
        return Reply.parse(response.code, response.message, verb.decode())

    def _mail_options(self, client: aiosmtplib.SMTP, envelope: OutboundEnvelope, content: bytes) -> list[bytes]:
        options = []
        if client.supports_extension("size"):
            options.append(b"SIZE=%d" % len(content))
        if envelope.body_8bit and client.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        if envelope.smtputf8 and client.supports_extension("smtputf8"):
            options.append(b"SMTPUTF8")
        return options


def _has_control(address: str) -> bool:
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in address)


async def _close(client: aiosmtplib.SMTP) -> None:
    """End the session politely; a failure here changes no outcome."""
    if client.is_connected:
        try:
            await client.quit(timeout=5)
        except (aiosmtplib.SMTPException, OSError):
            client.close()
