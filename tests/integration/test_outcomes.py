"""Per-recipient outcomes through the running daemon: delivered, deferred, bounced, expired."""

import email
import email.policy
import time

from tests.support.sinks import SmtpScript

MESSAGE = b"Subject: outcome\r\n\r\nhello\r\n"


def submit(relayd, recipients: list[str]) -> str:
    return relayd.submit(recipients, MESSAGE)


def test_transient_reply_retried_then_delivered(sinks, daemon):
    sink = sinks("127.0.0.2", SmtpScript(rcpt_default="451 4.7.1 Greylisted, try again later"))
    relayd = daemon({"routes": {"grey.test": "127.0.0.2"}})
    queue_id = submit(relayd, ["user@grey.test"])
    deferred = relayd.wait_for_event("deferred", queue_id=queue_id)[0]
    assert deferred["reply"] == "451 4.7.1 Greylisted, try again later"
    assert deferred["attempt"] == 1
    assert deferred["next_attempt"] > time.time() - 1

    sink.script = SmtpScript()
    delivered = relayd.wait_for_event("delivered", queue_id=queue_id, timeout=20)[0]
    assert delivered["attempt"] == 2
    assert len(sink.wait_for(1)) == 1


def test_permanent_reply_bounced(sinks, daemon):
    sink = sinks("127.0.0.2", SmtpScript(rcpt_default="550 5.1.1 No such user here"))
    relayd = daemon({"routes": {"hard.test": "127.0.0.2"}})
    queue_id = submit(relayd, ["nobody@hard.test"])
    bounced = relayd.wait_for_event("bounced", queue_id=queue_id)[0]
    assert bounced["status"] == "5.1.1"
    assert bounced["command"] == "RCPT"
    time.sleep(1.5)
    names = [e["event"] for e in relayd.events(queue_id=queue_id)]
    assert names == ["accepted", "suppression_added", "bounced"], "no retry"
    assert sink.messages == []


def test_permanent_reply_from_postfix_bounced(postfix_sink, daemon):
    postfix_sink("127.0.0.3", hard_reject=("RCPT",))
    relayd = daemon({"routes": {"postfix.test": "127.0.0.3"}})
    queue_id = submit(relayd, ["nobody@postfix.test"])
    bounced = relayd.wait_for_event("bounced", queue_id=queue_id)[0]
    assert bounced["reply"].startswith("5")
    assert bounced["command"] == "RCPT"


def test_partial_success_in_one_transaction(sinks, daemon):
    sink = sinks(
        "127.0.0.2",
        SmtpScript(rcpt={"gone@mixed.test": "550 5.1.1 Mailbox unavailable", "full@mixed.test": "452 4.2.2 Mailbox full"}),
    )
    relayd = daemon({"routes": {"mixed.test": "127.0.0.2"}})
    queue_id = submit(relayd, ["ok@mixed.test", "gone@mixed.test", "full@mixed.test"])
    assert relayd.wait_for_event("delivered", queue_id=queue_id, recipient="ok@mixed.test")
    assert relayd.wait_for_event("bounced", queue_id=queue_id, recipient="gone@mixed.test")
    assert relayd.wait_for_event("deferred", queue_id=queue_id, recipient="full@mixed.test")
    first = sink.wait_for(1)[0]
    assert first.rcpt_tos == ("ok@mixed.test",)

    # The retry carries only the deferred recipient.
    sink.script = SmtpScript()
    relayd.wait_for_event("delivered", queue_id=queue_id, recipient="full@mixed.test", timeout=20)
    second = sink.wait_for(2)[1]
    assert second.rcpt_tos == ("full@mixed.test",)


def test_data_transient_then_permanent(sinks, daemon):
    sink = sinks("127.0.0.2", SmtpScript(data="451 4.3.0 Local error in processing"))
    relayd = daemon({"routes": {"data.test": "127.0.0.2"}})
    queue_id = submit(relayd, ["user@data.test"])
    assert relayd.wait_for_event("deferred", queue_id=queue_id)[0]["command"] == "DATA"
    sink.script = SmtpScript(data="554 5.6.0 Content rejected")
    bounced = relayd.wait_for_event("bounced", queue_id=queue_id, timeout=20)[0]
    assert bounced["status"] == "5.6.0"
    assert bounced["attempt"] == 2


def test_destination_down_expires_at_give_up_age(daemon):
    # Nothing listens on 127.0.0.7: every attempt is refused.
    relayd = daemon({"routes": {"down.test": "127.0.0.7"}, "retry": {"first": "1s", "max_interval": "1s", "give_up": "3s"}})
    accepted_at = time.time()
    queue_id = submit(relayd, ["user@down.test"])
    expired = relayd.wait_for_event("expired", queue_id=queue_id, timeout=20)[0]
    deferrals = relayd.events("deferred", queue_id=queue_id)
    assert len(deferrals) >= 2
    assert all(d["status"] == "4.4.1" for d in deferrals)
    assert expired["attempt"] == len(deferrals) + 1
    assert time.time() - accepted_at >= 3.0
    assert relayd.events("bounced", queue_id=queue_id) == []


def test_dsn_sent_for_bounce(sinks, daemon):
    destination = sinks("127.0.0.2", SmtpScript(rcpt_default="550 5.1.1 No such user here"))
    sender_mx = sinks("127.0.0.3")
    relayd = daemon({"routes": {"hard.test": "127.0.0.2", "sender.test": "127.0.0.3"}, "delivery": {"dsn": True}})
    original = b"Subject: reset\r\nMessage-ID: <m1@sender.test>\r\n\r\nYour code is 123456\r\n"
    queue_id = relayd.submit(["nobody@hard.test"], original)
    dsn_event = relayd.wait_for_event("dsn_queued", queue_id=queue_id)[0]

    arrived = sender_mx.wait_for(1)[0]
    assert arrived.mail_from == "<>"
    assert arrived.rcpt_tos == ("app@sender.test",)
    report = email.message_from_bytes(arrived.content, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    status = list(report.iter_parts())[1].get_payload()[1]
    assert status["Final-Recipient"] == "rfc822; nobody@hard.test"
    assert status["Status"] == "5.1.1"
    assert b"123456" not in arrived.content
    assert relayd.wait_for_event("delivered", queue_id=dsn_event["dsn_queue_id"])
    assert destination.messages == []


def test_no_dsn_for_null_sender(sinks, daemon):
    sinks("127.0.0.2", SmtpScript(rcpt_default="550 5.1.1 No such user here"))
    relayd = daemon({"routes": {"hard.test": "127.0.0.2", "sender.test": "127.0.0.3"}, "delivery": {"dsn": True}})
    queue_id = relayd.submit(["nobody@hard.test"], MESSAGE, sender="")
    assert relayd.wait_for_event("bounced", queue_id=queue_id)
    time.sleep(0.5)
    assert relayd.events("dsn_queued") == []


def test_no_dsn_when_disabled(sinks, daemon):
    sinks("127.0.0.2", SmtpScript(rcpt_default="550 5.1.1 No such user here"))
    relayd = daemon({"routes": {"hard.test": "127.0.0.2"}})
    queue_id = relayd.submit(["nobody@hard.test"], MESSAGE)
    assert relayd.wait_for_event("bounced", queue_id=queue_id)
    time.sleep(0.5)
    assert relayd.events("dsn_queued") == []
