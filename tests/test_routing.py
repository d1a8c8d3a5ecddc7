"""Tests for relayd.delivery.routing.Router with a fake resolver (no DNS traffic)."""

import random

import pytest

from relayd.config.model import Route
from relayd.delivery import dns
from relayd.delivery.routing import MxHost, RouteError, Router

DEFAULT_PORT = 2525


class FakeResolver:
    """Resolver stand-in that looks names up in dictionaries.

    A list value is returned, an exception value is raised, and a name not in the dictionary raises NotFound.
    """

    def __init__(self, mx=None, addresses=None):
        self.mx_answers = mx or {}
        self.address_answers = addresses or {}
        self.queries = []

    async def mx(self, domain):
        self.queries.append(("MX", domain))
        return self._answer(self.mx_answers, domain)

    async def addresses(self, host):
        self.queries.append(("ADDR", host))
        return self._answer(self.address_answers, host)

    @staticmethod
    def _answer(table, name):
        if name not in table:
            raise dns.NotFound(f"{name} does not exist (NXDOMAIN)")
        answer = table[name]
        if isinstance(answer, Exception):
            raise answer
        return list(answer)


def _router(resolver, routes=None, seed=0):
    return Router(routes or {}, DEFAULT_PORT, resolver, random.Random(seed))


async def _route_error(router, domain) -> RouteError:
    with pytest.raises(RouteError) as raised:
        await router.hosts_for(domain)
    return raised.value


ROUTES = {
    "example.com": Route("192.0.2.10", 2526),
    "*": Route("smarthost.example", 587),
}


async def test_route_exact_beats_wildcard():
    resolver = FakeResolver(addresses={"smarthost.example": ["192.0.2.99"]})

    hosts = await _router(resolver, ROUTES).hosts_for("example.com")

    assert hosts == [MxHost("192.0.2.10", 0, ("192.0.2.10",), 2526)]
    assert resolver.queries == []


async def test_route_wildcard_otherwise():
    resolver = FakeResolver(addresses={"smarthost.example": ["2001:db8::1", "192.0.2.99"]})

    hosts = await _router(resolver, ROUTES).hosts_for("example.org")

    assert hosts == [MxHost("smarthost.example", 0, ("2001:db8::1", "192.0.2.99"), 587)]
    assert resolver.queries == [("ADDR", "smarthost.example")]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_route_ip_not_resolved(host):
    resolver = FakeResolver()

    hosts = await _router(resolver, {"example.com": Route(host)}).hosts_for("example.com")

    assert hosts == [MxHost(host, 0, (host,), DEFAULT_PORT)]
    assert resolver.queries == []


async def test_route_name_resolved():
    resolver = FakeResolver(addresses={"relay.example.net": ["192.0.2.20"]})

    hosts = await _router(resolver, {"example.com": Route("relay.example.net")}).hosts_for("example.com")

    assert hosts == [MxHost("relay.example.net", 0, ("192.0.2.20",), DEFAULT_PORT)]


@pytest.mark.parametrize(
    "answer",
    [dns.NotFound("relay.example.net does not exist"), dns.TemporaryFailure("timed out"), []],
    ids=["nxdomain", "temporary", "no address"],
)
async def test_route_name_unresolvable(answer):
    resolver = FakeResolver(addresses={"relay.example.net": answer})

    error = await _route_error(_router(resolver, {"*": Route("relay.example.net")}), "example.com")

    assert error.reply.code == 451
    assert error.reply.enhanced == "4.4.4"
    assert error.permanent is False
    assert "relay.example.net" in error.reply.text


async def test_route_not_used_for_mx():
    resolver = FakeResolver(mx={"example.org": [(10, "mx.example.org")]}, addresses={"mx.example.org": ["192.0.2.1"]})

    hosts = await _router(resolver, {"example.com": Route("192.0.2.10")}).hosts_for("example.org")

    assert hosts == [MxHost("mx.example.org", 10, ("192.0.2.1",), DEFAULT_PORT)]


async def test_mx_sorted_by_preference():
    resolver = FakeResolver(
        mx={"example.com": [(30, "mx3.example.com"), (10, "mx1.example.com"), (20, "mx2.example.com")]},
        addresses={"mx1.example.com": ["192.0.2.1"], "mx2.example.com": ["192.0.2.2"], "mx3.example.com": ["192.0.2.3"]},
    )

    hosts = await _router(resolver).hosts_for("example.com")

    assert [(host.name, host.preference) for host in hosts] == [
        ("mx1.example.com", 10),
        ("mx2.example.com", 20),
        ("mx3.example.com", 30),
    ]
    assert all(host.port == DEFAULT_PORT for host in hosts)


async def test_mx_equal_preference_shuffled():
    resolver = FakeResolver(
        mx={"example.com": [(10, "a.example.com"), (10, "b.example.com"), (5, "first.example.com"), (20, "z.example.com")]},
        addresses={name: ["192.0.2.1"] for name in ["a.example.com", "b.example.com", "first.example.com", "z.example.com"]},
    )
    orders = set()

    for seed in range(20):
        hosts = await _router(resolver, seed=seed).hosts_for("example.com")
        names = [host.name for host in hosts]
        assert names[0] == "first.example.com"
        assert names[3] == "z.example.com"
        orders.add(tuple(names[1:3]))

    assert orders == {("a.example.com", "b.example.com"), ("b.example.com", "a.example.com")}


async def test_implicit_mx_on_nodata():
    resolver = FakeResolver(
        mx={"example.com": dns.NoData("example.com has no MX record")},
        addresses={"example.com": ["2001:db8::25", "192.0.2.25"]},
    )

    hosts = await _router(resolver).hosts_for("example.com")

    assert hosts == [MxHost("example.com", 0, ("2001:db8::25", "192.0.2.25"), DEFAULT_PORT)]


async def test_implicit_mx_nxdomain():
    resolver = FakeResolver(mx={"example.com": dns.NoData("no MX")})

    error = await _route_error(_router(resolver), "example.com")

    assert error.reply.code == 550
    assert error.reply.enhanced == "5.1.2"
    assert error.permanent is True


async def test_implicit_mx_no_address():
    resolver = FakeResolver(mx={"example.com": dns.NoData("no MX")}, addresses={"example.com": []})

    error = await _route_error(_router(resolver), "example.com")

    assert error.reply.code == 550
    assert error.permanent is True


async def test_implicit_mx_temporary_failure():
    resolver = FakeResolver(
        mx={"example.com": dns.NoData("no MX")}, addresses={"example.com": dns.TemporaryFailure("SERVFAIL")}
    )

    error = await _route_error(_router(resolver), "example.com")

    assert error.reply.code == 451
    assert error.reply.enhanced == "4.4.3"
    assert error.permanent is False


@pytest.mark.parametrize("exchange", [".", ""], ids=["dot", "empty"])
async def test_null_mx_permanent(exchange):
    resolver = FakeResolver(mx={"example.com": [(0, exchange)]})

    error = await _route_error(_router(resolver), "example.com")

    assert error.reply.code == 556
    assert error.reply.enhanced == "5.1.10"
    assert error.permanent is True
    assert resolver.queries == [("MX", "example.com")]


async def test_nxdomain_permanent():
    resolver = FakeResolver()

    error = await _route_error(_router(resolver), "missing.example")

    assert error.reply.code == 550
    assert error.reply.enhanced == "5.1.2"
    assert error.reply.command == "DNS"
    assert error.permanent is True


async def test_mx_temporary_failure_transient():
    resolver = FakeResolver(mx={"example.com": dns.TemporaryFailure("example.com MX look-up timed out")})

    error = await _route_error(_router(resolver), "example.com")

    assert error.reply.code == 451
    assert error.reply.enhanced == "4.4.3"
    assert error.permanent is False
    assert "timed out" in error.reply.text


@pytest.mark.parametrize(
    "dead_answer",
    [[], dns.NotFound("dead.example.com does not exist"), dns.TemporaryFailure("SERVFAIL")],
    ids=["no address", "nxdomain", "temporary"],
)
async def test_mx_without_address_skipped(dead_answer):
    resolver = FakeResolver(
        mx={"example.com": [(10, "dead.example.com"), (20, "alive.example.com")]},
        addresses={"dead.example.com": dead_answer, "alive.example.com": ["192.0.2.2"]},
    )

    hosts = await _router(resolver).hosts_for("example.com")

    assert hosts == [MxHost("alive.example.com", 20, ("192.0.2.2",), DEFAULT_PORT)]


async def test_all_mx_skipped_transient():
    resolver = FakeResolver(
        mx={"example.com": [(10, "a.example.com"), (20, "b.example.com"), (30, "c.example.com")]},
        addresses={"a.example.com": [], "b.example.com": dns.TemporaryFailure("b.example.com A look-up timed out")},
    )

    error = await _route_error(_router(resolver), "example.com")

    assert error.reply.code == 451
    assert error.reply.enhanced == "4.4.4"
    assert error.permanent is False
    assert "c.example.com does not exist" in error.reply.text


async def test_all_mx_without_address_transient():
    resolver = FakeResolver(
        mx={"example.com": [(10, "a.example.com"), (20, "b.example.com")]},
        addresses={"a.example.com": [], "b.example.com": []},
    )

    error = await _route_error(_router(resolver), "example.com")

    assert error.reply.code == 451
    assert error.reply.enhanced == "4.4.4"
    assert error.permanent is False


@pytest.mark.parametrize("self_answer", [[], dns.NotFound("example.com has no address")], ids=["no address", "nxdomain"])
async def test_mx_naming_domain_skipped(self_answer):
    resolver = FakeResolver(
        mx={"example.com": [(10, "example.com"), (20, "backup.example.com")]},
        addresses={"example.com": self_answer, "backup.example.com": ["192.0.2.2"]},
    )

    hosts = await _router(resolver).hosts_for("example.com")

    assert hosts == [MxHost("backup.example.com", 20, ("192.0.2.2",), DEFAULT_PORT)]
