"""SPF (RFC 7208) evaluated with pyspf for this relay's outbound addresses."""

import asyncio
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dns.exception
import dns.resolver
import spf

from relayd.config.model import DnsConfig
from relayd.delivery.dns import configure_resolver

# RFC 7208 4.6.4: at most 10 mechanisms and modifiers that cause DNS
# look-ups; pyspf returns permerror past that.
LOOKUP_LIMIT = spf.MAX_LOOKUP

# Evaluations at once. Each blocks a thread for up to its DNS time-outs, so
# they get their own threads and never hold up the event loop's default
# executor, which also runs getaddrinfo for outbound connections.
MAX_WORKERS = 4

# pyspf 2.0.14 calls dnspython's deprecated dns.resolver.query(); the
# warning names no action relayd could take.
warnings.filterwarnings("ignore", message="please use dns.resolver.resolve", category=DeprecationWarning, module="spf")


@dataclass(frozen=True)
class SpfResult:
    """The SPF result (RFC 7208 2.6) for one client address."""

    address: str
    result: str
    # DNS-querying mechanisms and modifiers evaluated, against LOOKUP_LIMIT.
    lookups: int
    explanation: str = ""


def install_default_resolver(config: DnsConfig) -> dns.resolver.Resolver:
    """Point dnspython's process-wide default resolver at relayd's name servers, with a TTL cache.

    pyspf 2.0.14 queries through dns.resolver.query(), which always uses
    the module's default resolver, so this affects every user of it in the
    process.
    """
    resolver = configure_resolver(dns.resolver.Resolver, config)
    dns.resolver.default_resolver = resolver
    return resolver


class SpfChecker:
    """Evaluates SPF on worker threads, because pyspf blocks on DNS."""

    def __init__(self, config: DnsConfig, helo: str):
        install_default_resolver(config)
        self.helo = helo
        self._timeout = config.timeout
        self._executor = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="spf")

    async def check(self, addresses: list[str], sender: str) -> list[SpfResult]:
        """Evaluate SPF for mail from `sender` sent from each of `addresses`.

        An empty `sender` is the null sender, for which RFC 7208 2.4 checks
        postmaster@ the HELO name instead.
        """
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._executor, self._check, address, sender) for address in addresses]
        return list(await asyncio.gather(*jobs))

    def _check(self, address: str, sender: str) -> SpfResult:
        query = spf.query(i=address, s=sender, h=self.helo, timeout=self._timeout)
        try:
            result, _code, explanation = query.check()
        except dns.exception.DNSException as exc:
            # pyspf turns only time-outs, NXDOMAIN, NODATA and SERVFAIL into results.
            return SpfResult(address, "temperror", query.lookups, f"DNS look-up failed: {exc}")
        return SpfResult(address, result, query.lookups, explanation)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
