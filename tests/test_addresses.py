"""Tests for relayd.addresses.parse_path and Address."""

import dataclasses

import pytest

from relayd.addresses import AddressError, Address, parse_path


def _build_domain(*label_sizes: int) -> str:
    """Build a valid domain from labels of the given lengths in octets."""
    return ".".join("a" * size for size in label_sizes)


LOCAL_64 = "l" * 64
DOMAIN_189 = _build_domain(63, 63, 57, 3)  # with LOCAL_64 the path is 256 octets
DOMAIN_190 = _build_domain(63, 63, 58, 3)
DOMAIN_256 = _build_domain(63, 63, 63, 62, 1)

# (text, smtputf8, expected local, expected domain, expected ascii_domain)
VALID = {
    "plain": ("user@example.com", False, "user", "example.com", "example.com"),
    "plus tag": ("user+tag@example.com", False, "user+tag", "example.com", "example.com"),
    "dotted local": ("first.last@example.com", False, "first.last", "example.com", "example.com"),
    "all atext": ("!#$%&'*+-/=?^_`{|}~@example.com", False, "!#$%&'*+-/=?^_`{|}~", "example.com", "example.com"),
    "quoted space": ('"john smith"@example.com', False, '"john smith"', "example.com", "example.com"),
    "quoted escaped quote": (r'"a\"b"@example.com', False, r'"a\"b"', "example.com", "example.com"),
    "quoted dots": ('".a..b."@example.com', False, '".a..b."', "example.com", "example.com"),
    "quoted at sign": ('"a@b"@example.com', False, '"a@b"', "example.com", "example.com"),
    "quoted empty": ('""@example.com', False, '""', "example.com", "example.com"),
    "ipv4 literal": ("user@[192.0.2.1]", False, "user", "[192.0.2.1]", "[192.0.2.1]"),
    "ipv6 literal": ("user@[IPv6:2001:db8::1]", False, "user", "[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
    "ipv6 with ipv4": (
        "user@[IPv6:::ffff:192.0.2.1]", False, "user", "[IPv6:::ffff:192.0.2.1]", "[IPv6:::ffff:192.0.2.1]"
    ),
    "source route": ("@a.example,@b.example:user@example.com", False, "user", "example.com", "example.com"),
    "mixed case": ("User@Example.COM", False, "User", "Example.COM", "example.com"),
    "a-label upper case": ("user@XN--BCHER-KVA.de", False, "user", "XN--BCHER-KVA.de", "xn--bcher-kva.de"),
    "digit label": ("user@3com.com", False, "user", "3com.com", "3com.com"),
    "label 63": ("user@" + _build_domain(63, 3), False, "user", _build_domain(63, 3), _build_domain(63, 3)),
    "local 64": (LOCAL_64 + "@example.com", False, LOCAL_64, "example.com", "example.com"),
    "path 256": (f"{LOCAL_64}@{DOMAIN_189}", False, LOCAL_64, DOMAIN_189, DOMAIN_189),
    "utf8 local": ("用户@example.com", True, "用户", "example.com", "example.com"),
    "utf8 local 64 octets": ("é" * 32 + "@example.com", True, "é" * 32, "example.com", "example.com"),
    "utf8 quoted": ('"用 户"@example.com', True, '"用 户"', "example.com", "example.com"),
    "utf8 domain": ("user@bücher.de", True, "user", "bücher.de", "xn--bcher-kva.de"),
    "utf8 domain upper case": ("user@BÜCHER.de", True, "user", "BÜCHER.de", "xn--bcher-kva.de"),
    "utf8 both": ("用户@例え.jp", True, "用户", "例え.jp", "xn--r8jz45g.jp"),
    "ideographic full stop": ("user@例え。jp", True, "user", "例え。jp", "xn--r8jz45g.jp"),
    "ascii under smtputf8": ("user@Example.com", True, "user", "Example.com", "example.com"),
}


@pytest.mark.parametrize(
    ("text", "smtputf8", "local", "domain", "ascii_domain"), VALID.values(), ids=VALID.keys()
)
@pytest.mark.parametrize("role", ["sender", "recipient"])
def test_parse_path_valid(text, smtputf8, local, domain, ascii_domain, role):
    address = parse_path(text, smtputf8=smtputf8, role=role)

    assert address is not None
    assert address.local == local
    assert address.domain == domain
    assert address.ascii_domain == ascii_domain


def test_null_sender_returns_none():
    assert parse_path("", smtputf8=False, role="sender") is None


def test_empty_recipient_rejected():
    with pytest.raises(AddressError) as caught:
        parse_path("", smtputf8=False, role="recipient")

    assert caught.value.enhanced == "5.1.3"
    assert "recipient address is empty" in str(caught.value)


def test_unknown_role_rejected():
    with pytest.raises(ValueError, match="role must be"):
        parse_path("user@example.com", smtputf8=False, role="relay")


# (text, smtputf8, expected enhanced code for a recipient, text the message must contain)
INVALID = {
    "local double dot": ("a..b@example.com", False, "5.1.3", "two dots in a row"),
    "local leading dot": (".a@example.com", False, "5.1.3", "starts with a dot"),
    "local trailing dot": ("a.@example.com", False, "5.1.3", "ends with a dot"),
    "local space": ("a b@example.com", False, "5.1.3", "contains a space"),
    "local special": ("a(b@example.com", False, "5.1.3", "'(' (U+0028)"),
    "local empty": ("@example.com", False, "5.1.3", "local part before @ is empty"),
    "local 65": ("l" * 65 + "@example.com", False, "5.1.3", "local part is 65 octets long"),
    "local 66 utf8 octets": ("é" * 33 + "@example.com", True, "5.1.3", "local part is 66 octets long"),
    "quoted local 65": ('"' + "q" * 63 + '"@example.com', False, "5.1.3", "local part is 65 octets long"),
    "unclosed quote": ('"abc@example.com', False, "5.1.3", "no closing quote"),
    "escaped final quote": ('"abc\\"@example.com', False, "5.1.3", "no closing quote"),
    "text after quote": ('"a"b@example.com', False, "5.1.3", "text after its closing quote"),
    "escaped non-ascii": ('"a\\é"@example.com', True, "5.1.3", "only printable ASCII characters can be escaped"),
    "no at": ("user", False, "5.1.3", "the address has no @domain part"),
    "quoted no at": ('"user"', False, "5.1.3", "the address has no @domain part"),
    "two ats": ("a@b@example.com", False, "5.1.3", "more than one @"),
    "domain empty": ("user@", False, "5.1.3", "domain after @ is empty"),
    "domain trailing dot": ("user@example.com.", False, "5.1.3", "ends with a dot"),
    "domain leading dot": ("user@.example.com", False, "5.1.3", "empty label"),
    "domain double dot": ("user@example..com", False, "5.1.3", "empty label"),
    "label 64": ("user@" + _build_domain(64, 3), False, "5.1.3", "is 64 octets long, but the maximum is 63"),
    "domain 256": (f"user@{DOMAIN_256}", False, "5.1.3", "domain is 256 octets long"),
    "path 257": (f"{LOCAL_64}@{DOMAIN_190}", False, "5.1.3", "257 octets long including the angle brackets"),
    "hyphen first": ("user@-abc.com", False, "5.1.3", "starts with a hyphen"),
    "hyphen last": ("user@abc-.com", False, "5.1.3", "ends with a hyphen"),
    "underscore": ("user@ex_ample.com", False, "5.1.3", "'_' (U+005F)"),
    "dotless domain": ("user@localhost", False, "5.1.3", "has no dot"),
    "numeric tld": ("user@192.0.2.1", False, "5.1.3", "write it as an address literal"),
    "idna invalid": ("user@☃.com", True, "5.1.3", "'☃.com' is not a valid internationalized domain name"),
    "ipv4 octet 300": ("user@[300.1.1.1]", False, "5.1.3", "not a valid IPv4 address"),
    "ipv4 three octets": ("user@[192.0.2]", False, "5.1.3", "not a valid IPv4 address"),
    "ipv4 leading zero": ("user@[010.0.0.1]", False, "5.1.3", "not a valid IPv4 address"),
    "ipv6 bad hex": ("user@[IPv6:2001:db8::g]", False, "5.1.3", "not a valid IPv6 address"),
    "ipv6 zone": ("user@[IPv6:fe80::1%eth0]", False, "5.1.3", "has a zone index"),
    "ipv6 missing tag": ("user@[::1]", False, "5.1.3", "IPv6: tag"),
    "general literal": ("user@[x400:c=us]", False, "5.1.3", "uses the tag 'x400', which is not supported"),
    "literal unclosed": ("user@[192.0.2.1", False, "5.1.3", "must end with ']'"),
    "literal empty": ("user@[]", False, "5.1.3", "must end with ']' and contain an address"),
    "bad source route": ("@bad_host:user@example.com", False, "5.1.3", "source route '@bad_host:' is invalid"),
    "utf8 local without smtputf8": ("用户@example.com", False, "5.6.7", "must use the SMTPUTF8 extension"),
    "utf8 domain without smtputf8": ("user@bücher.de", False, "5.6.7", "'ü' (U+00FC)"),
    "utf8 quoted without smtputf8": ('"é"@example.com', False, "5.6.7", "must use the SMTPUTF8 extension"),
    "invalid utf8": ("us\udcc3er@example.com", True, "5.1.3", "byte 0xC3, which is not valid UTF-8"),
    "invalid utf8 without smtputf8": ("us\udcc3er@example.com", False, "5.1.3", "byte 0xC3, which is not valid UTF-8"),
    "lone surrogate": ("us\ud800er@example.com", True, "5.1.3", "surrogate code point U+D800"),
    "c1 control": ("us\x85er@example.com", True, "5.1.3", "a C1 control character (U+0085)"),
    "line separator": ("us\u2028er@example.com", True, "5.1.3", "a LINE SEPARATOR character (U+2028)"),
    "other control": ("us\x01er@example.com", False, "5.1.3", "a control character (U+0001)"),
}


@pytest.mark.parametrize(("text", "smtputf8", "enhanced", "fragment"), INVALID.values(), ids=INVALID.keys())
def test_parse_path_invalid(text, smtputf8, enhanced, fragment):
    with pytest.raises(AddressError) as caught:
        parse_path(text, smtputf8=smtputf8, role="recipient")

    assert caught.value.enhanced == enhanced
    assert fragment in str(caught.value)


CONTROLS = {
    "CR": ("\r", "U+000D"),
    "LF": ("\n", "U+000A"),
    "NUL": ("\x00", "U+0000"),
    "TAB": ("\t", "U+0009"),
    "DEL": ("\x7f", "U+007F"),
}
CONTROL_PLACES = {
    "dot-string": "us{}er@example.com",
    "quoted": '"us{}er"@example.com',
    "escaped in quotes": '"us\\{}er"@example.com',
    "domain": "user@exam{}ple.com",
    "source route": "@a{}.example:user@example.com",
}


@pytest.mark.parametrize("name", CONTROLS)
@pytest.mark.parametrize("template", CONTROL_PLACES.values(), ids=CONTROL_PLACES.keys())
@pytest.mark.parametrize("smtputf8", [False, True])
def test_control_character_rejected(name, template, smtputf8):
    char, code_point = CONTROLS[name]

    with pytest.raises(AddressError) as caught:
        parse_path(template.format(char), smtputf8=smtputf8, role="recipient")

    assert caught.value.enhanced == "5.1.3"
    assert f"a {name} character ({code_point})" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "enhanced"),
    [("a..b@example.com", "5.1.7"), ("us\rer@example.com", "5.1.7"), ("用户@example.com", "5.6.7")],
    ids=["syntax", "control", "non-ascii"],
)
def test_sender_error_code(text, enhanced):
    with pytest.raises(AddressError) as caught:
        parse_path(text, smtputf8=False, role="sender")

    assert caught.value.enhanced == enhanced


def test_address_error_is_value_error():
    with pytest.raises(ValueError):
        parse_path("user", smtputf8=False, role="recipient")


# (text, smtputf8, str(), for_delivery(), is_literal, needs_smtputf8)
PROPERTIES = {
    "ascii": ("User@Example.COM", False, "User@Example.COM", "User@example.com", False, False),
    "quoted": ('"a b"@example.com', False, '"a b"@example.com', '"a b"@example.com', False, False),
    "literal": ("user@[192.0.2.1]", False, "user@[192.0.2.1]", "user@[192.0.2.1]", True, False),
    "ipv6 literal": ("user@[IPv6:::1]", False, "user@[IPv6:::1]", "user@[IPv6:::1]", True, False),
    "utf8 domain": ("user@bücher.de", True, "user@bücher.de", "user@xn--bcher-kva.de", False, True),
    "utf8 local": ("用户@bücher.de", True, "用户@bücher.de", "用户@xn--bcher-kva.de", False, True),
    "source route": ("@a.example:user@example.com", False, "user@example.com", "user@example.com", False, False),
}


@pytest.mark.parametrize(
    ("text", "smtputf8", "as_text", "delivery", "is_literal", "needs_smtputf8"),
    PROPERTIES.values(),
    ids=PROPERTIES.keys(),
)
def test_address_views(text, smtputf8, as_text, delivery, is_literal, needs_smtputf8):
    address = parse_path(text, smtputf8=smtputf8, role="recipient")

    assert str(address) == as_text
    assert address.for_delivery() == delivery
    assert address.is_literal is is_literal
    assert address.needs_smtputf8 is needs_smtputf8


def test_address_is_frozen():
    address = Address(local="user", domain="example.com", ascii_domain="example.com")

    with pytest.raises(dataclasses.FrozenInstanceError):
        address.local = "other"
