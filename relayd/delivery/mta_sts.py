"""MTA-STS (RFC 8461): a domain's published demand for verified TLS to its MX hosts.

The `_mta-sts` TXT record announces a policy and its id; the policy itself
is fetched over HTTPS from `mta-sts.<domain>` with the certificate verified,
and cached for its max_age. In `enforce` mode relayd delivers only to MX
hosts the policy lists, only over TLS with a certificate valid for the MX
host name, and defers otherwise.
"""

import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp
import aiohttp.abc
import structlog

from relayd.delivery import dns

log = structlog.get_logger("relayd.delivery")

# RFC 8461 3.2: a policy may be cached for at most one year.
MAX_AGE_LIMIT = 31_557_600
# RFC 8461 3.3: senders should not wait more than a minute for the fetch, and
# a policy body is small; 64 KiB is the limit the RFC suggests.
FETCH_TIMEOUT = 20.0
MAX_POLICY_OCTETS = 64 * 1024
_TXT_ID = re.compile(r"^v=STSv1;\s*id=([A-Za-z0-9]{1,32});?", re.ASCII)


@dataclass(frozen=True)
class StsPolicy:
    domain: str
    policy_id: str
    mode: str  # enforce, testing or none
    mx: tuple[str, ...]
    max_age: int
    fetched_at: float

    def expired(self, now: float) -> bool:
        return now >= self.fetched_at + self.max_age

    def matches(self, host: str) -> bool:
        """Tell whether MX host `host` is allowed; RFC 8461 4.1: "*." covers exactly one label."""
        host = host.lower().rstrip(".")
        for pattern in self.mx:
            pattern = pattern.lower().rstrip(".")
            if pattern.startswith("*."):
                head, _, tail = host.partition(".")
                if head and tail == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


class PolicyError(Exception):
    """A policy that could not be fetched or parsed."""


def parse_policy(domain: str, policy_id: str, text: str, now: float) -> StsPolicy:
    """Parse an RFC 8461 3.2 policy body; raise PolicyError when it is invalid."""
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(f"invalid policy line {line!r}")
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("the policy's version is not STSv1")
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"invalid mode {mode!r}")
    max_age_text = (fields.get("max_age") or [""])[0]
    if not max_age_text.isascii() or not max_age_text.isdigit():
        raise PolicyError(f"invalid max_age {max_age_text!r}")
    mx = tuple(fields.get("mx", []))
    if mode != "none" and not mx:
        raise PolicyError("the policy lists no mx")
    return StsPolicy(domain, policy_id, mode, mx, min(int(max_age_text), MAX_AGE_LIMIT), now)


class _DnsResolver(aiohttp.abc.AbstractResolver):
    """Lets aiohttp resolve mta-sts.<domain> through relayd's configured name servers."""

    def __init__(self, resolver: dns.Resolver):
        self.resolver = resolver

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
        try:
            addresses = await self.resolver.addresses(host)
        except (dns.NotFound, dns.TemporaryFailure) as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from exc
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        pass


class MtaSts:
    """Looks up, fetches and caches MTA-STS policies by recipient domain."""

    def __init__(self, resolver: dns.Resolver, ca_file: str | None, clock: Callable[[], float] = time.time):
        self.resolver = resolver
        self.ssl_context = ssl.create_default_context(cafile=ca_file)
        self.clock = clock
        self._cache: dict[str, StsPolicy] = {}

    async def policy(self, domain: str) -> StsPolicy | None:
        """Return the domain's current policy, or None when it publishes none."""
        now = self.clock()
        cached = self._cache.get(domain)
        if cached is not None and cached.expired(now):
            del self._cache[domain]
            cached = None

        policy_id = await self._announced_id(domain)
        if policy_id is None or (cached is not None and cached.policy_id == policy_id):
            # RFC 8461 5.1: without a TXT record a cached policy still applies until it expires.
            return cached
        try:
            policy = await self._fetch(domain, policy_id, now)
        except PolicyError as exc:
            log.warning("mta_sts_fetch_failed", domain=domain, error=str(exc))
            return cached
        self._cache[domain] = policy
        log.info("mta_sts_policy", domain=domain, mode=policy.mode, max_age=policy.max_age, mx=list(policy.mx))
        return policy

    async def _announced_id(self, domain: str) -> str | None:
        try:
            records = await self.resolver.txt(f"_mta-sts.{domain}")
        except (dns.NotFound, dns.NoData):
            return None
        except dns.TemporaryFailure as exc:
            log.info("mta_sts_lookup_failed", domain=domain, error=str(exc))
            return None
        ids = [m.group(1) for m in (_TXT_ID.match(r) for r in records) if m]
        # RFC 8461 3.1: several STSv1 records mean none is valid.
        return ids[0] if len(ids) == 1 else None

    async def _fetch(self, domain: str, policy_id: str, now: float) -> StsPolicy:
        url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
        connector = aiohttp.TCPConnector(resolver=_DnsResolver(self.resolver), ssl=self.ssl_context)
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                # RFC 8461 3.3: no redirects; only a 200 with text/plain counts.
                async with session.get(url, allow_redirects=False) as response:
                    if response.status != 200:
                        raise PolicyError(f"{url} returned HTTP status {response.status}")
                    if response.content_type != "text/plain":
                        raise PolicyError(f"{url} sent {response.content_type}, not text/plain")
                    body = await response.content.read(MAX_POLICY_OCTETS + 1)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise PolicyError(f"fetching {url} failed: {exc}") from exc
        if len(body) > MAX_POLICY_OCTETS:
            raise PolicyError(f"{url} is larger than {MAX_POLICY_OCTETS} bytes")
        return parse_policy(domain, policy_id, body.decode("utf-8", "replace"), now)
