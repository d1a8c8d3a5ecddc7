"""The suppression list through the running daemon and the `relayd suppression` command."""

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.support.daemon import ROOT
from tests.support.sinks import SmtpScript

MESSAGE = b"Subject: notice\r\n\r\nhello\r\n"


def cli(relayd, *args: str) -> subprocess.CompletedProcess:
    """Run `relayd suppression ARGS --config` beside the running daemon."""
    command = [sys.executable, "-m", "relayd", "suppression", *args, "--config", str(relayd.config_path)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)


def rcpt_reply(relayd, recipient: str) -> tuple[int, str]:
    with relayd.smtp() as client:
        client.ehlo()
        client.mail("app@sender.test")
        code, text = client.rcpt(recipient)
    return code, text.decode()


def test_hard_bounce_suppresses_until_removed(sinks, daemon):
    sink = sinks("127.0.0.2", SmtpScript(rcpt={"gone@supp.test": "550 5.1.1 No such user here"}))
    relayd = daemon({"routes": {"supp.test": "127.0.0.2"}})
    queue_id = relayd.submit(["gone@supp.test"], MESSAGE)
    relayd.wait_for_event("bounced", queue_id=queue_id)
    added = relayd.wait_for_event("suppression_added", queue_id=queue_id)[0]
    assert added["recipient"] == "gone@supp.test"
    assert added["reason"] == "550 5.1.1 No such user here"

    # The next submission is refused at RCPT, with the reason; case does not matter.
    code, text = rcpt_reply(relayd, "Gone@SUPP.test")
    assert code == 550
    assert text.startswith("5.1.1 Recipient suppressed: a message to this address bounced permanently on ")
    assert relayd.wait_for_event("rejected", recipient="Gone@SUPP.test")[0]["reason"].startswith("recipient suppressed")

    listed = cli(relayd, "list")
    assert listed.returncode == 0, listed.stderr
    assert "gone@supp.test" in listed.stdout
    assert "bounce" in listed.stdout

    removed = cli(relayd, "remove", "gone@supp.test")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == "removed gone@supp.test"
    assert cli(relayd, "remove", "gone@supp.test").returncode == 1

    sink.script = SmtpScript()
    assert rcpt_reply(relayd, "gone@supp.test")[0] == 250
    relayd.submit(["gone@supp.test"], MESSAGE)
    assert sink.wait_for(1)[0].rcpt_tos == ("gone@supp.test",)


def test_transient_and_unlisted_codes_not_suppressed(sinks, daemon):
    sinks(
        "127.0.0.2",
        SmtpScript(rcpt={"full@supp.test": "452 4.2.2 Mailbox full", "spam@supp.test": "550 5.7.1 Rejected as spam"}),
    )
    relayd = daemon({"routes": {"supp.test": "127.0.0.2"}, "retry": {"first": "10s", "max_interval": "10s"}})
    queue_id = relayd.submit(["full@supp.test", "spam@supp.test"], MESSAGE)
    relayd.wait_for_event("deferred", queue_id=queue_id)
    relayd.wait_for_event("bounced", queue_id=queue_id)
    assert relayd.events("suppression_added") == []
    assert rcpt_reply(relayd, "spam@supp.test")[0] == 250


def test_manual_entry_expires(sinks, daemon):
    sinks("127.0.0.2")
    relayd = daemon({"routes": {"supp.test": "127.0.0.2"}})
    added = cli(relayd, "add", "brief@supp.test", "--ttl", "1s", "--reason", "asked to stop")
    assert added.returncode == 0, added.stderr
    code, text = rcpt_reply(relayd, "brief@supp.test")
    assert code == 550
    assert "the operator put this address on the suppression list" in text
    time.sleep(1.2)
    assert rcpt_reply(relayd, "brief@supp.test")[0] == 250


def test_bounce_entry_expires_after_ttl(sinks, daemon):
    sinks("127.0.0.2", SmtpScript(rcpt={"moved@supp.test": "550 5.1.6 Mailbox has moved"}))
    relayd = daemon({"routes": {"supp.test": "127.0.0.2"}, "suppression": {"ttl": "1s"}})
    queue_id = relayd.submit(["moved@supp.test"], MESSAGE)
    relayd.wait_for_event("suppression_added", queue_id=queue_id)
    assert rcpt_reply(relayd, "moved@supp.test")[0] == 550
    time.sleep(1.2)
    assert rcpt_reply(relayd, "moved@supp.test")[0] == 250


def test_drop_mode_accepts_and_reports(sinks, daemon, webhook_receiver):
    sink = sinks("127.0.0.2")
    receiver = webhook_receiver()
    relayd = daemon(
        {
            "routes": {"supp.test": "127.0.0.2"},
            "suppression": {"action": "drop"},
            "webhooks": [{"url": receiver.url, "secret": receiver.secret, "events": ["queued", "suppressed"]}],
        }
    )
    assert cli(relayd, "add", "quiet@supp.test").returncode == 0

    queue_id = relayd.submit(["quiet@supp.test", "loud@supp.test"], MESSAGE)
    assert sink.wait_for(1)[0].rcpt_tos == ("loud@supp.test",)
    dropped = relayd.wait_for_event("suppressed", queue_id=queue_id)[0]
    assert dropped["recipient"] == "quiet@supp.test"
    assert dropped["reason"] == "added by an operator"

    only_dropped = relayd.submit(["quiet@supp.test"], MESSAGE)
    relayd.wait_for_event("suppressed", queue_id=only_dropped)
    receiver.wait_until(lambda r: len(r.unique()) == 3, description="queued and two suppressed events")
    types = sorted((r.event["type"], r.event["data"]["recipient"]) for r in receiver.requests)
    assert types == [("queued", "loud@supp.test"), ("suppressed", "quiet@supp.test"), ("suppressed", "quiet@supp.test")]
    suppressed = next(r.event for r in receiver.requests if r.event["type"] == "suppressed")
    assert suppressed["data"]["reason"] == "added by an operator"
    time.sleep(0.5)
    assert len(sink.messages) == 1


def test_added_address_is_refused_at_the_next_rcpt(daemon):
    relayd = daemon({"routes": {"supp.test": "127.0.0.2"}})
    assert rcpt_reply(relayd, "now@supp.test")[0] == 250
    added = cli(relayd, "add", "now@supp.test")
    assert added.returncode == 0
    # The command has asked the daemon to read the list again: no wait needed.
    assert "note:" not in added.stderr
    assert rcpt_reply(relayd, "now@supp.test")[0] == 550
    assert cli(relayd, "remove", "now@supp.test").returncode == 0
    assert rcpt_reply(relayd, "now@supp.test")[0] == 250


def test_change_written_by_another_program_applies_within_seconds(daemon):
    relayd = daemon({"routes": {"supp.test": "127.0.0.2"}})
    assert rcpt_reply(relayd, "direct@supp.test")[0] == 250
    # Written straight into the state store: the daemon hears nothing of it.
    with sqlite3.connect(Path(relayd.config["server"]["spool_dir"]) / "state.db") as connection:
        connection.execute(
            "INSERT INTO suppressions VALUES ('direct@supp.test', 'imported by a script', 'manual', ?, NULL)", (time.time(),)
        )
    deadline = time.monotonic() + 5
    while rcpt_reply(relayd, "direct@supp.test")[0] != 550:
        assert time.monotonic() < deadline, "the daemon did not notice the new entry within 5 s"
        time.sleep(0.1)


def test_change_without_daemon_prints_note(daemon):
    relayd = daemon({"routes": {"supp.test": "127.0.0.2"}})
    relayd.stop()
    added = cli(relayd, "add", "offline@supp.test")
    assert added.returncode == 0
    assert added.stderr.startswith("relayd: note: the change is stored; a running daemon applies it within a second")
    listed = cli(relayd, "list")
    assert "offline@supp.test" in listed.stdout
