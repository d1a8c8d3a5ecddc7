"""Tests for relayd.smtp.content.check_content: bare line endings and line length."""

import pytest

from relayd.smtp import replies
from relayd.smtp.content import check_content

HEADER = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: test\r\n\r\n"

# (content, the bare line ending named in the rejection)
BARE_ENDINGS = {
    "bare lf": (HEADER + b"line one\nline two\r\n", "LF"),
    "bare cr": (HEADER + b"line one\rline two\r\n", "CR"),
    "cr cr lf": (HEADER + b"line one\r\r\nline two\r\n", "CR"),
    "lf cr lf": (HEADER + b"line one\n\r\n", "LF"),
    "lf dot lf smuggling": (
        HEADER + b"hello\r\n\n.\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\n",
        "LF",
    ),
    "cr lf dot lf": (HEADER + b"hello\r\n.\nQUIT\r\n", "LF"),
    "lf dot cr lf": (HEADER + b"hello\n.\r\nQUIT\r\n", "LF"),
    "trailing lf": (HEADER + b"body\n", "LF"),
    "trailing cr": (HEADER + b"body\r", "CR"),
    "bare lf in header": (b"Subject: a\nBcc: x@example.com\r\n\r\nbody\r\n", "LF"),
}


@pytest.mark.parametrize(("content", "what"), BARE_ENDINGS.values(), ids=BARE_ENDINGS.keys())
def test_bare_ending_rejected(content, what):
    reply = check_content(content)

    assert reply == replies.R550_BARE_LINE_ENDING.format(what=what)


def _line(octets: int) -> bytes:
    return b"x" * octets + b"\r\n"


# RFC 5321 4.5.3.1.6: at most 998 octets before the CRLF, in the header and the body alike.
LINE_LENGTHS = {
    "body 998": (HEADER + _line(998), None),
    "body 999": (HEADER + _line(999), replies.R550_LINE_TOO_LONG),
    "last line 999 no crlf": (HEADER + b"y" * 999, replies.R550_LINE_TOO_LONG),
    "header 998": (b"Subject: " + b"s" * 989 + b"\r\n\r\nbody\r\n", None),
    "header 999": (b"Subject: " + b"s" * 990 + b"\r\n\r\nbody\r\n", replies.R550_LINE_TOO_LONG),
    "two 998 lines": (HEADER + _line(998) * 2, None),
}


@pytest.mark.parametrize(("content", "expected"), LINE_LENGTHS.values(), ids=LINE_LENGTHS.keys())
def test_line_length_limit(content, expected):
    assert check_content(content) == expected


@pytest.mark.parametrize(
    "content",
    [HEADER + b"Hello,\r\n\r\n..leading dot kept\r\nbye\r\n", b"", b"\r\n", HEADER + "héllo".encode() + b"\r\n"],
    ids=["clean", "empty", "only crlf", "8bit body"],
)
def test_clean_content_accepted(content):
    assert check_content(content) is None
