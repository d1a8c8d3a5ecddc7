"""The alignment check through the running daemon, with zones from a dnsmasq on loopback."""

import time

import pytest

from relayd.dkim.keys import generate_key, write_private_file

RELAY_ADDRESS = "192.0.2.10"

UNALIGNED = b"From: App <app@unaligned.test>\r\nSubject: reset\r\n\r\nyour code is 123456\r\n"
ALIGNED = b"From: App <app@aligned.test>\r\nSubject: reset\r\n\r\nyour code is 123456\r\n"
BROKEN = b"From: App <app@broken.test>\r\nSubject: reset\r\n\r\nyour code is 123456\r\n"
TWO_AUTHORS = b"From: a@aligned.test, b@aligned.test\r\nSubject: reset\r\n\r\nhi\r\n"


@pytest.fixture
def zones(dns_server):
    dns_server.add_txt("_dmarc.unaligned.test", "v=DMARC1; p=reject")
    dns_server.add_txt("bounce.unaligned.test", "v=spf1 ip4:198.51.100.7 ~all")
    dns_server.add_txt("_dmarc.aligned.test", "v=DMARC1; p=reject")
    dns_server.add_txt("aligned.test", f"v=spf1 ip4:{RELAY_ADDRESS} -all")
    dns_server.add_servfail("broken.test")
    return dns_server.start()


def start(daemon, zones, sinks, alignment: str):
    sink = sinks("127.0.0.2")
    config = {
        "routes": {"dest.test": "127.0.0.2"},
        "delivery": {"source_addresses": [RELAY_ADDRESS]},
        "policy": {"alignment": alignment},
    }
    return daemon(config, dns=zones), sink


def send(relayd, sender: str, content: bytes) -> tuple[int, str]:
    with relayd.smtp() as client:
        client.ehlo()
        client.mail(sender)
        client.rcpt("user@dest.test")
        code, text = client.data(content)
    return code, text.decode()


def test_reject_answers_550_and_delivers_nothing(daemon, zones, sinks):
    relayd, sink = start(daemon, zones, sinks, "reject")

    code, text = send(relayd, "app@bounce.unaligned.test", UNALIGNED)

    assert code == 550
    assert text.startswith("5.7.26 Message refused: mail from unaligned.test would fail DMARC because")
    assert "no DKIM key for unaligned.test or a parent domain is configured" in text
    assert f"SPF for bounce.unaligned.test does not authorize {RELAY_ADDRESS} (softfail)" in text
    rejected = relayd.wait_for_event("rejected", from_domain="unaligned.test")[0]
    assert rejected["status"] == "5.7.26"
    time.sleep(1)
    assert relayd.events("accepted") == []
    assert sink.messages == []


def test_reject_accepts_aligned_mail(daemon, zones, sinks):
    relayd, sink = start(daemon, zones, sinks, "reject")

    code, text = send(relayd, "app@aligned.test", ALIGNED)

    assert code == 250, text
    queue_id = text.rsplit(" ", 1)[1]
    relayd.wait_for_event("delivered", queue_id=queue_id)
    assert len(sink.wait_for(1)) == 1


def test_reject_dns_failure_answers_451(daemon, zones, sinks):
    relayd, sink = start(daemon, zones, sinks, "reject")

    code, text = send(relayd, "app@broken.test", BROKEN)

    assert code == 451
    assert text == "4.4.3 Temporary DNS failure checking DMARC alignment for broken.test, try again later"
    assert sink.messages == []


def test_reject_two_authors(daemon, zones, sinks):
    relayd, sink = start(daemon, zones, sinks, "reject")

    code, text = send(relayd, "app@aligned.test", TWO_AUTHORS)

    assert code == 550
    assert text.startswith("5.7.1 Message refused: the From field must contain exactly one address")


def test_warn_accepts_and_logs(daemon, zones, sinks):
    relayd, sink = start(daemon, zones, sinks, "warn")

    code, text = send(relayd, "app@bounce.unaligned.test", UNALIGNED)

    assert code == 250, text
    queue_id = text.rsplit(" ", 1)[1]
    failed = relayd.wait_for_event("alignment_failed", queue_id=queue_id)[0]
    assert failed["from_domain"] == "unaligned.test"
    assert failed["client"] == "127.0.0.1"
    assert "SPF for bounce.unaligned.test does not authorize" in failed["reason"]
    assert failed["level"] == "warning"
    relayd.wait_for_event("delivered", queue_id=queue_id)
    assert len(sink.wait_for(1)) == 1


def test_warn_dns_failure_logs(daemon, zones, sinks):
    relayd, sink = start(daemon, zones, sinks, "warn")

    code, text = send(relayd, "app@broken.test", BROKEN)

    assert code == 250, text
    queue_id = text.rsplit(" ", 1)[1]
    unchecked = relayd.wait_for_event("alignment_unchecked", queue_id=queue_id)[0]
    assert "_dmarc.broken.test" in unchecked["reason"]


def test_reject_accepts_mail_with_own_key(daemon, zones, sinks, tmp_path):
    key_file = tmp_path / "signed.test.key"
    write_private_file(key_file, generate_key("ed25519-sha256"))
    sink = sinks("127.0.0.2")
    relayd = daemon(
        {
            "routes": {"dest.test": "127.0.0.2"},
            "delivery": {"source_addresses": [RELAY_ADDRESS]},
            "policy": {"alignment": "reject"},
            "dkim": {"keys": [{"domain": "signed.test", "selector": "s1", "key_file": str(key_file), "algorithm": "ed25519-sha256"}]},
        },
        dns=zones,
    )

    code, text = send(relayd, "app@elsewhere.test", b"From: app@signed.test\r\nSubject: hi\r\n\r\nhi\r\n")

    assert code == 250, text
    assert "signed.test" not in zones.read_log()
    assert len(sink.wait_for(1)) == 1
