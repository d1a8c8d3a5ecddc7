"""Tests for tag lists, DMARC record parsing, organizational domains and alignment modes."""

import socket

import pytest

from relayd.alignment import domains
from relayd.alignment.dmarc import DmarcLookup, DmarcRecord, InvalidRecord, is_dmarc_record, parse_record
from relayd.alignment.domains import is_aligned, organizational_domain
from relayd.alignment.taglist import parse_tag_list


def test_tag_list_basic():
    tags, errors = parse_tag_list("v=DKIM1; k=rsa; p=MIIB")

    assert tags == {"v": "DKIM1", "k": "rsa", "p": "MIIB"}
    assert errors == []


def test_tag_list_whitespace_and_trailing_semicolon():
    tags, errors = parse_tag_list(" v = DMARC1 ;\tp= none ;")

    assert tags == {"v": "DMARC1", "p": "none"}
    assert errors == []


def test_tag_list_value_with_inner_whitespace():
    tags, _ = parse_tag_list("p=MIIB AQAB\t CD")

    assert tags["p"] == "MIIB AQAB\t CD"


def test_tag_list_keeps_case_of_names():
    tags, _ = parse_tag_list("P=reject")

    assert tags == {"P": "reject"}


@pytest.mark.parametrize(
    "text, error",
    [
        ("v=DMARC1; novalue", "invalid tag 'novalue'"),
        ("v=DMARC1; 1p=none", "invalid tag '1p=none'"),
        ("v=DMARC1; p=none; p=reject", "tag p appears more than once"),
        ("v=DMARC1; p=\x01", "invalid value in tag p"),
    ],
)
def test_tag_list_errors(text, error):
    tags, errors = parse_tag_list(text)

    assert tags["v"] == "DMARC1"
    assert len(errors) == 1
    assert errors[0].startswith(error)


def test_tag_list_duplicate_keeps_first():
    tags, _ = parse_tag_list("p=none; p=reject")

    assert tags["p"] == "none"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("v=DMARC1; p=none", True),
        ("v=DMARC1", True),
        ("V = DMARC1; p=none", True),
        ("v=dmarc1; p=none", False),
        ("p=none; v=DMARC1", False),
        ("v=DMARC2; p=none", False),
        ("v=spf1 -all", False),
        ("", False),
    ],
)
def test_is_dmarc_record(text, expected):
    assert is_dmarc_record(text) is expected


def test_parse_full_record():
    record = parse_record("v=DMARC1; p=quarantine; sp=reject; adkim=s; aspf=s; pct=50; rua=mailto:d@example.com")

    assert record == DmarcRecord(
        policy="quarantine",
        subdomain_policy="reject",
        adkim="s",
        aspf="s",
        percent=50,
        report_uris=("mailto:d@example.com",),
    )


def test_parse_defaults():
    record = parse_record("v=DMARC1; p=none")

    assert record.subdomain_policy is None
    assert record.adkim == "r"
    assert record.aspf == "r"
    assert record.percent == 100
    assert record.problems == ()


def test_parse_keywords_case_insensitive():
    record = parse_record("v=DMARC1; P=Reject; ADKIM=S")

    assert record.policy == "reject"
    assert record.adkim == "s"


def test_parse_unknown_tags_ignored():
    record = parse_record("v=DMARC1; p=reject; fo=1; ri=86400; future=yes")

    assert record.policy == "reject"
    assert record.problems == ()


@pytest.mark.parametrize(
    "text, expected_error",
    [
        ("v=DMARC1", "p= is missing or invalid"),
        ("v=DMARC1; p=block", "p= is missing or invalid"),
        ("v=DMARC1; p=block; rua=not a uri", "p= is missing or invalid"),
        ("v=DMARC1; p=none; sp=maybe", "sp= is missing or invalid"),
        ("p=none", "does not start with"),
    ],
)
def test_parse_invalid_records(text, expected_error):
    with pytest.raises(InvalidRecord) as raised:
        parse_record(text)

    assert expected_error in str(raised.value)


def test_parse_unusable_rua_keeps_valid_policy():
    record = parse_record("v=DMARC1; p=none; rua=not a uri")

    assert record.policy == "none"
    assert record.report_uris == ()


def test_parse_invalid_policy_with_rua_reads_as_none():
    # RFC 7489 6.6.3 step 6.
    record = parse_record("v=DMARC1; p=block; rua=mailto:d@example.com!10m")

    assert record.policy == "none"
    assert record.report_uris == ("mailto:d@example.com",)
    assert "receivers read the record as p=none" in record.problems[0]


@pytest.mark.parametrize(
    "tag, problem",
    [
        ("adkim=x", 'adkim=x is invalid, so receivers use the default "r"'),
        ("aspf=strict", 'aspf=strict is invalid, so receivers use the default "r"'),
        ("pct=150", "pct=150 is invalid, so receivers use the default 100"),
        ("pct=-1", "pct=-1 is invalid, so receivers use the default 100"),
    ],
)
def test_parse_invalid_optional_tags_use_defaults(tag, problem):
    record = parse_record(f"v=DMARC1; p=reject; {tag}")

    assert record.policy == "reject"
    assert record.adkim == "r"
    assert record.aspf == "r"
    assert record.percent == 100
    assert record.problems == (problem,)


def test_applied_policy_own_record():
    lookup = DmarcLookup("mail.example.com", DmarcRecord("none", "reject"), "_dmarc.mail.example.com")

    assert lookup.applied_policy == "none"


def test_applied_policy_inherited_uses_sp():
    lookup = DmarcLookup("mail.example.com", DmarcRecord("none", "reject"), "_dmarc.example.com")

    assert lookup.applied_policy == "reject"


def test_applied_policy_inherited_without_sp():
    lookup = DmarcLookup("mail.example.com", DmarcRecord("quarantine"), "_dmarc.example.com")

    assert lookup.applied_policy == "quarantine"


def test_lookup_without_record_defaults_relaxed():
    lookup = DmarcLookup("example.com", None, problem="no DMARC record")

    assert lookup.adkim == "r"
    assert lookup.aspf == "r"
    assert lookup.applied_policy is None


@pytest.mark.parametrize(
    "domain, expected",
    [
        ("example.com", "example.com"),
        ("a.b.example.com", "example.com"),
        ("Mail.Example.COM.", "example.com"),
        ("example.co.uk", "example.co.uk"),
        ("bounce.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),
        ("com", "com"),
        # The private section of the list counts too.
        ("app.foo.github.io", "foo.github.io"),
        # A TLD missing from the list is a one-label suffix (the implicit "*" rule).
        ("mail.example.test", "example.test"),
        ("example.test", "example.test"),
    ],
)
def test_organizational_domain(domain, expected):
    assert organizational_domain(domain) == expected


@pytest.mark.parametrize(
    "domain, from_domain, mode, expected",
    [
        ("example.com", "example.com", "s", True),
        ("example.com", "example.com", "r", True),
        ("example.com", "mail.example.com", "r", True),
        ("example.com", "mail.example.com", "s", False),
        ("bounce.example.com", "news.example.com", "r", True),
        ("example.org", "example.com", "r", False),
        ("a.example.co.uk", "b.example.co.uk", "r", True),
        ("example1.co.uk", "example2.co.uk", "r", False),
        ("foo.github.io", "bar.github.io", "r", False),
    ],
)
def test_is_aligned(domain, from_domain, mode, expected):
    assert is_aligned(domain, from_domain, mode) is expected


def test_public_suffix_list_never_uses_network(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("the Public Suffix List code tried to open a network connection")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    extractor = domains.public_suffix_list()
    result = extractor.extract_str("mail.example.co.uk")

    assert result.suffix == "co.uk"
    assert list(tmp_path.iterdir()) == []
