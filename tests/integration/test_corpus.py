"""Every corpus message relayed through the daemon arrives byte for byte intact."""

import os
import re
import smtplib
import subprocess
from pathlib import Path

import pytest


CORPUS = Path(os.environ.get("RELAYD_CORPUS") or Path(__file__).resolve().parents[3] / "shared" / "corpus") / "messages"
TOO_LONG = "long-lines-over-998-generated.eml"
MESSAGES = sorted(p.name for p in CORPUS.glob("*.eml"))


def as_submitted(raw: bytes) -> bytes:
    """Return the message as a client library sends it: CRLF line endings, ending in CRLF."""
    content = re.sub(rb"\r\n|\r|\n", b"\r\n", raw)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content


def has_field(content: bytes, name: bytes) -> bool:
    """Tell whether the header section has field `name`, obsolete "Name :" form included."""
    header = content.split(b"\r\n\r\n", 1)[0]
    return re.search(rb"(?im)^" + re.escape(name) + rb"[ \t]*:", header) is not None


def added_fields(prefix: bytes) -> list[bytes]:
    """Split the bytes relayd put in front of the content into header fields."""
    fields = re.split(rb"\r\n(?![ \t])", prefix)
    return [f for f in fields if f]


@pytest.fixture
def relay(dns_server, sinks, daemon):
    dns_server.add_mx("corpus.test", "mx1.corpus.test", 10)
    dns_server.add_mx("corpus.test", "mx2.corpus.test", 20)
    dns_server.add_a("mx1.corpus.test", "127.0.0.2")
    dns_server.add_a("mx2.corpus.test", "127.0.0.3")
    dns_server.start()
    preferred = sinks("127.0.0.2")
    backup = sinks("127.0.0.3")
    return daemon(dns=dns_server), preferred, backup


def test_corpus_is_present():
    assert len(MESSAGES) >= 30, f"corpus not found at {CORPUS}"


def test_corpus_relayed_byte_for_byte(relay):
    relayd, preferred, backup = relay
    recipients = ["first@corpus.test", "second@corpus.test"]
    expected = {}
    with relayd.smtp() as client:
        for name in MESSAGES:
            if name == TOO_LONG:
                continue
            content = as_submitted((CORPUS / name).read_bytes())
            options = [] if content.isascii() else ["BODY=8BITMIME"]
            tagged = f"X-Test-Name: {name}\r\n".encode() + content
            client.sendmail("sender@app.test", recipients, tagged, mail_options=options)
            expected[name] = tagged

    arrived = preferred.wait_for(len(expected), timeout=60)
    assert backup.messages == []
    by_name = {}
    for message in arrived:
        assert message.rcpt_tos == tuple(recipients), "both recipients in one transaction"
        name = re.search(rb"X-Test-Name: (\S+)\r\n", message.content).group(1).decode()
        by_name.setdefault(name, []).append(message)

    for name, tagged in expected.items():
        assert len(by_name.get(name, [])) == 1, f"{name}: delivered {len(by_name.get(name, []))} times"
        content = by_name[name][0].content
        assert content.endswith(tagged), f"{name}: content changed in transit"
        prefix = content[: -len(tagged)]
        fields = added_fields(prefix)
        names = [f.split(b":")[0].lower() for f in fields]
        expected_names = [b"received"]
        for field in (b"message-id", b"date"):
            if not has_field(tagged, field):
                expected_names.append(field)
        assert names == expected_names, f"{name}: added {names}"


def test_added_fields_only_when_missing(relay):
    relayd, preferred, _ = relay
    with_ids = b"Message-ID: <given@app.test>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nSubject: a\r\n\r\nbody\r\n"
    without = b"Subject: b\r\n\r\nbody\r\n"
    with relayd.smtp() as client:
        client.sendmail("sender@app.test", ["one@corpus.test"], with_ids)
        client.sendmail("sender@app.test", ["one@corpus.test"], without)
    first, second = sorted(preferred.wait_for(2), key=lambda m: b"Subject: a" not in m.content)
    first_fields = added_fields(first.content[: -len(with_ids)])
    second_fields = added_fields(second.content[: -len(without)])
    assert [f.split(b":")[0] for f in first_fields] == [b"Received"]
    assert [f.split(b":")[0] for f in second_fields] == [b"Received", b"Message-ID", b"Date"]


def test_long_line_refused_after_final_dot(relay):
    relayd, preferred, _ = relay
    content = as_submitted((CORPUS / TOO_LONG).read_bytes())
    with relayd.smtp() as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("sender@app.test", ["one@corpus.test"], content)
        assert refused.value.smtp_code == 550
        text = refused.value.smtp_error.decode()
        assert text.startswith("5.6.0 ")
        assert "quoted-printable or base64" in text

        # The session stays usable, and a line of exactly 998 octets passes.
        exact = b"Subject: edge\r\n\r\n" + b"y" * 998 + b"\r\n"
        client.sendmail("sender@app.test", ["one@corpus.test"], exact)
    arrived = preferred.wait_for(1)
    assert arrived[0].content.endswith(exact)
    assert len(preferred.messages) == 1


def test_swaks_to_postfix_smtp_sink(postfix_sink, daemon, mx_port, tmp_path):
    """A real client (swaks) in, a real MTA test peer (smtp-sink) out."""
    smtp_sink = postfix_sink("127.0.0.4")
    relayd = daemon({"routes": {"swaks.test": f"127.0.0.4:{mx_port}"}})
    name = "multipart-alternative-password-reset-generated.eml"
    content = as_submitted((CORPUS / name).read_bytes())
    data_file = tmp_path / "message.eml"
    # swaks ends the data with CRLF "." CRLF itself, so the file goes without its last CRLF.
    data_file.write_bytes(content[:-2])
    result = subprocess.run(
        [
            "swaks", "--server", f"127.0.0.1:{relayd.smtp_port}", "--helo", "client.test",
            "--from", "app@sender.test", "--to", "one@swaks.test,two@swaks.test",
            "--data", f"@{data_file}",
        ],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as " in result.stdout
    arrived = smtp_sink.wait_for(1)
    assert arrived[0].rcpt_tos == ("one@swaks.test", "two@swaks.test")
    assert arrived[0].content.endswith(content)
