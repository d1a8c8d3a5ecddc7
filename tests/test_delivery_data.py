"""Tests for the mail data relayd sends after DATA (relayd.delivery.data)."""

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from relayd.delivery.data import encode_data
from tests.integration.test_corpus import CORPUS, MESSAGES


def aiosmtplib_encoding(content: bytes) -> bytes:
    """What aiosmtplib's data() would have written for `content`."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(content)) + b".\r\n"


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"Subject: a\r\n\r\nbody\r\n", b"Subject: a\r\n\r\nbody\r\n.\r\n"),
        (b"Subject: a\r\n\r\n.hidden\r\n..two\r\n.\r\n", b"Subject: a\r\n\r\n..hidden\r\n...two\r\n..\r\n.\r\n"),
        (b".first line\r\n", b"..first line\r\n.\r\n"),
        (b"no line end", b"no line end\r\n.\r\n"),
        (b"", b"\r\n.\r\n"),
        (b"lf\nonly\n.dot\n", b"lf\r\nonly\r\n..dot\r\n.\r\n"),
        (b"bare\rcr\r\n", b"bare\r\ncr\r\n.\r\n"),
        (b"ends in cr\r", b"ends in cr\r\n.\r\n"),
    ],
)
def test_encode_data_stuffing_and_crlf(content, expected):
    assert encode_data(content) == expected


@pytest.mark.parametrize("content", [b"a\r\n.b\r\n", b"x\n.\r.\r\n.", b"\r\r\n\n.", b"." * 5])
def test_encode_data_matches_aiosmtplib_on_edge_cases(content):
    assert encode_data(content) == aiosmtplib_encoding(content)


@pytest.mark.parametrize("name", MESSAGES)
def test_encode_data_matches_aiosmtplib_on_the_corpus(name):
    raw = (CORPUS / name).read_bytes()
    assert encode_data(raw) == aiosmtplib_encoding(raw)
