"""Next-hop selection for an attempt: a configured route, or the domain's MX hosts."""

import ipaddress
import random
from dataclasses import dataclass
from itertools import groupby
from typing import Mapping

from relayd.config.model import Route
from relayd.delivery import dns
from relayd.reply import Reply


@dataclass(frozen=True)
class MxHost:
    """One next hop: its name (for logs and TLS), preference, addresses and port."""

    name: str
    preference: int
    addresses: tuple[str, ...]
    port: int


class RouteError(Exception):
    """No next hop for a domain; `reply` is recorded for its recipients."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply

    @property
    def permanent(self) -> bool:
        return self.reply.is_permanent


def _dns_reply(code: int, enhanced: str, text: str) -> Reply:
    return Reply(code, enhanced, text, "DNS")


class Router:
    def __init__(self, routes: Mapping[str, Route], default_port: int, resolver: dns.Resolver, rng: random.Random):
        self.routes = routes
        self.default_port = default_port
        self.resolver = resolver
        self.rng = rng

    def is_routed(self, domain: str) -> bool:
        """Tell whether a configured route, not MX records, decides the next hop."""
        return domain in self.routes or "*" in self.routes

    async def hosts_for(self, domain: str) -> list[MxHost]:
        """Return the next hops for `domain` in the order to try them; raise RouteError."""
        route = self.routes.get(domain) or self.routes.get("*")
        if route is not None:
            return [await self._route_host(route)]
        return await self._mx_hosts(domain)

    async def _route_host(self, route: Route) -> MxHost:
        port = route.port or self.default_port
        try:
            ipaddress.ip_address(route.host)
            return MxHost(route.host, 0, (route.host,), port)
        except ValueError:
            pass
        try:
            addresses = await self.resolver.addresses(route.host)
        except (dns.NotFound, dns.TemporaryFailure) as exc:
            raise RouteError(_dns_reply(451, "4.4.4", f"Configured route {route.host}: {exc}")) from exc
        if not addresses:
            raise RouteError(_dns_reply(451, "4.4.4", f"Configured route {route.host} has no address"))
        return MxHost(route.host, 0, tuple(addresses), port)

    async def _mx_hosts(self, domain: str) -> list[MxHost]:
        try:
            records = await self.resolver.mx(domain)
        except dns.NotFound as exc:
            raise RouteError(_dns_reply(550, "5.1.2", f"Domain {domain} does not exist (NXDOMAIN)")) from exc
        except dns.NoData:
            # RFC 5321 5.1: without MX records the domain itself is the
            # implicit MX, with preference 0.
            return [await self._implicit_mx(domain)]
        except dns.TemporaryFailure as exc:
            raise RouteError(_dns_reply(451, "4.4.3", f"MX look-up for {domain} failed: {exc}")) from exc

        # RFC 7505: a null MX ("." as the only exchange) means the domain
        # accepts no mail.
        real = [(pref, host) for pref, host in records if host not in (".", "")]
        if not real:
            raise RouteError(_dns_reply(556, "5.1.10", f"Domain {domain} accepts no mail (null MX, RFC 7505)"))

        hosts = []
        last_error = ""
        for pref, host in self._ordered(real):
            try:
                addresses = await self.resolver.addresses(host)
            except (dns.NotFound, dns.TemporaryFailure) as exc:
                last_error = str(exc)
                continue
            if addresses:
                hosts.append(MxHost(host, pref, tuple(addresses), self.default_port))
        if not hosts:
            detail = f": {last_error}" if last_error else ""
            raise RouteError(_dns_reply(451, "4.4.4", f"No MX host of {domain} has an address{detail}"))
        return hosts

    async def _implicit_mx(self, domain: str) -> MxHost:
        try:
            addresses = await self.resolver.addresses(domain)
        except dns.NotFound as exc:
            raise RouteError(_dns_reply(550, "5.1.2", f"Domain {domain} has no MX and no address record")) from exc
        except dns.TemporaryFailure as exc:
            raise RouteError(_dns_reply(451, "4.4.3", f"Address look-up for {domain} failed: {exc}")) from exc
        if not addresses:
            raise RouteError(_dns_reply(550, "5.4.4", f"Domain {domain} has no MX and no address record"))
        return MxHost(domain, 0, tuple(addresses), self.default_port)

    def _ordered(self, records: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Sort by preference; RFC 5321 5.1: shuffle hosts of equal preference to spread load."""
        ordered = []
        for _, group in groupby(sorted(records), key=lambda record: record[0]):
            same = list(group)
            self.rng.shuffle(same)
            ordered.extend(same)
        return ordered
