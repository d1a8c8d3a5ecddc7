"""The SMTP transactions of one attempt on an open connection: MAIL, RCPT, DATA.

Recipients a server refuses as "too many" are carried in a further
transaction on the same connection (RFC 5321 4.5.3.1.10) instead of being
deferred with everyone else.

A session from the pool starts with MAIL, without an RSET to check it
first. If the server has closed it, or replies 421 to MAIL, nothing was
sent yet. StaleSession then makes the courier carry the transaction on a
new connection instead of deferring the recipients.
"""

import ssl

import aiosmtplib

from relayd.config.model import DeliveryConfig
from relayd.delivery import outcome
from relayd.delivery.data import send_data
from relayd.delivery.errors import local_reply, translate_error
from relayd.delivery.results import OutboundEnvelope, RecipientResult, wire_address
from relayd.delivery.session import Session
from relayd.reply import Reply


class StaleSession(Exception):
    """A session from the pool failed at its first MAIL; nothing of the message was sent."""


async def run_transactions(
    session: Session,
    envelope: OutboundEnvelope,
    content: bytes,
    recipients: list[str],
    host: str,
    config: DeliveryConfig,
) -> list[RecipientResult]:
    """Deliver to `recipients` over `session`; return one decision per recipient, in order.

    Raises StaleSession when a reused session turns out to be closed.
    """
    client = session.client
    decided: dict[str, RecipientResult] = {}
    wire = {r: wire_address(r) for r in recipients}
    sender = wire_address(envelope.sender)

    for address, reply in _refused_before_sending(client, sender, wire).items():
        decided[address] = RecipientResult(address, outcome.BOUNCED, reply, host)
    if "" in decided:
        return [RecipientResult(r, outcome.BOUNCED, decided[""].reply, host) for r in recipients]

    pending = [r for r in recipients if r not in decided]
    stale_possible = session.reused
    while pending:
        transaction = _Transaction(session, config, host, stale_possible)
        stale_possible = False
        overflow = await transaction.run(sender, envelope, content, pending, wire)
        decided.update(transaction.decided)
        if not overflow:
            break
        if not transaction.accepted_any:
            # Not even one recipient fitted: the server is refusing, not
            # limiting, so the rest wait for the next attempt.
            for address in overflow:
                decided[address] = RecipientResult(address, outcome.DEFERRED, transaction.limit_reply, host)
            break
        pending = overflow
    return [decided[r] for r in recipients]


def _refused_before_sending(client: aiosmtplib.SMTP, sender: str, wire: dict[str, str]) -> dict[str, Reply]:
    """Return the addresses that cannot be sent to this server at all; "" stands for the sender.

    The listener never accepts a control character in an address, and
    aiosmtplib would pass CR or LF to the next hop as command separators,
    so a spool entry that somehow carries one is bounced here.
    """
    refused: dict[str, Reply] = {}
    utf8 = client.supports_extension("smtputf8")
    if _has_control(sender):
        refused[""] = local_reply(550, "5.1.7", "The sender address contains a control character", "MAIL")
    elif not utf8 and not sender.isascii():
        refused[""] = local_reply(550, "5.6.7", "The server does not support SMTPUTF8, needed for the non-ASCII sender", "MAIL")
    for address, on_wire in wire.items():
        if _has_control(on_wire):
            refused[address] = local_reply(550, "5.1.3", "The address contains a control character", "RCPT")
        elif not utf8 and not on_wire.isascii():
            refused[address] = local_reply(550, "5.6.7", "The server does not support SMTPUTF8, needed for this address", "RCPT")
    return refused


def _too_many(reply: Reply) -> bool:
    """Tell whether a RCPT reply means the per-message recipient limit was reached.

    RFC 5321 4.5.3.1.10: the reply is 452 (X.5.3 when enhanced codes are
    used), and a 552 from a server following RFC 821 means the same and is
    to be treated as temporary.
    """
    if reply.code not in (452, 552):
        return False
    return reply.enhanced in ("", "4.5.3", "5.5.3")


class _Transaction:
    def __init__(self, session: Session, config: DeliveryConfig, host: str, stale_possible: bool = False):
        self.session = session
        self.client = session.client
        self.stale_possible = stale_possible
        self.config = config
        self.host = host
        self.decided: dict[str, RecipientResult] = {}
        self.accepted_any = False
        self.limit_reply: Reply | None = None

    def decide(self, address: str, state: str, reply: Reply) -> None:
        self.decided[address] = RecipientResult(address, state, reply, self.host)

    async def run(self, sender: str, envelope, content: bytes, recipients: list[str], wire: dict[str, str]) -> list[str]:
        """Run MAIL, RCPT and DATA; return the recipients left over by a recipient limit."""
        command = "MAIL"
        overflow: list[str] = []
        self.session.ready = False
        try:
            options = _mail_options(self.client, envelope, content)
            try:
                reply = await self._command(b"MAIL", b"FROM:<" + sender.encode() + b">", *options)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                if self.stale_possible:
                    raise StaleSession(str(exc)) from exc
                raise
            if reply.code == 421 and self.stale_possible:
                raise StaleSession(str(reply))
            if reply.code != 250:
                self.session.ready = reply.code != 421
                for address in recipients:
                    self.decide(address, outcome.for_reply(reply), reply)
                return []

            command = "RCPT"
            accepted = []
            for index, address in enumerate(recipients):
                reply = await self._command(b"RCPT", b"TO:<" + wire[address].encode() + b">")
                if _too_many(reply):
                    self.limit_reply = Reply(451, "4.5.3", f"Too many recipients for one transaction: {reply}", "RCPT")
                    overflow = recipients[index:]
                    break
                state = outcome.for_recipient(reply)
                if state is None:
                    accepted.append(address)
                else:
                    self.decide(address, state, reply)
            if not accepted:
                await self._reset()
                self.session.ready = True
                return overflow

            command = "DATA"
            self.accepted_any = True
            reply = await self._data(content)
            # A rejection may be the reply to DATA itself rather than to the
            # final dot, which leaves the transaction open. Only a 250 ends it.
            self.session.ready = reply.code == 250
            for address in accepted:
                self.decide(address, outcome.for_reply(reply), reply)
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            # The connection broke mid-transaction: whatever is not decided
            # yet is deferred. If the final dot was already sent, the next
            # attempt may deliver a second copy, the one duplicate allowed.
            reply = translate_error(exc, command)
            for address in recipients:
                if address not in self.decided:
                    self.decide(address, outcome.DEFERRED, reply)
            return []
        return overflow

    async def _command(self, verb: bytes, *args: bytes) -> Reply:
        response = await self.client.execute_command(verb, *args, timeout=self.config.command_timeout)
        return Reply.parse(response.code, response.message, verb.decode())

    async def _data(self, content: bytes) -> Reply:
        response = await send_data(self.client, content, self.config.data_timeout)
        return Reply.parse(response.code, response.message, "DATA")

    async def _reset(self) -> None:
        """End a transaction that has no recipient, so the next can start (RFC 5321 4.1.1.5)."""
        await self.client.execute_command(b"RSET", timeout=self.config.command_timeout)


def _mail_options(client: aiosmtplib.SMTP, envelope: OutboundEnvelope, content: bytes) -> list[bytes]:
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
