"""DKIM signing through the running daemon, verified by dkimpy and by Perl's Mail::DKIM."""

import re
import subprocess
from collections import defaultdict
from pathlib import Path

import dns.nameserver
import dns.resolver
import pytest

from relayd.commands.keygen import txt_strings
from relayd.commands.verify import dkim_results
from relayd.config.model import DkimKey
from relayd.dkim.keys import generate_key, load_key, write_private_file
from relayd.headers import from_domain
from tests.integration.test_corpus import CORPUS, MESSAGES, TOO_LONG, as_submitted

SUPPORT = Path(__file__).resolve().parents[1] / "support"
PERL_VERIFIER = SUPPORT / "dkim_verify.pl"
NODE_VERIFIER = SUPPORT / "mailauth" / "verify.js"
SIGNING_DOMAINS = ["example.com", "example.org", "machine.example", "silly.test", "xn--mchine-bua.example"]
SELECTORS = {"rsa-sha256": "rsa2026", "ed25519-sha256": "ed2026"}
# Messages whose header section no DKIM parser agrees on: dkimpy refuses it,
# so relayd delivers it unsigned and logs dkim_sign_failed.
UNSIGNABLE = {
    "obsolete-syntax-space-before-colon-comments.eml": "a header line '__' that is neither a field nor a continuation",
}
MODES = {"rsa": ["rsa-sha256"], "ed25519": ["ed25519-sha256"], "both": ["rsa-sha256", "ed25519-sha256"]}


@pytest.fixture
def signing_setup(tmp_path, dns_server, sinks):
    """Keys for every From domain in the corpus, published on the test DNS server."""
    key_entries = []
    for domain in SIGNING_DOMAINS:
        for algorithm, selector in SELECTORS.items():
            path = tmp_path / "keys" / f"{domain}.{selector}.key"
            write_private_file(path, generate_key(algorithm))
            key = load_key(DkimKey(domain=domain, selector=selector, key_file=path, algorithm=algorithm))
            dns_server.add_txt(key.record_name, *txt_strings(key.txt_record()))
            key_entries.append({"domain": domain, "selector": selector, "key_file": str(path), "algorithm": algorithm})
    dns_server.start()
    sink = sinks("127.0.0.2")
    return key_entries, sink


def resolver_for(dns_server) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(dns_server.host, dns_server.port)]
    return resolver


def external_results(command: list[str], dns_server, files: list[Path]) -> dict[str, list[tuple[str, str, str]]]:
    """Run a verifier that prints "file result domain selector algorithm" lines.

    Returns file name → [(result, domain, algorithm)] for relayd's own
    selectors; some corpus messages carry their original signatures too.
    """
    output = subprocess.run(
        [*command, dns_server.host, str(dns_server.port), *map(str, files)],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout
    results = defaultdict(list)
    for line in output.splitlines():
        file, result, domain, selector, algorithm = line.split(" ")
        if selector in SELECTORS.values():
            results[Path(file).name].append((result, domain, algorithm))
    return results


@pytest.mark.parametrize("mode", sorted(MODES))
def test_corpus_signed_and_verified(mode, signing_setup, dns_server, daemon, tmp_path):
    key_entries, sink = signing_setup
    algorithms = MODES[mode]
    keys = [entry for entry in key_entries if entry["algorithm"] in algorithms]
    relayd = daemon({"routes": {"dkim.test": "127.0.0.2"}, "dkim": {"keys": keys}}, dns=dns_server)

    expected = {}
    with relayd.smtp() as client:
        for name in MESSAGES:
            if name == TOO_LONG:
                continue
            content = as_submitted((CORPUS / name).read_bytes())
            tagged = f"X-Test-Name: {name}\r\n".encode() + content
            client.sendmail("app@sender.test", ["user@dkim.test"], tagged, mail_options=[] if content.isascii() else ["BODY=8BITMIME"])
            expected[name] = (tagged, from_domain(content))

    arrived = {re.search(rb"X-Test-Name: (\S+)", m.content).group(1).decode(): m.content for m in sink.wait_for(len(expected), timeout=90)}
    files = []
    for name, content in arrived.items():
        path = tmp_path / "received" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        files.append(path)
    perl = external_results(["perl", str(PERL_VERIFIER)], dns_server, files)
    node = external_results(["node", str(NODE_VERIFIER)], dns_server, files)
    resolver = resolver_for(dns_server)

    for name, (tagged, domain) in expected.items():
        content = arrived[name]
        assert content.endswith(tagged), f"{name}: content changed"
        python = [r for r in dkim_results(content, resolver) if r.header_s in SELECTORS.values()]
        if name in UNSIGNABLE:
            assert python == [], f"{name}: signed although {UNSIGNABLE[name]}"
            assert relayd.events("dkim_sign_failed", domain=domain)
            continue
        if domain is None:
            assert python == [], f"{name}: signed although it has no single From domain"
            assert perl.get(name, []) == []
            assert node.get(name, []) == []
            continue
        assert sorted(r.header_a for r in python) == sorted(algorithms), f"{name}: {python}"
        for result in python:
            assert result.result == "pass", f"{name}: dkimpy {result.header_a} {result.result} {result.reason}"
            assert result.header_d == domain
        assert sorted(a for _, _, a in node[name]) == sorted(algorithms), f"{name}: mailauth saw {node[name]}"
        for result, signing_domain, algorithm in node[name]:
            assert result == "pass", f"{name}: mailauth {algorithm} {result}"
            assert signing_domain == domain
        # Debian 12's Mail::DKIM predates Ed25519 support and reports it as
        # an unsupported algorithm; it checks the RSA signatures.
        assert sorted(a for _, _, a in perl[name]) == sorted(algorithms), f"{name}: Mail::DKIM saw {perl[name]}"
        for result, signing_domain, algorithm in perl[name]:
            if algorithm == "ed25519-sha256":
                continue
            assert result == "pass", f"{name}: Mail::DKIM {algorithm} {result}"
            assert signing_domain == domain


def test_subdomain_signed_by_parent_key(signing_setup, dns_server, daemon):
    key_entries, sink = signing_setup
    keys = [e for e in key_entries if e["domain"] == "example.com" and e["algorithm"] == "rsa-sha256"]
    relayd = daemon({"routes": {"dkim.test": "127.0.0.2"}, "dkim": {"keys": keys}}, dns=dns_server)
    content = b"From: App <no-reply@mail.example.com>\r\nTo: user@dkim.test\r\nSubject: parent\r\n\r\nhello\r\n"
    queue_id = relayd.submit(["user@dkim.test"], content)
    accepted = relayd.wait_for_event("accepted", queue_id=queue_id)[0]
    assert accepted["dkim"] == ["example.com/rsa2026"]
    signed = sink.wait_for(1)[0].content
    results = dkim_results(signed, resolver_for(dns_server))
    assert [(r.result, r.header_d) for r in results] == [("pass", "example.com")]
    assert b"h=from : to : subject" in signed.replace(b"\r\n ", b" ")


def test_relayd_fields_removed_before_signing(signing_setup, dns_server, daemon):
    key_entries, sink = signing_setup
    keys = [e for e in key_entries if e["domain"] == "example.com" and e["algorithm"] == "rsa-sha256"]
    relayd = daemon({"routes": {"dkim.test": "127.0.0.2"}, "dkim": {"keys": keys}}, dns=dns_server)
    content = (
        b"From: App <no-reply@example.com>\r\nTo: user@dkim.test\r\nIdempotency-Key: order-1\r\n"
        b"X-Relayd-Class: auth\r\nSubject: code\r\n\r\n123456\r\n"
    )
    queue_id = relayd.submit(["user@dkim.test"], content)
    assert relayd.wait_for_event("accepted", queue_id=queue_id)[0]["message_class"] == "auth"

    signed = sink.wait_for(1)[0].content
    assert b"idempotency-key" not in signed.lower()
    assert b"x-relayd-class" not in signed.lower()
    assert signed.endswith(b"From: App <no-reply@example.com>\r\nTo: user@dkim.test\r\nSubject: code\r\n\r\n123456\r\n")
    results = dkim_results(signed, resolver_for(dns_server))
    assert [(r.result, r.header_d) for r in results] == [("pass", "example.com")]
