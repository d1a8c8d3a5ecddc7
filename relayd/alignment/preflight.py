"""The alignment preflight: would a message pass DMARC (RFC 7489) at its receivers?

DMARC passes when DKIM or SPF passes for a domain aligned with the From
domain (RFC 7489). relayd cannot see a receiver's verdict, so it checks
what it controls: its own DKIM signature, whose d= domain must align, or an
envelope sender domain that aligns and whose SPF record authorizes every
address this relay sends from. A missing DMARC record leaves both modes at
their relaxed default, and whether one exists is check-domain's concern.
"""

from dataclasses import dataclass

from relayd.addresses import Address
from relayd.alignment.dmarc import discover
from relayd.alignment.domains import STRICT, is_aligned
from relayd.alignment.spf import SpfChecker, SpfResult
from relayd.delivery.dns import NotFound, Resolver, TemporaryFailure
from relayd.dkim.signer import Signer

# RFC 7489 6.6.1: without exactly one author address there is no domain to check.
NO_AUTHOR_DOMAIN = "the From field does not contain exactly one address, so there is no single domain to check"


@dataclass(frozen=True)
class Decision:
    """The preflight's verdict on one message."""

    from_domain: str | None
    aligned: bool
    # "dkim" or "spf" when aligned.
    mechanism: str = ""
    # Why the message is not aligned: a clause naming the domains, for the reply and the log.
    reason: str = ""
    # A DNS failure prevented a decision, so a later try may succeed.
    temporary: bool = False


class Preflight:
    """Decides alignment from the configured keys and the DNS records of the domains involved."""

    def __init__(self, signer: Signer, resolver: Resolver, spf: SpfChecker, hostname: str, source_addresses: tuple[str, ...]):
        self.signer = signer
        self.resolver = resolver
        self.spf = spf
        self.hostname = hostname
        self.source_addresses = source_addresses

    async def decide(self, sender: Address | None, from_domain: str | None, signing_domain: str | None) -> Decision:
        """Decide for mail from the envelope `sender` (None: the null sender) with this From domain.

        `signing_domain` is the d= domain of the DKIM signature relayd added
        to the message, or None when it added none.
        """
        if from_domain is None:
            return Decision(None, False, reason=NO_AUTHOR_DOMAIN)

        # A signature by the From domain itself aligns under either adkim
        # mode, so the common case needs no DNS look-up.
        if signing_domain == from_domain:
            return Decision(from_domain, True, "dkim")

        try:
            dmarc = await discover(self.resolver, from_domain)
            dkim_problem = self._dkim_problem(from_domain, signing_domain, dmarc.adkim)
            if dkim_problem is None:
                return Decision(from_domain, True, "dkim")
            spf_problem = await self._spf_problem(from_domain, sender, dmarc.aspf)
        except TemporaryFailure as exc:
            return Decision(from_domain, False, reason=f"a DNS look-up failed: {exc}", temporary=True)

        if spf_problem is None:
            return Decision(from_domain, True, "spf")
        return Decision(from_domain, False, reason=f"{dkim_problem}, and {spf_problem}")

    def _dkim_problem(self, from_domain: str, signing_domain: str | None, mode: str) -> str | None:
        """Return why the message has no aligned DKIM signature, or None when it has one."""
        if signing_domain is not None and is_aligned(signing_domain, from_domain, mode):
            return None
        if signing_domain is not None:
            return _dkim_unaligned(signing_domain, from_domain, mode)

        # The signer logs dkim_sign_failed when a configured key could not sign.
        keys = self.signer.keys_for(from_domain)
        if keys:
            return f"signing with the DKIM key of {keys[0].domain} failed"
        return f"no DKIM key for {from_domain} or a parent domain is configured"

    async def _spf_problem(self, from_domain: str, sender: Address | None, mode: str) -> str | None:
        """Return why SPF does not give an aligned pass, or None when it does; raise TemporaryFailure."""
        # RFC 7208 2.4: for the null sender, SPF checks the HELO name.
        spf_domain = sender.ascii_domain if sender else self.hostname
        if sender is not None and sender.is_literal:
            return f"the envelope sender domain {spf_domain} is an address literal, which SPF cannot check"
        if not is_aligned(spf_domain, from_domain, mode):
            return _spf_unaligned(spf_domain, from_domain, mode)

        addresses = await source_addresses(self.resolver, self.source_addresses, self.hostname)
        if not addresses:
            return no_source_addresses(self.hostname)
        results = await self.spf.check(addresses, sender.for_delivery() if sender else "")

        failed = [result for result in results if result.result not in ("pass", "temperror")]
        if failed:
            return describe_spf_failure(spf_domain, failed[0])
        for result in results:
            if result.result == "temperror":
                raise TemporaryFailure(f"SPF for {spf_domain}: {result.explanation}")
        return None



async def source_addresses(resolver: Resolver, configured: tuple[str, ...], hostname: str) -> list[str]:
    """Return this relay's outbound addresses: `configured`, or else the addresses of `hostname`.

    Raise TemporaryFailure when the look-up fails for a transient reason.
    """
    if configured:
        return list(configured)
    try:
        return await resolver.addresses(hostname)
    except NotFound:
        return []


def no_source_addresses(hostname: str) -> str:
    return (
        f"server.hostname {hostname} has no A or AAAA record, so the addresses SPF must "
        "authorize are unknown (set delivery.source_addresses)"
    )


def _dkim_unaligned(signing_domain: str, from_domain: str, mode: str) -> str:
    if mode == STRICT:
        return f"the DKIM key domain {signing_domain} is not {from_domain}, as strict alignment (adkim=s) requires"
    return f"the DKIM key domain {signing_domain} is not in the organizational domain of {from_domain}"


def _spf_unaligned(spf_domain: str, from_domain: str, mode: str) -> str:
    if mode == STRICT:
        return f"the envelope sender domain {spf_domain} is not {from_domain}, as strict alignment (aspf=s) requires"
    return f"the envelope sender domain {spf_domain} is not in the organizational domain of {from_domain}"


def describe_spf_failure(spf_domain: str, result: SpfResult) -> str:
    """Return a clause saying why SPF for `spf_domain` gave `result` instead of pass."""
    if result.result == "none":
        return f"{spf_domain} publishes no SPF record"
    if result.result == "permerror":
        detail = result.explanation.removeprefix("SPF Permanent Error: ")
        return f"the SPF record of {spf_domain} is invalid ({detail})"
    if result.result == "temperror":
        return f"SPF for {spf_domain} could not be evaluated for {result.address}: {result.explanation}"
    return f"SPF for {spf_domain} does not authorize {result.address} ({result.result})"
