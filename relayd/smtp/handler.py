"""aiosmtpd handler hooks: relay access, envelope checks and spooling at end of DATA."""

import asyncio
import dataclasses
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Callable

import structlog

from relayd import maillog, metrics
from relayd.addresses import Address, AddressError, parse_path
from relayd.alignment.policy import AlignmentPolicy
from relayd.classes import InvalidClass, choose_class, requested_class, without_class_field
from relayd.config import Config
from relayd.dkim.signer import Signer
from relayd.headers import header_fields
from relayd.prepare import prepare
from relayd.reply import Reply
from relayd.smtp import replies
from relayd.smtp.content import check_content
from relayd.spool import NewMessage, Spool, SpoolError, SpoolFull, new_queue_id

log = structlog.get_logger("relayd.smtp")

# Called with the queue id, the recipient domains, the class and the
# acceptance time of each accepted message.
AcceptedCallback = Callable[[str, set[str], str, float], None]


@dataclass
class Transaction:
    """The parsed sender and recipients of the current mail transaction, kept beside aiosmtpd's envelope."""

    sender: Address | None = None
    recipients: list[Address] = field(default_factory=list)


class SubmissionHandler:
    def __init__(
        self, config: Config, spool: Spool, signer: Signer, on_accepted: AcceptedCallback, alignment: AlignmentPolicy | None = None
    ):
        self.config = config
        self.spool = spool
        self.signer = signer
        self.on_accepted = on_accepted
        self.alignment = alignment or AlignmentPolicy("off")

    def _client(self, session) -> str:
        return str(session.peer[0]) if session.peer else "unknown"

    def _allowed(self, session) -> bool:
        try:
            address = ipaddress.ip_address(self._client(session).split("%")[0])
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.config.smtp.allowed_networks)

    def _reject(self, session, reply: Reply, reason: str, **fields) -> str:
        maillog.rejected(reply=reply, reason=reason, client=self._client(session), **fields)
        return str(reply)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # RFC 2034: every reply after EHLO carries an enhanced status code.
        return [*responses[:-1], "250-ENHANCEDSTATUSCODES", "250 PIPELINING"]

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if not self._allowed(session):
            # relayd is never an open relay: only configured networks may submit.
            return self._reject(
                session, replies.R550_RELAY_DENIED.format(client=self._client(session)), "client not in smtp.allowed_networks"
            )
        text = "" if address == "<>" else address
        try:
            sender = parse_path(text, smtputf8=envelope.smtp_utf8, role="sender")
        except AddressError as exc:
            return self._reject(session, _bad_address(exc), "invalid sender address", sender=text)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.relayd = Transaction(sender=sender)
        return str(replies.R250_SENDER_OK)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        transaction: Transaction = envelope.relayd
        limit = self.config.smtp.max_recipients
        if len(transaction.recipients) >= limit:
            return self._reject(
                session, replies.R452_TOO_MANY_RECIPIENTS.format(limit=limit), "recipient limit reached", recipient=address
            )
        try:
            recipient = parse_path(address, smtputf8=envelope.smtp_utf8, role="recipient")
        except AddressError as exc:
            return self._reject(session, _bad_address(exc), "invalid recipient address", recipient=address)
        if recipient.is_literal:
            return self._reject(session, replies.R553_ADDRESS_LITERAL, "address literal recipient", recipient=address)
        if str(recipient) not in {str(r) for r in transaction.recipients}:
            transaction.recipients.append(recipient)
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return str(replies.R250_RECIPIENT_OK)

    async def handle_RSET(self, server, session, envelope):
        return str(replies.R250_OK)

    async def handle_DATA(self, server, session, envelope):
        # aiosmtpd calls this right after the final dot: the accept latency starts here.
        data_ended = time.monotonic()
        transaction: Transaction = envelope.relayd
        content: bytes = envelope.original_content
        problem = check_content(content)
        if problem is not None:
            return self._reject(session, problem, problem.text, size=len(content))
        try:
            requested = requested_class(content)
        except InvalidClass as exc:
            reply = replies.R550_INVALID_CLASS.format(value=str(exc))
            return self._reject(session, reply, "invalid X-Relayd-Class")
        content = without_class_field(content)
        sender = str(transaction.sender) if transaction.sender else ""
        domains = [r.ascii_domain for r in transaction.recipients]
        message_class = choose_class(self.config, requested, sender, domains)

        queue_id = new_queue_id()
        received_at = time.time()
        prepared = prepare(
            content,
            queue_id=queue_id,
            hostname=self.config.server.hostname,
            client_ip=self._client(session),
            client_helo=session.host_name or "",
            protocol=_protocol(session, envelope),
            recipients=[str(r) for r in transaction.recipients],
        )
        signatures, keys = await self._sign(prepared)
        prepared = signatures + prepared
        message = NewMessage(
            sender=sender,
            recipients=tuple((str(r), r.ascii_domain) for r in transaction.recipients),
            content=prepared,
            received_at=received_at,
            client=self._client(session),
            smtputf8=bool(envelope.smtp_utf8),
            body_8bit="BODY=8BITMIME" in envelope.mail_options,
            message_class=message_class,
        )

        signing_domain = keys[0].domain if keys else None
        rejection = await self.alignment.check(
            transaction.sender, prepared, signing_domain, queue_id=queue_id, client=message.client
        )
        if rejection is not None:
            return self._reject(session, rejection.reply, rejection.reason, from_domain=rejection.from_domain)

        try:
            await self.spool.add(queue_id, message)
        except SpoolFull as exc:
            return self._reject(session, replies.R452_SPOOL_FULL, f"spool full: {exc}")
        except SpoolError as exc:
            return self._reject(session, replies.R451_STORE_FAILED, f"spool write failed: {exc}")

        maillog.accepted(
            queue_id=queue_id,
            sender=message.sender,
            recipients=len(message.recipients),
            size=len(prepared),
            client=message.client,
            dkim=[f"{key.domain}/{key.selector}" for key in keys],
            message_id=_message_id(content),
            message_class=message_class,
        )
        metrics.record_accepted(message_class, time.monotonic() - data_ended)
        self.on_accepted(queue_id, set(domains), message_class, received_at)
        return str(replies.R250_QUEUED.format(queue_id=queue_id))

    async def _sign(self, content: bytes) -> tuple[bytes, list]:
        """Sign in a worker thread: canonicalizing a large body would stall every session."""
        if not self.signer.has_keys:
            return b"", []
        return await asyncio.to_thread(self.signer.sign, content)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would send the exception's class name to the client.
        log.exception("smtp_session_error", error=repr(error))
        return str(replies.R451_STORE_FAILED)


def _message_id(content: bytes) -> str:
    """Return the client's Message-ID field, for matching the log against the application's records."""
    for name, value in header_fields(content):
        if name == "message-id":
            return value.decode("utf-8", "replace")
    return ""


def _bad_address(error: AddressError) -> Reply:
    return dataclasses.replace(replies.R553_BAD_ADDRESS, enhanced=error.enhanced).format(detail=str(error))


def _protocol(session, envelope) -> str:
    """Return the RFC 3848 / RFC 6531 protocol name for the Received field."""
    if envelope.smtp_utf8:
        return "UTF8SMTP"
    return "ESMTP" if session.extended_smtp else "SMTP"
