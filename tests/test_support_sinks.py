"""Checks tests.support.sinks against Python's smtplib as the client."""

import smtplib
import socket
import subprocess
import time

import pytest

from tests.support.sinks import (
    PostfixSink,
    RecordingSink,
    SmtpScript,
    free_tcp_port,
    parse_smtp_sink_dump,
)

MESSAGE = (
    b"From: sender@origin.test\r\n"
    b"To: a@dest.test, b@dest.test\r\n"
    b"Subject: support check\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b".leading dot is stuffed on the wire\r\n"
    b"..two dots\r\n"
    b"caf\xc3\xa9\r\n"
    b"\r\n"
    b"last line\r\n"
)


@pytest.fixture
def port():
    return free_tcp_port("127.0.0.2", "127.0.0.3")


@pytest.fixture
def sink(port):
    with RecordingSink("127.0.0.2", port) as server:
        yield server


def send(host, port, recipients, message=MESSAGE, sender="sender@origin.test", **options):
    with smtplib.SMTP(host, port, timeout=10) as client:
        return client.sendmail(sender, recipients, message, **options)


def smtp_session(host, port, lines):
    """Send raw SMTP command lines, returning each reply's first line, for steps smtplib cannot do."""
    replies = []
    with socket.create_connection((host, port), timeout=10) as connection:
        reader = connection.makefile("rb")

        def read_reply():
            line = reader.readline()
            while line[3:4] == b"-":
                line = reader.readline()
            return line

        replies.append(read_reply())
        for line in lines:
            connection.sendall(line)
            replies.append(read_reply())
    return replies


# RecordingSink


def test_recording_sink_two_recipients(sink, port):
    refused = send("127.0.0.2", port, ["a@dest.test", "b@dest.test"], mail_options=["BODY=8BITMIME"])

    [message] = sink.wait_for(1, timeout=5)
    assert refused == {}
    assert message.mail_from == "sender@origin.test"
    assert message.rcpt_tos == ("a@dest.test", "b@dest.test")
    assert message.content == MESSAGE
    assert "BODY=8BITMIME" in message.mail_options
    assert message.helo is not None
    assert message.peer[0] == "127.0.0.1"
    assert abs(message.arrival_time - time.time()) < 5


def test_recording_sink_null_sender(sink, port):
    send("127.0.0.2", port, ["a@dest.test"], sender="")

    assert sink.wait_for(1, timeout=5)[0].mail_from == "<>"


def test_recording_sink_announces_extensions(sink, port):
    with smtplib.SMTP("127.0.0.2", port, timeout=10) as client:
        client.ehlo("client.test")

        assert client.has_extn("8bitmime")
        assert client.has_extn("smtputf8")
        assert client.esmtp_features["size"] == str(64 * 1024 * 1024)


def test_recording_sink_smtputf8(sink, port):
    send("127.0.0.2", port, ["usér@dest.test"], mail_options=["SMTPUTF8"])

    [message] = sink.wait_for(1, timeout=5)
    assert message.rcpt_tos == ("usér@dest.test",)
    assert "SMTPUTF8" in message.mail_options


def test_recording_sink_scripted_rcpt_replies(port):
    script = SmtpScript(rcpt={"Bounce@dest.test": "550 5.1.1 No such user", "later@dest.test": "451 4.3.0 Try later"})

    with RecordingSink("127.0.0.2", port, script) as sink:
        refused = send("127.0.0.2", port, ["ok@dest.test", "bounce@dest.test", "later@dest.test"])
        [message] = sink.wait_for(1, timeout=5)
        events = sink.events

    assert refused == {
        "bounce@dest.test": (550, b"5.1.1 No such user"),
        "later@dest.test": (451, b"4.3.0 Try later"),
    }
    assert message.rcpt_tos == ("ok@dest.test",)
    rcpt_replies = [(event.address, event.reply[:3]) for event in events if event.command == "RCPT"]
    assert rcpt_replies == [("ok@dest.test", "250"), ("bounce@dest.test", "550"), ("later@dest.test", "451")]


def test_recording_sink_all_recipients_refused(port):
    with RecordingSink("127.0.0.2", port, SmtpScript(rcpt_default="550 5.1.1 No such user")) as sink:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send("127.0.0.2", port, ["a@dest.test"])

        assert sink.messages == []


def test_recording_sink_greeting_421(port):
    with RecordingSink("127.0.0.2", port, SmtpScript(greeting="421 4.3.2 Service not available")) as sink:
        with pytest.raises(smtplib.SMTPConnectError) as raised:
            smtplib.SMTP("127.0.0.2", port, timeout=10)

        assert raised.value.smtp_code == 421
        assert sink.messages == []


def test_recording_sink_greeting_closes_connection(port):
    with RecordingSink("127.0.0.2", port, SmtpScript(greeting="421 4.3.2 Service not available")):
        with socket.create_connection(("127.0.0.2", port), timeout=5) as connection:
            received = connection.makefile("rb").read()

    assert received == b"421 4.3.2 Service not available\r\n"


def test_recording_sink_mail_reply(port):
    with RecordingSink("127.0.0.2", port, SmtpScript(mail="451 4.7.1 Greylisted")) as sink:
        with pytest.raises(smtplib.SMTPSenderRefused) as raised:
            send("127.0.0.2", port, ["a@dest.test"])

        assert raised.value.smtp_code == 451
        assert sink.messages == []


def test_recording_sink_data_reply(port):
    with RecordingSink("127.0.0.2", port, SmtpScript(data="554 5.7.1 Message rejected")) as sink:
        with pytest.raises(smtplib.SMTPDataError) as raised:
            send("127.0.0.2", port, ["a@dest.test"])

        assert raised.value.smtp_code == 554
        assert sink.messages == []
        assert [event.command for event in sink.events] == ["MAIL", "RCPT", "DATA"]


def test_recording_sink_positive_data_reply_records(port):
    with RecordingSink("127.0.0.2", port, SmtpScript(data="250 2.0.0 Queued as ABC")) as sink:
        send("127.0.0.2", port, ["a@dest.test"])

        assert len(sink.wait_for(1, timeout=5)) == 1


def test_recording_sink_script_change_while_running(sink, port):
    sink.script = SmtpScript(rcpt_default="451 4.3.0 Try later")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send("127.0.0.2", port, ["later@dest.test"])

    sink.update_script(rcpt_default=None)
    send("127.0.0.2", port, ["later@dest.test"])

    [message] = sink.wait_for(1, timeout=5)
    assert message.rcpt_tos == ("later@dest.test",)


def test_recording_sink_several_addresses_same_port(port):
    with RecordingSink("127.0.0.2", port) as first, RecordingSink("127.0.0.3", port) as second:
        send("127.0.0.3", port, ["b@dest.test"])

        assert second.wait_for(1, timeout=5)[0].rcpt_tos == ("b@dest.test",)
        assert first.messages == []


def test_recording_sink_restart_keeps_records(port):
    sink = RecordingSink("127.0.0.2", port)
    with sink:
        send("127.0.0.2", port, ["a@dest.test"])

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=5)
    with sink:
        send("127.0.0.2", port, ["b@dest.test"])

    assert [message.rcpt_tos for message in sink.messages] == [("a@dest.test",), ("b@dest.test",)]


def test_recording_sink_wait_for_times_out(sink):
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        sink.wait_for(1, timeout=0.2)

    assert time.monotonic() - started < 2


def test_recording_sink_large_message(sink, port):
    body = b"".join(b"line %07d of a large message\r\n" % number for number in range(100_000))
    message = b"Subject: large\r\n\r\n" + body

    send("127.0.0.2", port, ["a@dest.test"], message=message)

    assert sink.wait_for(1, timeout=10)[0].content == message


def test_smtp_script_rejects_invalid_reply():
    with pytest.raises(ValueError):
        SmtpScript(rcpt={"a@dest.test": "no code"})
    with pytest.raises(ValueError):
        SmtpScript(greeting="42 short")


# PostfixSink


def smtp_sink_pids():
    result = subprocess.run(["pgrep", "-x", "smtp-sink"], capture_output=True, text=True)
    return set(result.stdout.split())


def test_postfix_sink_round_trip(tmp_path, port):
    with PostfixSink("127.0.0.2", port, tmp_path / "dump") as sink:
        refused = send("127.0.0.2", port, ["a@dest.test", "b@dest.test"], mail_options=["BODY=8BITMIME"])
        [message] = sink.wait_for(1, timeout=5)

    assert refused == {}
    assert message.mail_from == "sender@origin.test"
    assert message.rcpt_tos == ("a@dest.test", "b@dest.test")
    assert message.mail_options == ("BODY=8BITMIME",)
    assert message.content == MESSAGE
    assert message.peer == ("127.0.0.1", None)


def test_postfix_sink_null_sender_and_order(tmp_path, port):
    with PostfixSink("127.0.0.2", port, tmp_path / "dump") as sink:
        send("127.0.0.2", port, ["first@dest.test"], sender="")
        time.sleep(0.02)
        send("127.0.0.2", port, ["second@dest.test"])
        messages = sink.wait_for(2, timeout=5)

    assert [message.mail_from for message in messages] == ["<>", "sender@origin.test"]
    assert [message.rcpt_tos for message in messages] == [("first@dest.test",), ("second@dest.test",)]


def test_postfix_sink_hard_rcpt_reject(tmp_path, port):
    with PostfixSink("127.0.0.2", port, tmp_path / "dump", hard_reject=("RCPT",)) as sink:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
            send("127.0.0.2", port, ["a@dest.test"])
        time.sleep(0.2)

        assert raised.value.recipients == {"a@dest.test": (500, b"5.3.0 Error: command failed")}
        assert sink.messages == []


def test_postfix_sink_soft_rcpt_reject(tmp_path, port):
    with PostfixSink("127.0.0.2", port, tmp_path / "dump", soft_reject=("RCPT",)):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
            send("127.0.0.2", port, ["a@dest.test"])

    assert raised.value.recipients["a@dest.test"][0] == 450


def test_postfix_sink_custom_hard_reply(tmp_path, port):
    options = {"hard_reject": ("MAIL",), "hard_reject_reply": "550 5.7.1 Policy rejection"}
    with PostfixSink("127.0.0.2", port, tmp_path / "dump", **options):
        with pytest.raises(smtplib.SMTPSenderRefused) as raised:
            send("127.0.0.2", port, ["a@dest.test"])

    assert raised.value.smtp_code == 550
    assert raised.value.smtp_error == b"5.7.1 Policy rejection"


def test_postfix_sink_disconnect(tmp_path, port):
    with PostfixSink("127.0.0.2", port, tmp_path / "dump", disconnect=("MAIL",)):
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send("127.0.0.2", port, ["a@dest.test"])


def test_postfix_sink_disconnect_421(tmp_path, port):
    with PostfixSink("127.0.0.2", port, tmp_path / "dump", disconnect_421=("DATA",)):
        with pytest.raises(smtplib.SMTPDataError) as raised:
            send("127.0.0.2", port, ["a@dest.test"])

    assert raised.value.smtp_code == 421


def test_postfix_sink_skips_transaction_in_progress(tmp_path, port):
    with PostfixSink("127.0.0.2", port, tmp_path / "dump") as sink:
        with socket.create_connection(("127.0.0.2", port), timeout=10) as connection:
            reader = connection.makefile("rb")
            reader.readline()
            connection.sendall(b"HELO client.test\r\nMAIL FROM:<a@origin.test>\r\nRCPT TO:<b@dest.test>\r\n")
            connection.sendall(b"DATA\r\nSubject: partial\r\n\r\nbody\r\n")
            time.sleep(0.3)
            during = sink.messages
            connection.sendall(b".\r\nQUIT\r\n")
            reader.read()
        after = sink.wait_for(1, timeout=5)

    assert during == []
    assert after[0].content == b"Subject: partial\r\n\r\nbody\r\n"
    assert after[0].helo == "client.test"


def test_postfix_sink_aborted_transaction_leaves_nothing(tmp_path, port):
    dump_dir = tmp_path / "dump"
    with PostfixSink("127.0.0.2", port, dump_dir) as sink:
        lines = [b"EHLO client.test\r\n", b"MAIL FROM:<a@origin.test>\r\n", b"RCPT TO:<b@dest.test>\r\n", b"RSET\r\n"]
        replies = smtp_session("127.0.0.2", port, lines)
        time.sleep(0.2)

        assert [reply[:3] for reply in replies] == [b"220", b"250", b"250", b"250", b"250"]
        assert sink.messages == []
        assert list(dump_dir.glob("msg-*")) == []


def test_postfix_sink_stop_ends_process(tmp_path, port):
    sink = PostfixSink("127.0.0.2", port, tmp_path / "dump")

    sink.start()
    pid = str(sink._process.pid)
    sink.stop()

    assert pid not in smtp_sink_pids()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=5)


def test_postfix_sink_start_failure_reported(tmp_path, port):
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.2", port))
        occupant.listen()

        with pytest.raises(RuntimeError, match="smtp-sink exited"):
            PostfixSink("127.0.0.2", port, tmp_path / "dump").start()


def test_parse_smtp_sink_dump_fields():
    dump = (
        b"X-Client-Addr: 127.0.0.1\n"
        b"X-Client-Proto: ESMTP\n"
        b"X-Helo-Args: client.test\n"
        b"X-Mail-Args: <a@origin.test> SIZE=10 BODY=8BITMIME\n"
        b"X-Rcpt-Args: <b@dest.test>\n"
        b"X-Rcpt-Args: <c@dest.test> NOTIFY=NEVER\n"
        b"Received: from client.test ([127.0.0.1])\n"
        b"\tby smtp-sink (smtp-sink) with ESMTP id 1234abcd;\n"
        b"\tFri,  4 Dec 2026 20:20:31 +0000 (UTC)\n"
        b"Subject: x\n"
        b"\n"
        b"body\n"
        b"\n"
    )

    message = parse_smtp_sink_dump(dump)

    assert message.mail_from == "a@origin.test"
    assert message.mail_options == ("SIZE=10", "BODY=8BITMIME")
    assert message.rcpt_tos == ("b@dest.test", "c@dest.test")
    assert message.rcpt_options == ("NOTIFY=NEVER",)
    assert message.helo == "client.test"
    assert message.content == b"Subject: x\r\n\r\nbody\r\n"
