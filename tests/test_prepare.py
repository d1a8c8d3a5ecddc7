"""Tests for relayd.prepare: the Received field and the Message-ID and Date added when missing."""

import re
from datetime import datetime, timezone

import pytest

from relayd.prepare import header_names, prepare

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
NOW_TEXT = "Tue, 02 Jan 2024 03:04:05 +0000"

COMPLETE = (
    b"From: a@example.com\r\n"
    b"To: b@example.com\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <orig@example.com>\r\n"
    b"Subject: test\r\n"
    b"\r\n"
    b"body\r\n"
)
BARE = b"From: a@example.com\r\nSubject: test\r\n\r\nbody\r\n"


def _prepare(content: bytes, recipients=("b@example.com",), **overrides) -> bytes:
    arguments = {
        "queue_id": "0123456789ABCDEF01",
        "hostname": "relay.example.net",
        "client_ip": "192.0.2.7",
        "client_helo": "client.example.org",
        "protocol": "ESMTP",
        "recipients": list(recipients),
        "now": NOW,
    }
    arguments.update(overrides)
    return prepare(content, **arguments)


def _added(prepared: bytes, original: bytes) -> str:
    assert prepared.endswith(original)
    return prepared[: len(prepared) - len(original)].decode("utf-8")


def test_received_field_first():
    added = _added(_prepare(COMPLETE), COMPLETE)

    assert added.startswith("Received: from client.example.org ([192.0.2.7])\r\n")
    assert "\tby relay.example.net (relayd) with ESMTP id 0123456789ABCDEF01" in added
    assert added.endswith(f";\r\n\t{NOW_TEXT}\r\n")


def test_received_names_protocol():
    added = _added(_prepare(COMPLETE, protocol="ESMTPS"), COMPLETE)

    assert " with ESMTPS id " in added


def test_received_without_helo():
    added = _added(_prepare(COMPLETE, client_helo=""), COMPLETE)

    assert added.startswith("Received: from unknown ([192.0.2.7])")


def test_received_for_single_recipient():
    added = _added(_prepare(COMPLETE, recipients=["b@example.com"]), COMPLETE)

    assert "\tfor <b@example.com>;\r\n" in added


@pytest.mark.parametrize("recipients", [["b@example.com", "c@example.com"], []], ids=["two", "none"])
def test_received_without_for_clause(recipients):
    added = _added(_prepare(COMPLETE, recipients=recipients), COMPLETE)

    assert "for <" not in added
    assert "b@example.com" not in added
    assert " id 0123456789ABCDEF01;\r\n" in added


def test_complete_content_only_received():
    added = _added(_prepare(COMPLETE), COMPLETE)

    assert "Message-ID:" not in added
    assert "\r\nDate:" not in added
    assert added.count("\r\n\t") == 3


def test_missing_fields_added():
    added = _added(_prepare(BARE), BARE)

    assert re.search(r"\r\nMessage-ID: <0123456789ABCDEF01\.[0-9a-f]{8}@relay\.example\.net>\r\n", added)
    assert f"\r\nDate: {NOW_TEXT}\r\n" in added


def test_message_ids_differ():
    first = _added(_prepare(BARE), BARE)
    second = _added(_prepare(BARE), BARE)

    assert re.search(r"Message-ID: <[^>]+>", first).group() != re.search(r"Message-ID: <[^>]+>", second).group()


@pytest.mark.parametrize(
    "content",
    [
        b"message-id: <x@example.com>\r\nDATE: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n",
        b"MESSAGE-ID: <x@example.com>\r\ndate: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n",
    ],
    ids=["lower", "upper"],
)
def test_field_names_case_insensitive(content):
    added = _added(_prepare(content), content)

    assert "Message-ID:" not in added
    assert "Date:" not in added


@pytest.mark.parametrize(
    "content",
    [
        b"Subject: test\r\nDate : Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n",
        b"Date : Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@example.com>\r\n\r\nbody\r\n",
    ],
    ids=["later line", "first line"],
)
def test_obsolete_date_form_present(content):
    added = _added(_prepare(content), content)

    assert "Date:" not in added


def test_obsolete_form_keeps_other_fields():
    content = b"Date : Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@example.com>\r\n\r\nbody\r\n"
    added = _added(_prepare(content), content)

    assert "message-id" in header_names(content)
    assert "Message-ID:" not in added


HEADER_NAMES = {
    "plain": (b"Subject: a\r\nTo: b@example.com\r\n\r\nbody\r\n", {"subject", "to"}),
    "space before colon": (b"Date : x\r\n\r\n", {"date"}),
    "tab before colon": (b"Date\t: x\r\n\r\n", {"date"}),
    "folded value": (b"Subject: one\r\n two: not a field\r\n\tDate: nor this\r\n\r\n", {"subject"}),
    "empty value": (b"X-Empty:\r\n\r\n", {"x-empty"}),
    "body field": (b"Subject: a\r\n\r\nDate: in the body\r\n", {"subject"}),
}


@pytest.mark.parametrize(("content", "names"), HEADER_NAMES.values(), ids=HEADER_NAMES.keys())
def test_header_names_table(content, names):
    assert header_names(content) == names


def test_body_fields_ignored():
    content = b"Subject: test\r\n\r\nDate: not a header\r\nMessage-ID: <body@example.com>\r\n"
    added = _added(_prepare(content), content)

    assert "Message-ID:" in added
    assert "\r\nDate:" in added


def test_empty_header_section():
    content = b"\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <body@example.com>\r\n\r\nmore\r\n"
    added = _added(_prepare(content), content)

    assert header_names(content) == set()
    assert "Message-ID:" in added
    assert "\r\nDate:" in added


def test_no_header_body_separator():
    content = b"Subject: test\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    added = _added(_prepare(content), content)

    assert header_names(content) == {"subject", "date"}
    assert "\r\nDate:" not in added
    assert "Message-ID:" in added


def test_no_separator_no_final_crlf():
    content = b"Subject: test\r\nMessage-ID: <x@example.com>"

    assert header_names(content) == {"subject", "message-id"}


def test_mbox_from_line_skipped():
    content = (
        b"From sender@example.com Mon Jan  1 00:00:00 2024\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        b"Message-ID: <x@example.com>\r\n"
        b"\r\n"
        b"body\r\n"
    )
    added = _added(_prepare(content), content)

    assert header_names(content) == {"date", "message-id"}
    assert "Message-ID:" not in added
    assert "\r\nDate:" not in added


def test_empty_content():
    prepared = _prepare(b"")
    added = _added(prepared, b"")

    assert "Message-ID:" in added
    assert "\r\nDate:" in added


def test_utf8_envelope_encoded():
    added = _added(_prepare(COMPLETE, recipients=["用户@例え.jp"]), COMPLETE)

    assert "for <用户@例え.jp>;" in added


def test_default_now_is_current():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    prepared = _prepare(BARE, now=None)
    added = _added(prepared, BARE)
    stamp = re.search(r"\r\nDate: (.+)\r\n", added).group(1)
    parsed = datetime.strptime(stamp, "%a, %d %b %Y %H:%M:%S %z")

    assert parsed >= before
    assert (parsed - before).total_seconds() < 5
