"""Inbound rules through the running daemon: relay access, limits, addresses, smuggling."""

import smtplib
import socket
import time
from pathlib import Path

import pytest

SMUGGLING_SEPARATORS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-lf": b"\r.\n",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-cr": b"\n.\r",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-lf-dot-cr-lf-swapped": b"\n\r.\n\r",
}


@pytest.fixture
def relay(sinks, daemon):
    sink = sinks("127.0.0.2")
    relayd = daemon({"routes": {"dest.test": "127.0.0.2"}, "smtp": {"max_recipients": 3, "max_message_size": "20KB"}})
    return relayd, sink


class RawSession:
    """A line-level SMTP client, for input smtplib would correct or refuse to send."""

    def __init__(self, port: int, source: str = "127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        self.buffer = b""
        self.greeting = self.reply()

    def reply(self) -> bytes:
        while True:
            lines = self.buffer.split(b"\r\n")
            for index, line in enumerate(lines[:-1]):
                if len(line) >= 4 and line[3:4] == b" ":
                    reply = b"\r\n".join(lines[: index + 1])
                    self.buffer = b"\r\n".join(lines[index + 1 :])
                    return reply
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; buffered {self.buffer!r}")
            self.buffer += chunk

    def send(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def test_relay_denied_outside_allowed_networks(sinks, daemon):
    sinks("127.0.0.2")
    relayd = daemon({"routes": {"dest.test": "127.0.0.2"}, "smtp": {"allowed_networks": ["127.0.0.1/32"]}})
    session = RawSession(relayd.smtp_port, source="127.0.0.5")
    session.send(b"EHLO client.test\r\n")
    reply = session.send(b"MAIL FROM:<app@sender.test>\r\n")
    session.close()
    assert reply.startswith(b"550 5.7.1 ")
    assert b"127.0.0.5" in reply
    assert b"not in an allowed network" in reply
    assert relayd.wait_for_event("rejected", client="127.0.0.5")


def test_allowed_network_accepted(relay):
    relayd, sink = relay
    with relayd.smtp() as client:
        client.sendmail("app@sender.test", ["user@dest.test"], b"Subject: ok\r\n\r\nhi\r\n")
    assert len(sink.wait_for(1)) == 1


def test_ehlo_advertises_extensions(relay):
    relayd, _ = relay
    with relayd.smtp() as client:
        client.ehlo()
        for extension in ("pipelining", "8bitmime", "smtputf8", "size", "enhancedstatuscodes"):
            assert client.has_extn(extension), extension
        assert client.esmtp_features["size"] == "20000"


@pytest.mark.parametrize("name", sorted(SMUGGLING_SEPARATORS))
def test_smuggling_payload_refused(relay, name):
    relayd, sink = relay
    separator = SMUGGLING_SEPARATORS[name]
    smuggled = (
        b"MAIL FROM:<attacker@evil.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\nevil\r\n"
    )
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    assert session.send(b"MAIL FROM:<app@sender.test>\r\n").startswith(b"250")
    assert session.send(b"RCPT TO:<user@dest.test>\r\n").startswith(b"250")
    assert session.send(b"DATA\r\n").startswith(b"354")
    reply = session.send(b"Subject: first\r\n\r\nhello" + separator + smuggled + b".\r\n")
    assert reply.startswith(b"550 5.6.0 "), reply
    assert b"bare" in reply
    # The session is still in a clean state: a further command gets a normal reply.
    assert session.send(b"RSET\r\n").startswith(b"250 2.0.0")
    session.close()

    with relayd.smtp() as client:
        client.sendmail("app@sender.test", ["after@dest.test"], b"Subject: after\r\n\r\nok\r\n")
    arrived = sink.wait_for(1)
    time.sleep(0.3)
    assert len(sink.messages) == 1
    assert arrived[0].rcpt_tos == ("after@dest.test",)
    assert len(relayd.events("accepted")) == 1


def test_size_limit_at_data(relay):
    relayd, sink = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    session.send(b"MAIL FROM:<app@sender.test>\r\n")
    session.send(b"RCPT TO:<user@dest.test>\r\n")
    session.send(b"DATA\r\n")
    reply = session.send(b"Subject: big\r\n\r\n" + (b"x" * 900 + b"\r\n") * 30 + b".\r\n")
    # The session goes on after the refusal.
    assert session.send(b"RSET\r\n").startswith(b"250")
    session.close()
    assert reply.startswith(b"552 5.3.4 "), reply
    assert b"20000 bytes" in reply
    assert relayd.events("accepted") == []


def test_size_limit_at_mail(relay):
    relayd, _ = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    reply = session.send(b"MAIL FROM:<app@sender.test> SIZE=50000\r\n")
    session.close()
    assert reply.startswith(b"552 5.3.4 ")


def test_recipient_limit(relay):
    relayd, _ = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    session.send(b"MAIL FROM:<app@sender.test>\r\n")
    for n in range(3):
        assert session.send(b"RCPT TO:<user%d@dest.test>\r\n" % n).startswith(b"250 2.1.5")
    reply = session.send(b"RCPT TO:<user9@dest.test>\r\n")
    session.close()
    assert reply.startswith(b"452 4.5.3 ")
    assert b"at most 3" in reply


@pytest.mark.parametrize(
    "address, enhanced",
    [
        (b"us\rer@dest.test", b"5.1.3"),
        (b"us\x00er@dest.test", b"5.1.3"),
        (b'"us\rer"@dest.test', b"5.1.3"),
        (b"a..b@dest.test", b"5.1.3"),
        (b"user@-dest.test", b"5.1.3"),
        (b"user", b"5.1.3"),
        ("usér@dest.test".encode(), b"5.6.7"),
    ],
)
def test_invalid_recipient_address(relay, address, enhanced):
    relayd, _ = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    session.send(b"MAIL FROM:<app@sender.test>\r\n")
    reply = session.send(b"RCPT TO:<" + address + b">\r\n")
    session.close()
    assert reply.startswith(b"553 " + enhanced + b" "), reply


def test_utf8_address_with_smtputf8(relay):
    relayd, sink = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    assert session.send(b"MAIL FROM:<app@sender.test> SMTPUTF8\r\n").startswith(b"250")
    assert session.send("RCPT TO:<usér@dest.test>\r\n".encode()).startswith(b"250")
    assert session.send(b"DATA\r\n").startswith(b"354")
    assert session.send(b"Subject: utf8\r\n\r\nhi\r\n.\r\n").startswith(b"250 2.0.0 Ok: queued as ")
    session.close()
    arrived = sink.wait_for(1)
    assert arrived[0].rcpt_tos == ("usér@dest.test",)
    assert "SMTPUTF8" in arrived[0].mail_options


def test_null_sender_accepted(relay):
    relayd, sink = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    assert session.send(b"MAIL FROM:<>\r\n").startswith(b"250 2.1.0")
    session.send(b"RCPT TO:<user@dest.test>\r\n")
    session.send(b"DATA\r\n")
    assert session.send(b"Subject: dsn\r\n\r\nhi\r\n.\r\n").startswith(b"250")
    session.close()
    assert sink.wait_for(1)[0].mail_from == "<>"


def test_queued_reply_names_queue_id(relay):
    relayd, _ = relay
    with relayd.smtp() as client:
        client.ehlo()
        client.mail("app@sender.test")
        client.rcpt("user@dest.test")
        code, text = client.data(b"Subject: id\r\n\r\nhi\r\n")
    assert code == 250
    assert text.startswith(b"2.0.0 Ok: queued as ")
    queue_id = text.decode().rsplit(" ", 1)[1]
    assert relayd.wait_for_event("accepted", queue_id=queue_id)
    assert relayd.wait_for_event("delivered", queue_id=queue_id)


def test_commands_out_of_order(relay):
    relayd, _ = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    assert session.send(b"RCPT TO:<user@dest.test>\r\n").startswith(b"503 5.5.1 ")
    assert session.send(b"DATA\r\n").startswith(b"503 5.5.1 ")
    session.send(b"MAIL FROM:<app@sender.test>\r\n")
    assert session.send(b"MAIL FROM:<app@sender.test>\r\n").startswith(b"503 5.5.1 ")
    assert session.send(b"BOGUS\r\n").startswith(b"500 5.5.2 ")
    session.close()


def test_unsupported_parameters_are_named(relay):
    relayd, _ = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    assert session.send(b"MAIL FROM:<app@sender.test> RET=HDRS\r\n") == (
        b"555 5.5.4 Unsupported MAIL FROM parameter RET: this server supports SIZE, BODY, SMTPUTF8"
    )
    assert session.send(b"MAIL FROM:<app@sender.test> SIZE=abc\r\n") == (
        b"501 5.5.4 Invalid parameter: SIZE=abc is not a number of octets"
    )
    assert session.send(b"MAIL FROM:<app@sender.test> SIZE=100 BODY=8BITMIME\r\n").startswith(b"250 ")
    assert session.send(b"RCPT TO:<user@dest.test> NOTIFY=NEVER\r\n") == (
        b"555 5.5.4 Unsupported RCPT TO parameter NOTIFY: this server supports none"
    )
    assert session.send(b"RCPT TO:<user@dest.test>\r\n").startswith(b"250 ")
    assert session.send(b"EXPN staff\r\n").startswith(b"502 5.5.1 EXPN is not supported")
    assert session.send(b"HELP RCPT\r\n") == b"250 Syntax: RCPT TO: <address> [SP <mail-parameters>]"
    session.close()


def test_auth_and_starttls_not_supported(relay):
    relayd, _ = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    assert session.send(b"AUTH PLAIN AGFwcABzZWNyZXQ=\r\n").startswith(b"502 5.5.1 AUTH is not supported")
    assert session.send(b"STARTTLS\r\n").startswith(b"502 5.5.1 STARTTLS is not supported")
    session.close()
    reasons = [e["reason"] for e in relayd.wait_for_event("rejected", count=2)]
    assert reasons == ["AUTH attempted", "STARTTLS attempted"]


def test_nul_byte_refused(relay):
    relayd, sink = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    session.send(b"MAIL FROM:<app@sender.test>\r\n")
    session.send(b"RCPT TO:<user@dest.test>\r\n")
    session.send(b"DATA\r\n")
    reply = session.send(b"Subject: nul\r\n\r\na\x00b\r\n.\r\n")
    session.close()
    assert reply.startswith(b"550 5.6.0 "), reply
    assert b"NUL" in reply
    assert relayd.events("accepted") == []


def test_protocol_refusal_is_logged(relay):
    relayd, _ = relay
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    session.send(b"MAIL FROM:<app@sender.test> SIZE=50000\r\n")
    session.close()
    rejected = relayd.wait_for_event("rejected", reason="protocol")[0]
    assert rejected["reply"].startswith("552 5.3.4 ")
    closed = relayd.wait_for_event("session_closed")[0]
    assert closed["in_transaction"] is False


def test_idle_session_gets_421(sinks, daemon):
    relayd = daemon({"smtp": {"idle_timeout": "1s"}})
    session = RawSession(relayd.smtp_port)
    session.send(b"EHLO client.test\r\n")
    started = time.monotonic()
    reply = session.reply()
    session.close()
    assert reply.startswith(b"421 4.4.2 ")
    assert time.monotonic() - started >= 0.9
    assert relayd.wait_for_event("session_idle_timeout")


def test_spool_directory_private(relay):
    relayd, _ = relay
    spool = Path(relayd.config["server"]["spool_dir"])
    assert spool.stat().st_mode & 0o777 == 0o700
    assert (spool / "spool.db").stat().st_mode & 0o077 == 0
    assert (spool / "state.db").stat().st_mode & 0o077 == 0
