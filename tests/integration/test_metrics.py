"""/metrics of the running daemon: every metric moves as mail is accepted, delivered, deferred, bounced and expires."""

import shutil
import subprocess

import pytest

from relayd.dkim.keys import generate_key, write_private_file
from tests.support.sinks import SmtpScript, free_tcp_port
from tests.support.webhooks import new_secret

MESSAGE = b"From: app@sender.test\r\nSubject: metrics\r\n\r\nhello\r\n"
CLASS = "transactional"


def test_metrics_follow_mail_flow(tmp_path, dns_server, sinks, daemon):
    dns_server.add_mx("mx.test", "mx.mx.test")
    dns_server.add_a("mx.mx.test", "127.0.0.2")
    dns_server.start()
    sinks("127.0.0.2")
    sinks("127.0.0.3", SmtpScript(rcpt={"grey@outcome.test": "451 4.7.1 Greylisted", "gone@outcome.test": "550 5.1.1 No such user"}))
    key_file = tmp_path / "sender.test.key"
    write_private_file(key_file, generate_key("rsa-sha256"))
    # Nothing listens at the webhook URL, so every request fails and the events stay in the outbox.
    dead_hook = f"http://127.0.0.1:{free_tcp_port('127.0.0.1')}/hook"
    relayd = daemon(
        {
            "smtp": {"allowed_networks": ["127.0.0.1/32"]},
            "suppression": {"action": "drop"},
            "webhooks": [{"url": dead_hook, "secret": new_secret(), "events": ["delivered", "bounced"]}],
            "http": {"metrics_domains": ["mx.test"]},
            "routes": {"outcome.test": "127.0.0.3"},
            "retry": {"first": "1s", "max_interval": "1s", "give_up": "4s"},
            "dkim": {"keys": [{"domain": "sender.test", "selector": "s1", "key_file": str(key_file)}]},
        },
        dns=dns_server,
    )
    before = relayd.metrics()

    # An open session is counted while it lasts.
    with relayd.smtp() as held:
        held.ehlo()
        assert relayd.metrics().get("relayd_smtp_sessions_open") >= 1

    # Two refusals: a client outside allowed_networks, and an address literal.
    with relayd.smtp(source_address=("127.0.0.5", 0)) as outsider:
        outsider.ehlo()
        assert outsider.mail("app@sender.test")[0] == 550
    with relayd.smtp() as client:
        client.ehlo()
        client.mail("app@sender.test")
        assert client.rcpt("user@[127.0.0.2]")[0] == 553

    relayd.submit(["user@mx.test"], MESSAGE)
    relayd.submit(["ok@outcome.test", "grey@outcome.test", "gone@outcome.test"], MESSAGE)
    relayd.submit(["user@missing.test"], MESSAGE)
    relayd.wait_for_event("delivered", count=2)
    relayd.wait_for_event("bounced", count=2)
    relayd.wait_for_event("deferred", recipient="grey@outcome.test")

    # The bounce put gone@outcome.test on the suppression list: the next message to it is dropped.
    relayd.submit(["gone@outcome.test"], MESSAGE)
    relayd.wait_for_event("suppressed", recipient="gone@outcome.test")

    during = relayd.metrics()
    assert during.get("relayd_queue_recipients", state="deferred", **{"class": CLASS}) >= 1
    assert during.get("relayd_queue_messages", **{"class": CLASS}) >= 1
    assert during.get("relayd_queue_oldest_age_seconds", **{"class": CLASS}) > 0

    relayd.wait_for_event("expired", recipient="grey@outcome.test", timeout=15)
    after = relayd.metrics()

    def moved(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    assert moved("relayd_messages_accepted_total", **{"class": CLASS}) == 4
    assert moved("relayd_messages_rejected_total", reason="relay_denied") == 1
    assert moved("relayd_messages_rejected_total", reason="invalid_address") == 1

    assert moved("relayd_recipients_total", state="delivered", domain="mx.test") == 1
    assert moved("relayd_recipients_total", state="delivered", domain="other") == 1
    assert moved("relayd_recipients_total", state="deferred", domain="other") >= 1
    assert moved("relayd_recipients_total", state="bounced", domain="other") == 2
    assert moved("relayd_recipients_total", state="expired", domain="other") == 1
    assert moved("relayd_recipients_total", state="suppressed", domain="other") == 1

    assert after.get("relayd_smtp_sessions_open") == 0
    assert after.get("relayd_queue_recipients", state="deferred", **{"class": CLASS}) == 0
    assert after.get("relayd_queue_messages", **{"class": CLASS}) == 0

    assert moved("relayd_accept_latency_seconds_count", **{"class": CLASS}) == 4
    assert moved("relayd_accept_latency_seconds_sum", **{"class": CLASS}) > 0
    assert moved("relayd_delivery_latency_seconds_count", **{"class": CLASS}) == 2
    assert moved("relayd_delivery_attempts_total", result="delivered", status="2.0") == 2
    assert moved("relayd_delivery_attempts_total", result="deferred", status="4.7") >= 1
    assert moved("relayd_delivery_attempts_total", result="bounced", status="5.1") == 2
    assert moved("relayd_delivery_attempts_total", result="expired", status="4.7") == 1

    assert moved("relayd_dns_lookup_duration_seconds_count", type="MX") >= 2
    assert moved("relayd_dns_lookup_failures_total", type="MX", reason="nxdomain") == 1
    assert moved("relayd_dkim_signatures_total", algorithm="rsa-sha256") == 4

    assert after.get("relayd_webhook_outbox_events") >= 1
    assert moved("relayd_webhook_failures_total", reason="connection") >= 1
    assert after.get("relayd_build_info", version="0.1.0") == 1


def test_metrics_pass_promtool(daemon):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install the Debian package prometheus (make system-packages)")
    relayd = daemon({"routes": {"nowhere.test": "127.0.0.9"}})
    relayd.submit(["user@nowhere.test"], MESSAGE)
    relayd.wait_for_event("accepted")

    result = subprocess.run([promtool, "check", "metrics"], input=relayd.metrics_text(), capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_have_no_unbounded_labels(daemon):
    relayd = daemon({"routes": {"one.test": "127.0.0.9"}})
    queue_id = relayd.submit(["someone@one.test"], MESSAGE)
    relayd.wait_for_event("deferred", queue_id=queue_id)

    text = relayd.metrics_text()

    assert queue_id not in text
    assert "someone" not in text
    assert "one.test" not in text
