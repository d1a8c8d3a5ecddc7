"""Tests for relayd.headers: reading one field, and removing fields byte for byte."""

import pytest

from relayd.headers import header_field, header_fields, remove_fields


@pytest.mark.parametrize(
    ("content", "name", "value"),
    [
        (b"Message-ID: <a@b>\r\n\r\nbody\r\n", "message-id", "<a@b>"),
        (b"message-id:\r\n <folded@b>\r\n\r\n", "Message-ID", "<folded@b>"),
        (b"Message-ID : <obsolete@b>\r\n\r\n", "message-id", "<obsolete@b>"),
        (b"Subject: x\r\n\r\nMessage-ID: <in-body@b>\r\n", "message-id", None),
        (b"X-A: 1\r\nX-A: 2\r\n\r\n", "x-a", "1"),
        (b"Subject: caf\xc3\xa9\r\n\r\n", "subject", "caf\u00e9"),
        (b"Subject: \xff\r\n\r\n", "subject", "\ufffd"),
        (b"", "subject", None),
    ],
)
def test_header_field_table(content, name, value):
    assert header_field(content, name) == value


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"Idempotency-Key: k\r\nSubject: x\r\n\r\nbody\r\n", b"Subject: x\r\n\r\nbody\r\n"),
        (b"Subject: x\r\nidempotency-key: k\r\n\tcontinued\r\n\r\nbody\r\n", b"Subject: x\r\n\r\nbody\r\n"),
        (b"Idempotency-Key : k\r\nIdempotency-Key: j\r\n\r\n", b"\r\n"),
        (b"Subject: x\r\n\r\nIdempotency-Key: body line\r\n", b"Subject: x\r\n\r\nIdempotency-Key: body line\r\n"),
        (b"Subject: x\r\nIdempotency-Key: last", b"Subject: x\r\n"),
        (b"Subject: x\r\nIdempotency-Key: last\r\n", b"Subject: x\r\n"),
        (b"Idempotency-Key: only\r\n", b""),
        (b"Idempotency-Keys: other\r\n\r\n", b"Idempotency-Keys: other\r\n\r\n"),
        (b"\r\nIdempotency-Key: in the body\r\n", b"\r\nIdempotency-Key: in the body\r\n"),
        # A line that is no field, such as an mbox "From " line, stays with its continuation.
        (b"From sender\r\n more\r\nIdempotency-Key: k\r\n\r\n", b"From sender\r\n more\r\n\r\n"),
    ],
)
def test_remove_fields_table(content, expected):
    assert remove_fields(content, "Idempotency-Key") == expected


def test_remove_fields_keeps_content_identity():
    content = b"Subject: x\r\n\r\nbody\r\n"

    assert remove_fields(content, "Idempotency-Key") is content


def test_remove_fields_keeps_other_bytes():
    # Odd white space, obsolete "Name :" syntax and 8-bit octets in other fields stay as they are.
    content = b"Subject :  a\t \r\n \t b\r\nX-Relayd-Class: auth\r\nTo: \xc3\xa9@x\r\n\r\n\r\nbody \r\n"

    assert remove_fields(content, "x-relayd-class") == b"Subject :  a\t \r\n \t b\r\nTo: \xc3\xa9@x\r\n\r\n\r\nbody \r\n"


@pytest.mark.parametrize(
    ("content", "fields"),
    [
        (b"Subject: a\r\n b\r\n\r\n", [("subject", b"a b")]),
        (b"Subject: a\r\nTo: b", [("subject", b"a"), ("to", b"b")]),
        (b"From x\r\nDate : d\r\n\r\n", [("date", b"d")]),
        (b"\r\nSubject: body\r\n", []),
    ],
)
def test_header_fields_table(content, fields):
    assert header_fields(content) == fields
