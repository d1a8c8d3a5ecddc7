"""`relayd check-domain` end to end: a subprocess reading zones from a real dnsmasq on loopback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from relayd.config.model import DkimKey
from relayd.dkim.keys import generate_key, load_key, write_private_file
from tests.support.daemon import to_toml
from tests.support.dns import DnsServer

ROOT = Path(__file__).resolve().parents[1]
RELAY_ADDRESS = "192.0.2.10"
OTHER_ADDRESS = "198.51.100.7"

# (domain, selector, algorithm, active, published): the [[dkim.keys]] entries.
KEYS = [
    ("good.test", "s1", "rsa-sha256", True, True),
    ("good.test", "s2", "ed25519-sha256", False, False),
    ("dkimonly.test", "s1", "ed25519-sha256", True, True),
    ("nodmarc.test", "s1", "ed25519-sha256", True, True),
    ("mismatch.test", "s1", "ed25519-sha256", True, False),
    ("parent.test", "s1", "ed25519-sha256", True, True),
    ("strictparent.test", "s1", "ed25519-sha256", True, True),
    ("testing.test", "s1", "ed25519-sha256", True, False),
]


def split_txt(text: str) -> list[str]:
    """Split `text` into the 255-octet character-strings one TXT record contains (RFC 1035 3.3.14)."""
    return [text[start : start + 255] for start in range(0, len(text), 255)]


def add_zones(server: DnsServer, keys: dict) -> None:
    for (domain, selector, _, _, published), key in keys.items():
        if published:
            server.add_txt(key.record_name, *split_txt(key.txt_record()))

    server.add_mx("good.test", "mx.good.test", 10)
    server.add_txt("good.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")
    server.add_txt("_dmarc.good.test", "v=DMARC1; p=reject; rua=mailto:dmarc@good.test")

    server.add_txt("_dmarc.dkimonly.test", "v=DMARC1; p=none")
    server.add_txt("spfonly.test", "v=spf1 include:_spf.spfonly.test -all")
    server.add_txt("_spf.spfonly.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")
    server.add_txt("_dmarc.spfonly.test", "v=DMARC1; p=quarantine")
    server.add_txt("nodmarc.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")

    server.add_txt("softfail.test", f"v=spf1 ip4:{OTHER_ADDRESS} ~all")
    server.add_txt("_dmarc.softfail.test", "v=DMARC1; p=reject")
    includes = " ".join(f"include:l{n}.toomany.test" for n in range(1, 12))
    server.add_txt("toomany.test", f"v=spf1 {includes} -all")
    for n in range(1, 12):
        server.add_txt(f"l{n}.toomany.test", f"v=spf1 ip4:{OTHER_ADDRESS} -all")
    server.add_txt("_dmarc.toomany.test", "v=DMARC1; p=reject")

    # A published key that is not the configured one.
    other = generate_key("ed25519-sha256").decode().strip()
    server.add_txt("s1._domainkey.mismatch.test", f"v=DKIM1; k=ed25519; p={other}")
    server.add_txt("_dmarc.mismatch.test", "v=DMARC1; p=reject")

    server.add_txt("_dmarc.parent.test", "v=DMARC1; p=reject; sp=quarantine")
    server.add_txt("_dmarc.strictparent.test", "v=DMARC1; p=reject; adkim=s")

    testing = keys[("testing.test", "s1", "ed25519-sha256", True, False)]
    server.add_txt(testing.record_name, f"v=DKIM1; k=ed25519; t=y; p={testing.public_b64}")
    server.add_txt("_dmarc.testing.test", "v=DMARC1; p=reject")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = tmp_path_factory.mktemp("check-domain")
    entries, loaded = [], {}
    for entry in KEYS:
        domain, selector, algorithm, active, _ = entry
        path = directory / f"{domain}.{selector}.key"
        write_private_file(path, generate_key(algorithm))
        entries.append({"domain": domain, "selector": selector, "key_file": str(path), "algorithm": algorithm, "active": active})
        loaded[entry] = load_key(DkimKey(domain, selector, path, algorithm, active))

    server = DnsServer(directory / "dns")
    add_zones(server, loaded)
    with server:
        config = {
            "server": {"hostname": "relay.good.test", "spool_dir": str(directory / "spool")},
            "dns": {"nameservers": [server.address], "timeout": "2s"},
            "delivery": {"source_addresses": [RELAY_ADDRESS]},
            "dkim": {"keys": entries},
        }
        path = directory / "relayd.toml"
        path.write_text(to_toml(config))
        yield path, loaded


def check_domain(config: Path, domain: str, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "relayd", "check-domain", domain, "--config", str(config), *options]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def check_json(config: Path, domain: str) -> tuple[int, dict]:
    result = check_domain(config, domain, "--json")
    assert result.stderr == ""
    return result.returncode, json.loads(result.stdout)


def test_good_domain_text(setup):
    config, _ = setup

    result = check_domain(config, "good.test")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "10    mx.good.test" in result.stdout
    assert f"record  v=spf1 ip4:{RELAY_ADDRESS} -all" in result.stdout
    assert f"{RELAY_ADDRESS}: pass (0 of 10 DNS look-ups)" in result.stdout
    assert "s1._domainkey.good.test (rsa-sha256, active): published, matches key_file" in result.stdout
    assert "s2._domainkey.good.test (ed25519-sha256, inactive): no TXT record at s2._domainkey.good.test" in result.stdout
    assert "policy  reject for good.test; adkim=r aspf=r pct=100" in result.stdout
    assert "pass: mail from good.test passes DMARC (DKIM aligned with selector s1 and SPF aligned and passing); policy reject" in result.stdout


def test_good_domain_json(setup):
    config, _ = setup

    status, report = check_json(config, "good.test")

    assert status == 0
    assert report["passes"] is True
    assert report["mx"]["records"] == [{"preference": 10, "host": "mx.good.test"}]
    assert report["spf"]["result"] == "pass"
    assert report["spf"]["lookup_limit"] == 10
    assert report["dmarc"]["found_at"] == "_dmarc.good.test"
    assert report["dmarc"]["p"] == "reject"
    assert [(key["selector"], key["published"], key["matches"], key["active"]) for key in report["dkim"]] == [
        ("s1", True, True, True),
        ("s2", False, False, False),
    ]
    assert report["verdict"].startswith("pass:")


def test_dkim_only_with_p_none(setup):
    config, _ = setup

    status, report = check_json(config, "dkimonly.test")

    assert status == 0
    assert report["dkim_aligned"] is True
    assert report["spf_aligned"] is False
    assert report["spf"]["result"] == "none"
    assert report["dmarc"]["policy"] == "none"
    assert report["verdict"].endswith("policy none")


def test_spf_only_through_include(setup):
    config, _ = setup

    status, report = check_json(config, "spfonly.test")

    assert status == 0
    assert report["dkim"] == []
    assert report["spf_aligned"] is True
    assert report["spf"]["lookups"] == 1


def test_no_dmarc_record_fails(setup):
    config, _ = setup

    status, report = check_json(config, "nodmarc.test")

    assert status == 1
    assert report["dkim_aligned"] is True
    assert report["spf_aligned"] is True
    assert report["dmarc"]["policy"] is None
    assert "no DMARC record at _dmarc.nodmarc.test" in report["verdict"]


def test_softfail_fails(setup):
    config, _ = setup

    status, report = check_json(config, "softfail.test")

    assert status == 1
    assert report["spf"]["result"] == "softfail"
    assert f"SPF for softfail.test does not authorize {RELAY_ADDRESS} (softfail)" in report["verdict"]
    assert "no DKIM key for softfail.test or a parent domain is configured" in report["verdict"]


def test_too_many_lookups_text(setup):
    config, _ = setup

    result = check_domain(config, "toomany.test")

    assert result.returncode == 1
    assert f"{RELAY_ADDRESS}: permerror (11 of 10 DNS look-ups)" in result.stdout
    assert "the SPF record of toomany.test is invalid (Too many DNS lookups)" in result.stdout


def test_published_key_mismatch(setup):
    config, _ = setup

    status, report = check_json(config, "mismatch.test")

    assert status == 1
    assert report["dkim"][0]["published"] is True
    assert report["dkim"][0]["matches"] is False
    assert "DKIM selector s1: the published p= is not the public key of key_file" in report["verdict"]


def test_testing_key_does_not_count(setup):
    config, _ = setup

    status, report = check_json(config, "testing.test")

    assert status == 1
    assert "t=y marks the key as testing" in report["dkim"][0]["problem"]


def test_subdomain_relaxed_uses_parent_key_and_sp(setup):
    config, _ = setup

    status, report = check_json(config, "news.parent.test")

    assert status == 0
    assert report["dkim"][0]["domain"] == "parent.test"
    assert report["dkim"][0]["aligned"] is True
    assert report["dmarc"]["found_at"] == "_dmarc.parent.test"
    assert report["dmarc"]["policy"] == "quarantine"


def test_subdomain_strict_fails(setup):
    config, _ = setup

    status, report = check_json(config, "news.strictparent.test")

    assert status == 1
    assert report["dkim"][0]["matches"] is True
    assert report["dkim"][0]["aligned"] is False
    assert "is not aligned with news.strictparent.test (adkim=s)" in report["verdict"]


def test_invalid_domain_is_usage_error(setup):
    config, _ = setup

    result = check_domain(config, "not a domain")

    assert result.returncode == 2
    assert "invalid domain 'not a domain'" in result.stderr


def test_missing_key_file_is_config_error(tmp_path):
    config = tmp_path / "relayd.toml"
    key = {"domain": "good.test", "selector": "s1", "key_file": str(tmp_path / "absent.key")}
    config.write_text(to_toml({"dns": {"nameservers": ["127.0.0.1:9"]}, "dkim": {"keys": [key]}}))

    result = check_domain(config, "good.test")

    assert result.returncode == 2
    assert "file not found" in result.stderr


def test_missing_domain_argument():
    result = subprocess.run(
        [sys.executable, "-m", "relayd", "check-domain"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    assert "domain" in result.stderr
