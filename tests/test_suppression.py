"""Tests for relayd.suppression: address form, hard-bounce codes, CSV and the list's bounce policy."""

import io

import pytest

from relayd.config.model import SuppressionConfig
from relayd.reply import Reply
from relayd.state import Suppression
from relayd.suppression import (
    SuppressionList,
    code_matches,
    normalize_address,
    parse_address,
    read_csv,
    suppresses,
    write_csv,
)

DEFAULT_CODES = SuppressionConfig().codes


@pytest.mark.parametrize(
    ("address", "normalized"),
    [
        ("User@Example.COM", "user@example.com"),
        ("jörg@Bücher.example", "jörg@xn--bcher-kva.example"),
        ('"a b"@example.com', '"a b"@example.com'),
        ("postmaster", "postmaster"),
    ],
)
def test_normalize_address(address, normalized):
    assert normalize_address(address) == normalized


@pytest.mark.parametrize("text", ["user@example.com", "<User@Example.com>", " user@example.com "])
def test_parse_address_accepts(text):
    assert parse_address(text) == "user@example.com"


@pytest.mark.parametrize("text", ["", "no-at-sign", "user@", "user@[192.0.2.1]", "a\nb@example.com"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError, match="invalid address"):
        parse_address(text)


@pytest.mark.parametrize(
    ("status", "pattern", "matches"),
    [
        ("5.1.1", "5.1.1", True),
        ("5.1.10", "5.1.1", False),
        ("5.1.10", "5.1.x", True),
        ("5.2.1", "5.x.1", True),
        ("5.2.2", "5.1.x", False),
        ("5.1", "5.1.x", False),
    ],
)
def test_code_matches(status, pattern, matches):
    assert code_matches(status, pattern) is matches


@pytest.mark.parametrize(
    ("reply", "suppressed"),
    [
        (Reply(550, "5.1.1", "No such user"), True),
        (Reply(550, "5.1.10", "Null MX"), True),
        (Reply(550, "5.2.1", "Mailbox disabled"), True),
        (Reply(550, "5.1.6", "Mailbox moved"), True),
        (Reply(550, "5.7.1", "Rejected as spam"), False),
        (Reply(552, "5.2.2", "Mailbox full"), False),
        (Reply(550, "5.1.7", "Bad sender address"), False),
        (Reply(550, "", "No such user"), False),
        (Reply(450, "4.1.1", "Try again"), False),
    ],
)
def test_default_codes(reply, suppressed):
    assert suppresses(reply, DEFAULT_CODES) is suppressed


ENTRIES = [
    Suppression("a@example.com", "550 5.1.1 No such user", "bounce", 1_700_000_000.0, 1_800_000_000.0),
    Suppression("b@example.com", 'said "stop", twice', "manual", 1_700_000_001.5),
]


def test_csv_round_trip():
    stream = io.StringIO()
    assert write_csv(ENTRIES, stream) == 2

    stream.seek(0)
    assert read_csv(stream, now=5.0) == ENTRIES


def test_csv_header_and_times():
    stream = io.StringIO()
    write_csv(ENTRIES, stream)

    lines = stream.getvalue().splitlines()
    assert lines[0] == "address,reason,source,created_at,expires_at"
    assert lines[1] == "a@example.com,550 5.1.1 No such user,bounce,2023-11-14T22:13:20.000Z,2027-01-15T08:00:00.000Z"
    assert lines[2].endswith(",manual,2023-11-14T22:13:21.500Z,")


def test_csv_address_column_enough():
    entries = read_csv(io.StringIO("address\nUser@Example.com\n"), now=42.0)

    assert entries == [Suppression("user@example.com", "added by an operator", "manual", 42.0, None)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: expected a header line naming at least the column 'address'"),
        ("email\nx@example.com\n", "line 1: expected a header line"),
        ("address,colour\nx@example.com,red\n", "line 1: unknown column 'colour'"),
        ("address\nx@example.com\nnot-an-address\n", "line 3: invalid address 'not-an-address'"),
        ("address,source\nx@example.com,robot\n", "line 2: invalid source 'robot'"),
        ("address,expires_at\nx@example.com,tomorrow\n", "line 2: invalid expires_at 'tomorrow'"),
    ],
)
def test_csv_errors_name_line(text, message):
    with pytest.raises(ValueError) as raised:
        read_csv(io.StringIO(text), now=0.0)

    assert str(raised.value).startswith(message)


def test_csv_reason_one_line():
    entries = read_csv(io.StringIO('address,reason\nx@example.com,"two\nlines"\n'), now=0.0)

    assert entries[0].reason == "two lines"


class FakeSuppressions:
    def __init__(self):
        self.added = []

    async def add_suppressions(self, entries):
        self.added.extend(entries)

    async def find_suppression(self, address, now):
        return next((e for e in self.added if e.address == address), None)


async def test_hard_bounce_added_with_ttl():
    store = FakeSuppressions()
    suppressions = SuppressionList(store, SuppressionConfig(ttl=60.0), clock=lambda: 1000.0)

    entry = await suppressions.add_bounce("Gone@Example.org", Reply(550, "5.1.1", "No such user", "RCPT"))

    assert entry == Suppression("gone@example.org", "550 5.1.1 No such user", "bounce", 1000.0, 1060.0)
    assert await suppressions.find("GONE@example.org") == entry


async def test_soft_bounce_not_added():
    store = FakeSuppressions()
    suppressions = SuppressionList(store, SuppressionConfig(), clock=lambda: 1000.0)

    assert await suppressions.add_bounce("a@example.org", Reply(550, "5.7.1", "Spam")) is None
    assert store.added == []


async def test_configured_codes_replace_defaults():
    store = FakeSuppressions()
    suppressions = SuppressionList(store, SuppressionConfig(codes=("5.7.x",)), clock=lambda: 1000.0)

    assert await suppressions.add_bounce("a@example.org", Reply(550, "5.1.1", "No such user")) is None
    assert await suppressions.add_bounce("a@example.org", Reply(550, "5.7.1", "Blocked")) is not None
