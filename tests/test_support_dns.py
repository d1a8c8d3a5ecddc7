"""Checks that tests.support.dns.DnsServer returns what relayd's MX lookups expect."""

import subprocess
import time

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.resolver
import pytest

from tests.support.dns import DnsServer


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory):
    server = DnsServer(tmp_path_factory.mktemp("dns"))
    server.add_mx("mail.test", "mx1.mail.test", 10)
    server.add_mx("mail.test", "mx2.mail.test", 20)
    server.add_a("mx1.mail.test", "127.0.0.2")
    server.add_a("mx2.mail.test", "127.0.0.3")
    server.add_a("mx2.mail.test", "127.0.0.4")
    server.add_aaaa("mx2.mail.test", "::1")
    server.add_a("implicit.test", "127.0.0.5")
    server.add_null_mx("nullmx.test")
    server.add_txt("mail.test", "v=spf1 ip4:127.0.0.2 -all")
    server.add_txt("quoted.test", 'a, "b"', "back\\slash")
    server.add_mx("outside.example", "mx1.mail.test", 5)
    server.add_servfail("broken.test")
    server.add_timeout("slow.test")
    with server:
        yield server


def make_resolver(server, lifetime=2.0):
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = server.nameservers
    resolver.lifetime = lifetime
    return resolver


def query_raw(server, name, rdtype):
    request = dns.message.make_query(name, rdtype)
    return dns.query.udp(request, server.host, port=server.port, timeout=2)


async def test_mx_records_with_preferences(dns_server):
    answer = await make_resolver(dns_server).resolve("mail.test", "MX")

    pairs = sorted((rr.preference, rr.exchange.to_text()) for rr in answer)
    assert pairs == [(10, "mx1.mail.test."), (20, "mx2.mail.test.")]


async def test_a_records(dns_server):
    resolver = make_resolver(dns_server)

    single = await resolver.resolve("mx1.mail.test", "A")
    several = await resolver.resolve("mx2.mail.test", "A")

    assert [rr.address for rr in single] == ["127.0.0.2"]
    assert sorted(rr.address for rr in several) == ["127.0.0.3", "127.0.0.4"]


async def test_aaaa_record(dns_server):
    answer = await make_resolver(dns_server).resolve("mx2.mail.test", "AAAA")

    assert [rr.address for rr in answer] == ["::1"]


async def test_answers_are_authoritative(dns_server):
    response = query_raw(dns_server, "mail.test", "MX")

    assert response.flags & dns.flags.AA


async def test_implicit_mx_has_no_mx_answer(dns_server):
    resolver = make_resolver(dns_server)

    with pytest.raises(dns.resolver.NoAnswer):
        await resolver.resolve("implicit.test", "MX")
    address = await resolver.resolve("implicit.test", "A")

    assert [rr.address for rr in address] == ["127.0.0.5"]


async def test_null_mx_is_preference_zero_root(dns_server):
    answer = await make_resolver(dns_server).resolve("nullmx.test", "MX")

    records = list(answer)
    assert len(records) == 1
    assert records[0].preference == 0
    assert records[0].exchange == dns.name.root


async def test_null_mx_rdata_is_three_zero_bytes(dns_server):
    response = query_raw(dns_server, "nullmx.test", "MX")

    rdata = response.answer[0][0]
    assert rdata.to_wire() == b"\x00\x00\x00"


async def test_null_mx_domain_has_no_address(dns_server):
    with pytest.raises(dns.resolver.NoAnswer):
        await make_resolver(dns_server).resolve("nullmx.test", "A")


@pytest.mark.parametrize("name", ["unknown.test", "sub.mx1.mail.test", "nowhere.example.org"])
async def test_unknown_name_is_nxdomain(dns_server, name):
    started = time.monotonic()

    with pytest.raises(dns.resolver.NXDOMAIN):
        await make_resolver(dns_server).resolve(name, "MX")

    assert time.monotonic() - started < 1.0


async def test_records_outside_test_zone(dns_server):
    answer = await make_resolver(dns_server).resolve("outside.example", "MX")

    assert [rr.exchange.to_text() for rr in answer] == ["mx1.mail.test."]


async def test_txt_records(dns_server):
    resolver = make_resolver(dns_server)

    spf = await resolver.resolve("mail.test", "TXT")
    quoted = await resolver.resolve("quoted.test", "TXT")

    assert [rr.strings for rr in spf] == [(b"v=spf1 ip4:127.0.0.2 -all",)]
    assert [rr.strings for rr in quoted] == [(b'a, "b"', b"back\\slash")]


@pytest.mark.parametrize("name", ["broken.test", "mx.broken.test"])
async def test_servfail_domain(dns_server, name):
    started = time.monotonic()

    with pytest.raises(dns.resolver.NoNameservers) as raised:
        await make_resolver(dns_server).resolve(name, "MX")

    assert "SERVFAIL" in str(raised.value)
    assert time.monotonic() - started < 1.0


async def test_servfail_rcode_on_wire(dns_server):
    response = query_raw(dns_server, "broken.test", "MX")

    assert response.rcode() == dns.rcode.SERVFAIL


@pytest.mark.parametrize("name", ["slow.test", "mx.slow.test"])
async def test_timeout_domain(dns_server, name):
    started = time.monotonic()

    with pytest.raises(dns.resolver.LifetimeTimeout):
        await make_resolver(dns_server, lifetime=0.5).resolve(name, "MX")

    assert time.monotonic() - started < 2.0


def test_sync_resolver_works_too(dns_server):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = dns_server.nameservers

    answer = resolver.resolve("mx1.mail.test", "A")

    assert [rr.address for rr in answer] == ["127.0.0.2"]


def test_tcp_answers(dns_server):
    request = dns.message.make_query("mail.test", "MX")

    response = dns.query.tcp(request, dns_server.host, port=dns_server.port, timeout=2)

    assert len(response.answer[0]) == 2


def test_address_format(dns_server):
    assert dns_server.address == f"127.0.0.1:{dns_server.port}"


def test_query_log_lists_queries(dns_server):
    query_raw(dns_server, "logged.test", "A")

    assert "query[A] logged.test" in dns_server.read_log()


def dnsmasq_pids():
    result = subprocess.run(["pgrep", "-x", "dnsmasq"], capture_output=True, text=True)
    return set(result.stdout.split())


def test_stop_ends_dnsmasq(tmp_path):
    server = DnsServer(tmp_path)
    server.add_a("host.test", "127.0.0.2")
    server.add_servfail("broken.test")
    server.add_timeout("slow.test")

    server.start()
    pid = (tmp_path / "dnsmasq" / "dnsmasq.pid").read_text().strip()
    port = server.port
    server.stop()

    assert pid not in dnsmasq_pids()
    assert server.port is None
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(dns.message.make_query("host.test", "A"), "127.0.0.1", port=port, timeout=0.3)


def test_restart_serves_new_records(tmp_path):
    server = DnsServer(tmp_path)
    server.add_a("first.test", "127.0.0.2")

    with server:
        first_port = server.port
    server.add_a("second.test", "127.0.0.3")
    with server:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = server.nameservers
        answer = resolver.resolve("second.test", "A")

    assert first_port is not None
    assert [rr.address for rr in answer] == ["127.0.0.3"]


@pytest.mark.parametrize("name", ["bad,name.test", "bad name.test", "a/b.test", "-x.test", ""])
def test_invalid_names_rejected(tmp_path, name):
    server = DnsServer(tmp_path)

    with pytest.raises(ValueError):
        server.add_a(name, "127.0.0.2")


def test_invalid_address_rejected(tmp_path):
    server = DnsServer(tmp_path)

    with pytest.raises(ValueError):
        server.add_a("host.test", "::1")
    with pytest.raises(ValueError):
        server.add_aaaa("host.test", "127.0.0.1")
