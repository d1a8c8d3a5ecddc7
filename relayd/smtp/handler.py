"""aiosmtpd handler hooks: relay access, envelope checks and spooling at end of DATA."""

import asyncio
import dataclasses
import ipaddress
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import structlog

from relayd import events, maillog, metrics
from relayd.addresses import Address, AddressError, parse_path
from relayd.alignment.policy import AlignmentPolicy
from relayd.classes import InvalidClass, choose_class, requested_class, without_class_field
from relayd.config import Config
from relayd.dkim.keys import SigningKey
from relayd.dkim.signer import Signer
from relayd.events import EventRecorder
from relayd.headers import header_field, remove_fields
from relayd.prepare import prepare
from relayd.reply import Reply
from relayd.smtp import idempotency, replies
from relayd.smtp.content import check_content
from relayd.spool import NewMessage, Spool, SpoolError, SpoolFull, new_queue_id
from relayd.state import COMMITTED, PENDING, IdempotencyKey, IdempotencyStore, StateError, Suppression
from relayd.suppression import BOUNCE, SuppressionList

log = structlog.get_logger("relayd.smtp")

# Called with the queue id, the recipient domains, the class and the
# acceptance time of each accepted message.
AcceptedCallback = Callable[[str, set[str], str, float], None]


@dataclass
class Transaction:
    """The parsed sender and recipients of the current mail transaction, kept beside aiosmtpd's envelope."""

    sender: Address | None = None
    recipients: list[Address] = field(default_factory=list)
    # Recipients accepted only to be dropped (suppression.action = "drop"), by address.
    suppressed: dict[str, Suppression] = field(default_factory=dict)


class SubmissionHandler:
    def __init__(
        self,
        config: Config,
        spool: Spool,
        signer: Signer,
        on_accepted: AcceptedCallback,
        suppressions: SuppressionList,
        keys: IdempotencyStore,
        recorder: EventRecorder,
        alignment: AlignmentPolicy | None = None,
    ):
        self.config = config
        self.spool = spool
        self.signer = signer
        self.on_accepted = on_accepted
        self.suppressions = suppressions
        self.keys = keys
        self.recorder = recorder
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

        entry = await self._suppression(recipient)
        if entry is not None and self.config.suppression.action == "reject":
            return self._reject(
                session, _suppressed_reply(entry), f"recipient suppressed: {entry.reason}", recipient=str(recipient)
            )
        if entry is not None:
            transaction.suppressed[str(recipient)] = entry

        if str(recipient) not in {str(r) for r in transaction.recipients}:
            transaction.recipients.append(recipient)
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return str(replies.R250_RECIPIENT_OK)

    async def _suppression(self, recipient: Address) -> Suppression | None:
        try:
            return await self.suppressions.find(f"{recipient.local}@{recipient.ascii_domain}")
        except StateError as exc:
            # A broken state store must not stop mail: the recipient is
            # accepted as if it were not suppressed.
            log.error("suppression_check_failed", recipient=str(recipient), error=str(exc))
            return None

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

        client = self._client(session)
        key = idempotency.submission_key(content, client, self.config.idempotency)
        # The key is for relayd alone: it never reaches the recipients. It is
        # removed before the message is prepared and signed, so the DKIM
        # signature covers the content that is delivered.
        content = remove_fields(content, idempotency.HEADER)
        queue_id = new_queue_id()
        if key is not None:
            reply = await self._claim(session, transaction, content, key, queue_id)
            if reply is not None:
                return reply
        reply = await self._accept(session, envelope, content, message_class, key, queue_id)
        if reply.startswith("250"):
            metrics.record_accepted(message_class, time.monotonic() - data_ended)
        return reply

    async def _claim(
        self, session, transaction: Transaction, content: bytes, key: IdempotencyKey, queue_id: str
    ) -> str | None:
        """Claim `key` for `queue_id`; return the reply that ends the transaction, or None to go on."""
        try:
            claim = await idempotency.claim(self.keys, key, queue_id, self.config.idempotency.window)
        except StateError as exc:
            return self._reject(session, replies.R451_STORE_FAILED, f"idempotency key store failed: {exc}")
        if claim.status == COMMITTED:
            return await self._duplicate(session, transaction, content, key, claim.queue_id)
        if claim.status == PENDING:
            return self._reject(session, replies.R451_KEY_IN_USE, f"idempotency key held by {claim.queue_id}")
        return None

    async def _accept(
        self, session, envelope, content: bytes, message_class: str, key: IdempotencyKey | None, queue_id: str
    ) -> str:
        """Spool the message for its recipients that are not dropped, store the events, then reply."""
        transaction: Transaction = envelope.relayd
        client = self._client(session)
        delivered = [r for r in transaction.recipients if str(r) not in transaction.suppressed]
        dropped = [r for r in transaction.recipients if str(r) in transaction.suppressed]
        received_at = time.time()
        try:
            message, signing_keys = await self._prepare(
                session, envelope, content, message_class, queue_id, received_at, delivered
            )
            signing_domain = signing_keys[0].domain if signing_keys else None
            rejection = await self.alignment.check(
                transaction.sender, message.content, signing_domain, queue_id=queue_id, client=client
            )
        except BaseException:
            # Signing and the alignment check take time, and the client may
            # leave meanwhile. A claim left pending would make every
            # resubmission get 451 until the next start.
            await self._release(key, queue_id)
            raise
        if rejection is not None:
            await self._release(key, queue_id)
            return self._reject(session, rejection.reply, rejection.reason, from_domain=rejection.from_domain)

        if delivered:
            try:
                await self.spool.add(queue_id, message)
            except SpoolError as exc:
                await self._release(key, queue_id)
                if isinstance(exc, SpoolFull):
                    return self._reject(session, replies.R452_SPOOL_FULL, f"spool full: {exc}")
                return self._reject(session, replies.R451_STORE_FAILED, f"spool write failed: {exc}")

        # The events are stored before the key is committed and before any
        # attempt is scheduled, so they come first in the message's order.
        message_id = message.message_id
        await self.recorder.record(
            [self._event("queued", queue_id, message_id, r, received_at) for r in delivered]
            + [
                self._event("suppressed", queue_id, message_id, r, received_at, transaction.suppressed[str(r)].reason)
                for r in dropped
            ]
        )
        if key is not None:
            await self._commit(key, queue_id)

        maillog.accepted(
            queue_id=queue_id,
            sender=message.sender,
            recipients=len(message.recipients),
            size=len(message.content),
            client=client,
            dkim=[f"{signing_key.domain}/{signing_key.selector}" for signing_key in signing_keys],
            message_id=message_id,
            message_class=message_class,
        )
        for recipient in dropped:
            maillog.suppressed(
                queue_id=queue_id, recipient=str(recipient), reason=transaction.suppressed[str(recipient)].reason, client=client
            )
            metrics.record_suppressed(message_class, recipient.ascii_domain)
        if delivered:
            self.on_accepted(queue_id, {r.ascii_domain for r in delivered}, message_class, received_at)
        return str(replies.R250_QUEUED.format(queue_id=queue_id))

    async def _prepare(
        self,
        session,
        envelope,
        content: bytes,
        message_class: str,
        queue_id: str,
        received_at: float,
        delivered: list[Address],
    ) -> tuple[NewMessage, list[SigningKey]]:
        """Add the Received field (and Message-ID and Date where missing), sign, and build the message to spool."""
        transaction: Transaction = envelope.relayd
        prepared = prepare(
            content,
            queue_id=queue_id,
            hostname=self.config.server.hostname,
            client_ip=self._client(session),
            client_helo=session.host_name or "",
            protocol=_protocol(session, envelope),
            recipients=[str(r) for r in transaction.recipients],
        )
        signatures, signing_keys = await self._sign(prepared)
        prepared = signatures + prepared
        message = NewMessage(
            sender=str(transaction.sender) if transaction.sender else "",
            recipients=tuple((str(r), r.ascii_domain) for r in delivered),
            content=prepared,
            received_at=received_at,
            client=self._client(session),
            smtputf8=bool(envelope.smtp_utf8),
            body_8bit="BODY=8BITMIME" in envelope.mail_options,
            message_class=message_class,
            message_id=header_field(prepared, "message-id") or "",
        )
        return message, signing_keys

    async def _sign(self, content: bytes) -> tuple[bytes, list[SigningKey]]:
        """Sign in a worker thread: canonicalizing a large body would stall every session."""
        if not self.signer.has_keys:
            return b"", []
        return await asyncio.to_thread(self.signer.sign, content)

    async def _duplicate(self, session, transaction: Transaction, content: bytes, key: IdempotencyKey, original: str) -> str:
        now = time.time()
        message_id = header_field(content, "message-id") or ""
        await self.recorder.record(
            [
                events.duplicate(queue_id=original, message_id=message_id, recipient=str(r), domain=r.ascii_domain, timestamp=now)
                for r in transaction.recipients
            ]
        )
        maillog.duplicate(
            queue_id=original, client=self._client(session), recipients=len(transaction.recipients), key_kind=key.kind
        )
        return str(replies.R250_DUPLICATE.format(queue_id=original))

    @staticmethod
    def _event(event_type: str, queue_id: str, message_id: str, recipient: Address, now: float, reason: str = ""):
        return events.state_change(
            event_type,
            queue_id=queue_id,
            message_id=message_id,
            recipient=str(recipient),
            domain=recipient.ascii_domain,
            timestamp=now,
            reason=reason,
        )

    async def _commit(self, key: IdempotencyKey, queue_id: str) -> None:
        try:
            await self.keys.commit_key(key, queue_id)
        except StateError as exc:
            # The message is spooled, so the client still gets 250. The claim
            # stays pending: resubmissions get 451 until the next start
            # settles it from the spool.
            log.error("idempotency_commit_failed", queue_id=queue_id, error=str(exc))

    async def _release(self, key: IdempotencyKey | None, queue_id: str) -> None:
        if key is None:
            return
        try:
            await self.keys.release_key(key, queue_id)
        except StateError as exc:
            log.error("idempotency_release_failed", queue_id=queue_id, error=str(exc))

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would send the exception's class name to the client.
        log.exception("smtp_session_error", error=repr(error))
        return str(replies.R451_STORE_FAILED)


def _bad_address(error: AddressError) -> Reply:
    return dataclasses.replace(replies.R553_BAD_ADDRESS, enhanced=error.enhanced).format(detail=str(error))


def _suppressed_reply(entry: Suppression) -> Reply:
    date = datetime.fromtimestamp(entry.created_at, timezone.utc).strftime("%Y-%m-%d")
    if entry.source == BOUNCE:
        return replies.R550_SUPPRESSED_BOUNCE.format(date=date)
    return replies.R550_SUPPRESSED_MANUAL.format(date=date)


def _protocol(session, envelope) -> str:
    """Return the RFC 3848 / RFC 6531 protocol name for the Received field."""
    if envelope.smtp_utf8:
        return "UTF8SMTP"
    return "ESMTP" if session.extended_smtp else "SMTP"
