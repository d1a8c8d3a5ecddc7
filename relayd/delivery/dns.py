"""DNS look-ups for delivery and the alignment check, with dnspython's exceptions translated at this edge."""

import asyncio
import time

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from relayd import metrics
from relayd.config.model import DnsConfig


class NotFound(Exception):
    """The name does not exist (NXDOMAIN): permanent."""


class NoData(Exception):
    """The name exists but has no record of the requested type."""


class TemporaryFailure(Exception):
    """SERVFAIL, REFUSED, a time-out or an unreachable server: try again later."""


def configure_resolver(resolver_class: type[dns.resolver.BaseResolver], config: DnsConfig):
    """Build a dnspython resolver on the configured name servers, or the system's, with a TTL cache."""
    if config.nameservers:
        resolver = resolver_class(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.host, ns.port) for ns in config.nameservers]
    else:
        resolver = resolver_class()
    resolver.lifetime = config.timeout
    resolver.timeout = config.timeout
    resolver.cache = dns.resolver.Cache()
    return resolver


class Resolver:
    """MX, address and TXT look-ups on the configured name servers, cached for the records' TTL."""

    def __init__(self, config: DnsConfig):
        self._resolver = configure_resolver(dns.asyncresolver.Resolver, config)

    async def _query(self, name: str, rdtype: str):
        started = time.monotonic()
        failure = None
        try:
            return await self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN as exc:
            failure = "nxdomain"
            raise NotFound(f"{name} does not exist (NXDOMAIN)") from exc
        except dns.resolver.NoAnswer as exc:
            raise NoData(f"{name} has no {rdtype} record") from exc
        except dns.resolver.NoNameservers as exc:
            failure = "servfail"
            raise TemporaryFailure(f"no name server gave a usable response for {name} {rdtype} (SERVFAIL or REFUSED)") from exc
        except dns.exception.Timeout as exc:
            failure = "timeout"
            raise TemporaryFailure(f"{name} {rdtype} look-up timed out") from exc
        except dns.exception.DNSException as exc:
            failure = "error"
            raise TemporaryFailure(f"{name} {rdtype} look-up failed: {exc}") from exc
        finally:
            metrics.record_dns_lookup(rdtype, time.monotonic() - started, failure)

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """Return (preference, exchange) pairs; the exchange "." marks a null MX (RFC 7505)."""
        answer = await self._query(domain, "MX")
        return [(record.preference, record.exchange.to_text(omit_final_dot=True) or ".") for record in answer]

    async def txt(self, name: str) -> list[str]:
        """Return each TXT record of `name` as one string, or [] when there is none.

        A record's character-strings are joined with nothing between them
        (RFC 7208 3.3, RFC 6376 3.6.2.2). Bytes outside ASCII become U+FFFD,
        so they never match a tag. Raise TemporaryFailure on SERVFAIL or a
        time-out.
        """
        try:
            answer = await self._query(name, "TXT")
        except (NotFound, NoData):
            return []
        return [b"".join(record.strings).decode("ascii", "replace") for record in answer]

    async def addresses(self, host: str) -> list[str]:
        """Return the IPv6 then the IPv4 addresses of `host`.

        Raise NotFound when the name does not exist and TemporaryFailure when
        neither look-up succeeded for a transient reason.
        """
        results = await asyncio.gather(self._query(host, "AAAA"), self._query(host, "A"), return_exceptions=True)
        found: list[str] = []
        errors = []
        for result in results:
            if isinstance(result, BaseException):
                errors.append(result)
            else:
                found.extend(record.address for record in result)
        if found:
            return found
        for error in errors:
            if not isinstance(error, (NotFound, NoData, TemporaryFailure)):
                raise error
        if any(isinstance(e, TemporaryFailure) for e in errors):
            raise next(e for e in errors if isinstance(e, TemporaryFailure))
        if all(isinstance(e, NotFound) for e in errors):
            raise NotFound(f"{host} does not exist (NXDOMAIN)")
        return []
