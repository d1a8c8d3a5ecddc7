"""MTA-STS policy parsing and MX matching (RFC 8461 3.2 and 4.1)."""

import pytest

from relayd.delivery.mta_sts import MAX_AGE_LIMIT, PolicyError, StsPolicy, parse_policy


def policy(mx: tuple[str, ...]) -> StsPolicy:
    return StsPolicy("example.com", "1", "enforce", mx, 86400, 0.0)


def test_parse_full_policy():
    parsed = parse_policy(
        "example.com", "abc", "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n", 10.0
    )
    assert parsed.mode == "enforce"
    assert parsed.mx == ("mx1.example.com", "*.example.net")
    assert parsed.max_age == 604800
    assert parsed.policy_id == "abc"


def test_max_age_capped_at_one_year():
    parsed = parse_policy("example.com", "1", "version: STSv1\nmode: testing\nmx: a.example.com\nmax_age: 99999999999\n", 0)
    assert parsed.max_age == MAX_AGE_LIMIT


@pytest.mark.parametrize(
    "body",
    [
        "mode: enforce\nmx: a.example.com\nmax_age: 1\n",
        "version: STSv2\nmode: enforce\nmx: a.example.com\nmax_age: 1\n",
        "version: STSv1\nmode: strict\nmx: a.example.com\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: soon\n",
        "version: STSv1\nmode: enforce\nmx a.example.com\nmax_age: 1\n",
    ],
    ids=["no-version", "wrong-version", "bad-mode", "no-mx", "bad-max-age", "no-colon"],
)
def test_invalid_policy_rejected(body):
    with pytest.raises(PolicyError):
        parse_policy("example.com", "1", body, 0)


@pytest.mark.parametrize(
    "pattern, host, expected",
    [
        ("mx.example.com", "mx.example.com", True),
        ("mx.example.com", "MX.Example.COM.", True),
        ("mx.example.com", "mx2.example.com", False),
        ("*.example.com", "mx.example.com", True),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "example.com", False),
    ],
)
def test_mx_pattern_matching(pattern, host, expected):
    assert policy((pattern,)).matches(host) is expected


def test_policy_expiry():
    cached = StsPolicy("example.com", "1", "enforce", ("a.example.com",), 100, 1000.0)
    assert not cached.expired(1099.0)
    assert cached.expired(1100.0)
