"""Alignment decisions against zones served by a real dnsmasq on loopback."""

from pathlib import Path

import dns.resolver
import pytest

from relayd.addresses import parse_path
from relayd.alignment.policy import AlignmentPolicy, rejection_reply
from relayd.alignment.preflight import NO_AUTHOR_DOMAIN, Decision, Preflight
from relayd.alignment.spf import SpfChecker
from relayd.config.model import DkimKey, DnsConfig
from relayd.config.units import HostPort
from relayd.delivery.dns import Resolver
from relayd.dkim.keys import generate_key, load_key, write_private_file
from relayd.dkim.signer import Signer
from tests.support.dns import DnsServer

RELAY_ADDRESS = "192.0.2.10"
OTHER_ADDRESS = "198.51.100.7"
HOSTNAME = "relay.spf.test"

# Domains with a configured signing key.
KEY_DOMAINS = ("signed.test", "parent.test", "strictparent.test", "nodmarcparent.test")


def add_zones(server: DnsServer) -> None:
    """Add every zone the decision table uses."""
    # DKIM: DMARC records of parents with a key, read for sub.<parent> From domains.
    server.add_txt("_dmarc.parent.test", "v=DMARC1; p=reject")
    server.add_txt("_dmarc.strictparent.test", "v=DMARC1; p=reject; adkim=s")

    # SPF, aligned or not, with the relay's address or another one.
    server.add_txt("_dmarc.spf.test", "v=DMARC1; p=quarantine")
    server.add_txt("spf.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")
    server.add_txt("bounce.spf.test", "v=spf1 ip4:192.0.2.0/24 -all")
    server.add_txt(HOSTNAME, f"v=spf1 ip4:{RELAY_ADDRESS} -all")
    server.add_txt("_dmarc.strictspf.test", "v=DMARC1; p=reject; aspf=s")
    server.add_txt("bounce.strictspf.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")
    server.add_txt("softfail.test", f"v=spf1 ip4:{OTHER_ADDRESS} ~all")
    server.add_txt("fail.test", f"v=spf1 ip4:{OTHER_ADDRESS} -all")
    server.add_txt("neutral.test", f"v=spf1 ip4:{OTHER_ADDRESS} ?all")

    # include: chains, two levels deep.
    server.add_txt("include.test", "v=spf1 include:_spf1.include.test -all")
    server.add_txt("_spf1.include.test", f"v=spf1 ip4:{OTHER_ADDRESS} include:_spf2.include.test -all")
    server.add_txt("_spf2.include.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")

    # RFC 7208 4.6.4: 10 DNS-querying terms pass, 11 are a permerror.
    for count, domain in ((10, "tenlookups.test"), (11, "toomany.test")):
        includes = [f"include:l{n}.{domain}" for n in range(1, count)]
        server.add_txt(domain, "v=spf1 " + " ".join(includes) + f" include:ok.{domain} -all")
        for n in range(1, count):
            server.add_txt(f"l{n}.{domain}", f"v=spf1 ip4:{OTHER_ADDRESS} -all")
        server.add_txt(f"ok.{domain}", f"v=spf1 ip4:{RELAY_ADDRESS} -all")

    # No DMARC record anywhere: both modes stay relaxed.
    server.add_txt("nodmarc.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")
    server.add_txt("bounce.nodmarc.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")

    # p=none changes nothing about alignment.
    server.add_txt("_dmarc.pnone.test", "v=DMARC1; p=none; aspf=s")
    server.add_txt("pnone.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")
    server.add_txt("bounce.pnone.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")

    # Outbound addresses from server.hostname's A record.
    server.add_a("relay.hosted.test", "192.0.2.20")
    server.add_txt("hosted.test", "v=spf1 a:relay.hosted.test -all")

    server.add_servfail("broken.test")
    server.add_txt("tempspf.test", "v=spf1 include:broken.test -all")


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory):
    server = DnsServer(tmp_path_factory.mktemp("dns"), ttl=300)
    add_zones(server)
    with server:
        yield server


@pytest.fixture(scope="module")
def signer(tmp_path_factory) -> Signer:
    directory = tmp_path_factory.mktemp("keys")
    keys = []
    for domain in KEY_DOMAINS:
        path = Path(directory) / f"{domain}.key"
        write_private_file(path, generate_key("ed25519-sha256"))
        keys.append(load_key(DkimKey(domain, "s1", path, "ed25519-sha256")))
    return Signer(keys)


def make_preflight(server: DnsServer, signer: Signer, hostname=HOSTNAME, addresses=(RELAY_ADDRESS,)) -> Preflight:
    config = DnsConfig(nameservers=(HostPort(server.host, server.port),), timeout=2.0)
    return Preflight(signer, Resolver(config), SpfChecker(config, helo=hostname), hostname, addresses)


def sender(text: str | None):
    return parse_path(text, smtputf8=False, role="sender") if text else None


def signing_domain(signer: Signer, from_domain: str | None) -> str | None:
    """Return the d= domain the signer would use for this From domain, as the handler passes it."""
    keys = signer.keys_for(from_domain) if from_domain else []
    return keys[0].domain if keys else None


async def decide(preflight: Preflight, envelope_sender: str | None, from_domain: str | None):
    return await preflight.decide(sender(envelope_sender), from_domain, signing_domain(preflight.signer, from_domain))


# (envelope sender or None for <>, From domain, aligned, mechanism, text the reason contains)
DECISIONS = {
    "dkim key for from domain": ("app@elsewhere.test", "signed.test", True, "dkim", ""),
    "dkim parent key relaxed": ("app@elsewhere.test", "news.parent.test", True, "dkim", ""),
    "dkim parent key strict": (
        "app@elsewhere.test",
        "news.strictparent.test",
        False,
        "",
        "the DKIM key domain strictparent.test is not news.strictparent.test, as strict alignment (adkim=s) requires",
    ),
    "spf only": ("app@spf.test", "spf.test", True, "spf", ""),
    "spf subdomain relaxed": ("app@bounce.spf.test", "spf.test", True, "spf", ""),
    "spf subdomain strict": (
        "app@bounce.strictspf.test",
        "strictspf.test",
        False,
        "",
        "the envelope sender domain bounce.strictspf.test is not strictspf.test, as strict alignment (aspf=s) requires",
    ),
    "spf null sender uses hostname": (None, "spf.test", True, "spf", ""),
    "spf include chain": ("app@include.test", "include.test", True, "spf", ""),
    "spf softfail": ("app@softfail.test", "softfail.test", False, "", f"SPF for softfail.test does not authorize {RELAY_ADDRESS} (softfail)"),
    "spf fail": ("app@fail.test", "fail.test", False, "", f"SPF for fail.test does not authorize {RELAY_ADDRESS} (fail)"),
    "spf neutral": ("app@neutral.test", "neutral.test", False, "", f"SPF for neutral.test does not authorize {RELAY_ADDRESS} (neutral)"),
    "spf ten lookups": ("app@tenlookups.test", "tenlookups.test", True, "spf", ""),
    "spf too many lookups": (
        "app@toomany.test",
        "toomany.test",
        False,
        "",
        "the SPF record of toomany.test is invalid (Too many DNS lookups)",
    ),
    "spf none": ("app@nospf.test", "nospf.test", False, "", "nospf.test publishes no SPF record"),
    "no dmarc record dkim relaxed": ("app@elsewhere.test", "news.nodmarcparent.test", True, "dkim", ""),
    "no dmarc record spf relaxed": ("app@bounce.nodmarc.test", "nodmarc.test", True, "spf", ""),
    "p=none spf aligned": ("app@pnone.test", "pnone.test", True, "spf", ""),
    "p=none still strict": (
        "app@bounce.pnone.test",
        "pnone.test",
        False,
        "",
        "the envelope sender domain bounce.pnone.test is not pnone.test, as strict alignment (aspf=s) requires",
    ),
    "neither": (
        "app@other.test",
        "nothing.test",
        False,
        "",
        "no DKIM key for nothing.test or a parent domain is configured, and the envelope sender domain "
        "other.test is not in the organizational domain of nothing.test",
    ),
    "no single from domain": ("app@spf.test", None, False, "", NO_AUTHOR_DOMAIN),
}


@pytest.mark.parametrize("case", DECISIONS)
async def test_decision(dns_server, signer, case):
    envelope_sender, from_domain, aligned, mechanism, reason = DECISIONS[case]
    preflight = make_preflight(dns_server, signer)

    decision = await decide(preflight, envelope_sender, from_domain)
    preflight.spf.close()

    assert decision.aligned is aligned, decision.reason
    assert decision.mechanism == mechanism
    assert reason in decision.reason
    assert decision.temporary is False


async def test_failure_names_both_mechanisms(dns_server, signer):
    preflight = make_preflight(dns_server, signer)

    decision = await decide(preflight, "app@softfail.test", "softfail.test")

    assert decision.reason == (
        "no DKIM key for softfail.test or a parent domain is configured, "
        f"and SPF for softfail.test does not authorize {RELAY_ADDRESS} (softfail)"
    )


async def test_dkim_exact_domain_needs_no_dns(dns_server, signer):
    preflight = make_preflight(dns_server, signer)
    before = dns_server.read_log()

    decision = await decide(preflight, "app@elsewhere.test", "signed.test")

    assert decision.aligned
    assert dns_server.read_log() == before


async def test_signing_failure_named(dns_server, signer):
    preflight = make_preflight(dns_server, signer)

    decision = await preflight.decide(sender("app@other.test"), "news.parent.test", None)

    assert not decision.aligned
    assert decision.reason.startswith("signing with the DKIM key of parent.test failed, and ")


async def test_every_address_must_pass(dns_server, signer):
    preflight = make_preflight(dns_server, signer, addresses=(RELAY_ADDRESS, OTHER_ADDRESS))

    decision = await decide(preflight, "app@spf.test", "spf.test")

    assert not decision.aligned
    assert f"SPF for spf.test does not authorize {OTHER_ADDRESS} (fail)" in decision.reason


async def test_addresses_from_hostname(dns_server, signer):
    preflight = make_preflight(dns_server, signer, hostname="relay.hosted.test", addresses=())

    decision = await decide(preflight, "app@hosted.test", "hosted.test")

    assert decision.aligned
    assert decision.mechanism == "spf"


async def test_hostname_without_address(dns_server, signer):
    preflight = make_preflight(dns_server, signer, hostname="noaddress.spf.test", addresses=())

    decision = await decide(preflight, "app@spf.test", "spf.test")

    assert not decision.aligned
    assert "server.hostname noaddress.spf.test has no A or AAAA record" in decision.reason
    assert "delivery.source_addresses" in decision.reason


async def test_servfail_is_temporary(dns_server, signer):
    preflight = make_preflight(dns_server, signer)

    decision = await decide(preflight, "app@broken.test", "broken.test")

    assert not decision.aligned
    assert decision.temporary
    assert "_dmarc.broken.test" in decision.reason


async def test_spf_servfail_is_temporary(dns_server, signer):
    preflight = make_preflight(dns_server, signer)

    decision = await decide(preflight, "app@tempspf.test", "tempspf.test")

    assert not decision.aligned
    assert decision.temporary
    assert "SPF for tempspf.test" in decision.reason


async def test_spf_uses_configured_nameserver_with_cache(dns_server, signer):
    make_preflight(dns_server, signer)

    resolver = dns.resolver.get_default_resolver()

    assert [(ns.address, ns.port) for ns in resolver.nameservers] == [(dns_server.host, dns_server.port)]
    assert isinstance(resolver.cache, dns.resolver.Cache)


async def test_answers_cached_for_ttl(dns_server, signer):
    preflight = make_preflight(dns_server, signer)
    await decide(preflight, "app@include.test", "include.test")
    await decide(preflight, "app@spf.test", "spf.test")
    log = dns_server.read_log()

    await decide(preflight, "app@include.test", "include.test")
    await decide(preflight, "app@spf.test", "spf.test")

    # dnsmasq serves these records with a 300 s TTL, and dnspython caches
    # NXDOMAIN without an SOA record (_dmarc.include.test) for 300 s.
    queries = ("query[TXT] _spf2.include.test", "query[TXT] _dmarc.include.test", "query[TXT] spf.test", "query[TXT] _dmarc.spf.test")
    for query in queries:
        assert dns_server.read_log().count(query) == log.count(query), query


def decision_for(reason: str, domain: str | None = "example.com", temporary: bool = False) -> Decision:
    return Decision(domain, False, reason=reason, temporary=temporary)


def test_rejection_reply_names_domain_and_reason():
    reply = rejection_reply(decision_for("no DKIM key for example.com or a parent domain is configured"))

    assert reply.code == 550
    assert reply.enhanced == "5.7.26"
    assert "mail from example.com would fail DMARC because no DKIM key for example.com" in reply.text


def test_rejection_reply_temporary():
    reply = rejection_reply(decision_for("a DNS look-up failed", temporary=True))

    assert (reply.code, reply.enhanced) == (451, "4.4.3")
    assert "example.com" in reply.text
    assert reply.text.endswith("try again later")


def test_rejection_reply_without_from_domain():
    reply = rejection_reply(decision_for(NO_AUTHOR_DOMAIN, domain=None))

    assert (reply.code, reply.enhanced) == (550, "5.7.1")
    assert "exactly one address" in reply.text


def test_rejection_reply_printable_and_bounded():
    reply = rejection_reply(decision_for("the SPF record is invalid (bad\r\nRSET " + "x" * 600 + ")"))

    line = str(reply)
    assert "\r" not in line
    assert "\n" not in line
    assert len(line) <= 510
    assert line.endswith("...")


async def test_policy_off_skips_check():
    policy = AlignmentPolicy("off")

    rejection = await policy.check(None, b"From: a@example.com\r\n\r\nhi\r\n", None, queue_id="Q", client="127.0.0.1")

    assert rejection is None
    assert policy.failures == 0


async def test_policy_reject_counts_and_rejects(dns_server, signer):
    policy = AlignmentPolicy("reject", make_preflight(dns_server, signer))
    content = b"From: App <app@fail.test>\r\nSubject: x\r\n\r\nhi\r\n"

    rejection = await policy.check(sender("app@fail.test"), content, None, queue_id="Q", client="127.0.0.1")
    policy.close()

    assert rejection is not None
    assert rejection.from_domain == "fail.test"
    assert rejection.reply.code == 550
    assert policy.failures == 1


async def test_policy_reject_accepts_aligned(dns_server, signer):
    policy = AlignmentPolicy("reject", make_preflight(dns_server, signer))
    content = b"From: app@signed.test\r\n\r\nhi\r\n"

    rejection = await policy.check(sender("app@signed.test"), content, "signed.test", queue_id="Q", client="127.0.0.1")
    policy.close()

    assert rejection is None
    assert policy.failures == 0
