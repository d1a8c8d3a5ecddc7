"""`[policy] alignment`: what the SMTP listener does with the preflight's decision."""

import asyncio
import re
from dataclasses import dataclass

import structlog

from relayd.addresses import Address
from relayd.alignment.domains import organizational_domain
from relayd.alignment.preflight import Decision, Preflight
from relayd.alignment.spf import SpfChecker
from relayd.config import Config
from relayd.delivery.dns import Resolver
from relayd.dkim.signer import Signer
from relayd.headers import from_domain
from relayd.reply import Reply
from relayd.smtp import replies

log = structlog.get_logger("relayd.alignment")

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF.
MAX_REPLY_LINE = 510
# Reasons quote DNS data, which may contain any byte; only printable ASCII reaches a reply.
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class Rejection:
    """The reply that rejects a message, and the reason for the log."""

    reply: Reply
    reason: str
    from_domain: str | None


class AlignmentPolicy:
    """Applies "reject", "warn" or "off" to each message at the end of DATA."""

    def __init__(self, mode: str, preflight: Preflight | None = None):
        self.mode = mode
        self.preflight = preflight
        # Messages found not aligned, and checks a DNS failure left undecided.
        # TODO: export both as metrics once /metrics exists.
        self.failures = 0
        self.temporary_errors = 0
        self._background: set[asyncio.Task] = set()

    async def check(
        self, sender: Address | None, content: bytes, signing_domain: str | None, *, queue_id: str, client: str
    ) -> Rejection | None:
        """Return the rejection for this message, or None to accept it.

        `signing_domain` is the d= domain of the DKIM signature relayd added,
        or None when the message leaves unsigned.

        Under "warn" the check runs after this returns, so it never delays
        the reply to the client.
        NOTE: a "warn" line is logged even when storing the message then
        fails, so its queue id can belong to a message that was never accepted.
        """
        if self.mode == "off" or self.preflight is None:
            return None
        domain = from_domain(content)
        if self.mode == "warn":
            task = asyncio.create_task(self._warn(sender, domain, signing_domain, queue_id=queue_id, client=client))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return None

        decision = await self.preflight.decide(sender, domain, signing_domain)
        if decision.aligned:
            return None
        self._count(decision)
        return Rejection(rejection_reply(decision), decision.reason, decision.from_domain)

    async def _warn(
        self, sender: Address | None, domain: str | None, signing_domain: str | None, *, queue_id: str, client: str
    ) -> None:
        try:
            decision = await self.preflight.decide(sender, domain, signing_domain)
        except Exception as exc:
            log.exception("alignment_check_error", queue_id=queue_id, client=client, from_domain=domain, error=repr(exc))
            return
        if decision.aligned:
            return
        self._count(decision)
        event = "alignment_unchecked" if decision.temporary else "alignment_failed"
        log.warning(event, queue_id=queue_id, client=client, from_domain=decision.from_domain, reason=decision.reason)

    def _count(self, decision: Decision) -> None:
        if decision.temporary:
            self.temporary_errors += 1
        else:
            self.failures += 1

    def close(self) -> None:
        for task in self._background:
            task.cancel()
        if self.preflight is not None:
            self.preflight.spf.close()


def rejection_reply(decision: Decision) -> Reply:
    """Return the reply that rejects a message the preflight found not aligned."""
    if decision.from_domain is None:
        return replies.R550_NO_AUTHOR_DOMAIN
    if decision.temporary:
        return replies.R451_ALIGNMENT_UNCHECKED.format(domain=decision.from_domain)
    reason = _UNPRINTABLE.sub("?", decision.reason)
    reply = replies.R550_NOT_ALIGNED.format(domain=decision.from_domain, reason=reason)
    excess = len(str(reply)) - MAX_REPLY_LINE
    if excess > 0:
        reply = replies.R550_NOT_ALIGNED.format(domain=decision.from_domain, reason=reason[: -excess - 3] + "...")
    return reply


def build_alignment_policy(config: Config, signer: Signer, resolver: Resolver) -> AlignmentPolicy:
    """Build the policy from config; "off" creates no resolver and no threads."""
    mode = config.policy.alignment
    if mode == "off":
        return AlignmentPolicy(mode)
    # Parse the Public Suffix List now rather than during the first message.
    organizational_domain(config.server.hostname)
    spf = SpfChecker(config.dns, helo=config.server.hostname)
    preflight = Preflight(signer, resolver, spf, config.server.hostname, config.delivery.source_addresses)
    return AlignmentPolicy(mode, preflight)
