"""The DKIM signer: key choice by From domain, the h= list, and signatures dkimpy accepts."""

import re
from types import SimpleNamespace

import dkim
import dns.resolver
import pytest
from structlog.testing import capture_logs

from relayd.commands.verify import dkim_results
from relayd.config.model import DkimKey
from relayd.dkim.keys import SigningKey, generate_key, load_key, write_private_file
from relayd.dkim.signer import Signer, signed_field_list
from relayd.headers import without_obsolete_names

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"

SIMPLE = b"From: App <app@example.com>\r\nTo: user@example.net\r\nSubject: Hello\r\n\r\nHello there.\r\n"


def stub_key(domain: str, selector: str = "s1", active: bool = True) -> SigningKey:
    """Return a key with no key material, for tests that only choose keys."""
    return SigningKey(domain, selector, RSA, b"", "", active)


@pytest.fixture(scope="module")
def real_keys(tmp_path_factory) -> dict[str, SigningKey]:
    """One generated RSA and one Ed25519 key for example.com."""
    directory = tmp_path_factory.mktemp("keys")
    keys = {}
    for algorithm, selector in ((RSA, "rsa1"), (ED25519, "ed1")):
        path = directory / f"{selector}.key"
        write_private_file(path, generate_key(algorithm))
        keys[algorithm] = load_key(DkimKey("example.com", selector, path, algorithm))
    return keys


def records(keys) -> dict[str, bytes]:
    return {key.record_name: key.txt_record().encode() for key in keys}


def dnsfunc_for(keys):
    """Return a dkimpy dnsfunc that serves the TXT records of `keys` by name."""
    published = records(keys)

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return published.get(name.decode().rstrip("."))

    return lookup


class RecordResolver:
    """A stand-in for dns.resolver.Resolver that serves the TXT records of some keys."""

    def __init__(self, keys):
        self.published = records(keys)

    def resolve(self, name, rdtype, search=False):
        assert rdtype == "TXT"
        if name not in self.published:
            raise dns.resolver.NXDOMAIN()
        return [SimpleNamespace(strings=[self.published[name]])]


def signature_fields(signatures: bytes) -> list[bytes]:
    """Split the bytes Signer.sign returns into one unfolded field per signature."""
    fields = re.split(rb"\r\n(?![ \t])", signatures)
    return [re.sub(rb"\r\n[ \t]", b" ", field) for field in fields if field]


def tags(field: bytes) -> dict[str, str]:
    """Return the tag=value pairs of one DKIM-Signature field, white space removed."""
    value = field.split(b":", 1)[1]
    compact = re.sub(rb"\s+", b"", value).decode("ascii")
    pairs = [item.split("=", 1) for item in compact.split(";") if item]
    return {name: text for name, text in pairs}


def verify_each(message: bytes, dnsfunc) -> list[bool]:
    """Verify every DKIM-Signature of `message` with dkimpy, top first."""
    verifier = dkim.DKIM(message)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    return [bool(verifier.verify(idx=index, dnsfunc=dnsfunc)) for index in range(count)]


# Key choice


@pytest.mark.parametrize(
    "domain, expected",
    [
        ("example.com", ["example.com"]),
        ("mail.example.com", ["example.com"]),
        ("a.b.mail.example.com", ["example.com"]),
        ("example.org", []),
        ("notexample.com", []),
        ("example.com.evil.test", []),
        ("com", []),
        ("", []),
    ],
)
def test_keys_for_domain(domain, expected):
    signer = Signer([stub_key("example.com")])
    assert [key.domain for key in signer.keys_for(domain)] == expected


def test_keys_for_nearest_parent():
    signer = Signer([stub_key("example.com", "outer"), stub_key("mail.example.com", "inner")])
    assert [key.selector for key in signer.keys_for("eu.mail.example.com")] == ["inner"]
    assert [key.selector for key in signer.keys_for("mail.example.com")] == ["inner"]
    assert [key.selector for key in signer.keys_for("www.example.com")] == ["outer"]


def test_tld_key_never_signs():
    signer = Signer([stub_key("com")])
    assert signer.keys_for("example.com") == []
    assert signer.keys_for("com") == []


def test_keys_for_all_active_keys():
    signer = Signer([stub_key("example.com", "a"), stub_key("example.org", "b"), stub_key("example.com", "c")])
    assert [key.selector for key in signer.keys_for("example.com")] == ["a", "c"]


def test_inactive_key_not_chosen():
    signer = Signer([stub_key("example.com", "old"), stub_key("example.com", "next", active=False)])
    assert [key.selector for key in signer.keys_for("example.com")] == ["old"]


def test_inactive_parent_not_chosen():
    signer = Signer([stub_key("example.com", "parent"), stub_key("mail.example.com", "next", active=False)])
    assert [key.selector for key in signer.keys_for("mail.example.com")] == ["parent"]


@pytest.mark.parametrize(
    "keys, expected",
    [
        ([], False),
        ([stub_key("example.com", active=False)], False),
        ([stub_key("example.com")], True),
        ([stub_key("example.com", active=False), stub_key("example.org")], True),
    ],
    ids=["none", "inactive", "active", "mixed"],
)
def test_has_keys(keys, expected):
    assert Signer(keys).has_keys is expected


# The h= list


@pytest.mark.parametrize(
    "header, expected",
    [
        (b"From: a@example.com\r\nTo: b@example.net\r\nSubject: s", ["from", "to", "subject", "from"]),
        (b"From: a@example.com", ["from", "from"]),
        (
            b"From: a@example.com\r\nTo: b@example.net\r\nTo: c@example.net\r\nCc: d@example.net",
            ["from", "to", "to", "cc", "from"],
        ),
        (b"FROM: a@example.com\r\nsUbJeCt: s\r\nMIME-VERSION: 1.0", ["from", "subject", "mime-version", "from"]),
        (b"Subject  : s\r\nFrom : a@example.com", ["from", "subject", "from"]),
        (b"Subject: s\r\n folded on\r\n two lines\r\nFrom: a@example.com", ["from", "subject", "from"]),
        (
            b"Received: from x by y\r\nX-Mailer: m\r\nDKIM-Signature: v=1\r\nFrom: a@example.com\r\nReturn-Path: <a@example.com>",
            ["from", "from"],
        ),
    ],
    ids=["basic", "from-only", "repeated", "case", "obsolete-colon", "folded", "unlisted"],
)
def test_signed_field_list(header, expected):
    content = header + b"\r\n\r\nTo: body line, not a field\r\n"
    assert signed_field_list(content) == [name.encode() for name in expected]


def test_field_list_every_listed_field():
    names = [
        "From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
        "MIME-Version", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post",
    ]
    content = b"".join(f"{name}: x\r\n".encode() for name in reversed(names)) + b"\r\nbody\r\n"

    include = signed_field_list(content)

    assert include == [name.lower().encode() for name in names] + [b"from"]


def test_field_list_omits_absent():
    include = signed_field_list(SIMPLE)
    assert b"cc" not in include
    assert b"date" not in include
    assert b"message-id" not in include


def test_field_list_omits_trace_fields():
    content = b"Received: from a by b\r\nX-Mailer: m\r\n" + SIMPLE
    include = signed_field_list(content)
    assert b"received" not in include
    assert b"x-mailer" not in include


def test_field_list_oversigns_from():
    content = b"From: a@example.com\r\nFrom: b@example.com\r\n\r\nbody\r\n"
    assert signed_field_list(content).count(b"from") == 3


# Signing


@pytest.mark.parametrize(
    "content",
    [
        b"To: user@example.net\r\nSubject: no author\r\n\r\nbody\r\n",
        b"From: a@example.com\r\nFrom: b@example.com\r\nSubject: two fields\r\n\r\nbody\r\n",
        b"From: a@example.com, b@example.com\r\nSubject: two addresses\r\n\r\nbody\r\n",
        b"From: undisclosed-recipients:;\r\nSubject: group\r\n\r\nbody\r\n",
        b"From: app@example.org\r\nSubject: other domain\r\n\r\nbody\r\n",
        b"From: app@com\r\nSubject: bare tld\r\n\r\nbody\r\n",
    ],
    ids=["no-from", "two-from-fields", "two-addresses", "group", "unrelated-domain", "bare-tld"],
)
def test_sign_skips_message(real_keys, content):
    signer = Signer(list(real_keys.values()))
    assert signer.sign(content) == (b"", [])


def test_sign_skips_inactive_key(tmp_path):
    path = tmp_path / "next.key"
    write_private_file(path, generate_key(ED25519))
    key = load_key(DkimKey("example.com", "next", path, ED25519, active=False))
    assert Signer([key]).sign(SIMPLE) == (b"", [])


def test_sign_with_both_keys(real_keys):
    keys = [real_keys[RSA], real_keys[ED25519]]

    signatures, used = Signer(keys).sign(SIMPLE)
    fields = signature_fields(signatures)

    assert used == keys
    assert signatures.endswith(b"\r\n")
    assert len(fields) == 2
    assert [tags(field)["a"] for field in fields] == [RSA, ED25519]
    assert verify_each(signatures + SIMPLE, dnsfunc_for(keys)) == [True, True]


@pytest.mark.parametrize("algorithm", [RSA, ED25519])
def test_signature_tags(real_keys, algorithm):
    key = real_keys[algorithm]
    signatures, _ = Signer([key]).sign(SIMPLE)

    signed = tags(signature_fields(signatures)[0])

    assert signed["c"] == "relaxed/relaxed"
    assert signed["d"] == "example.com"
    assert signed["s"] == key.selector
    assert signed["a"] == algorithm
    assert signed["h"] == "from:to:subject:from"
    assert "l" not in signed


def test_subdomain_signed_as_parent(real_keys):
    key = real_keys[ED25519]
    content = SIMPLE.replace(b"app@example.com", b"app@mail.example.com")

    signatures, used = Signer([key]).sign(content)

    assert used == [key]
    assert tags(signature_fields(signatures)[0])["d"] == "example.com"
    assert verify_each(signatures + content, dnsfunc_for([key])) == [True]


def test_uppercase_from_domain_signed(real_keys):
    key = real_keys[ED25519]
    content = SIMPLE.replace(b"app@example.com", b"app@EXAMPLE.Com")
    signatures, used = Signer([key]).sign(content)
    assert used == [key]
    assert verify_each(signatures + content, dnsfunc_for([key])) == [True]


def test_added_from_breaks_signature(real_keys):
    key = real_keys[RSA]
    signatures, _ = Signer([key]).sign(SIMPLE)
    forged = signatures + b"From: attacker@example.org\r\n" + SIMPLE
    assert verify_each(forged, dnsfunc_for([key])) == [False]


OBSOLETE = (
    b"From  : App <app@example.com>\r\n"
    b"To\t: user@example.net\r\n"
    b"Subject : Obsolete form\r\n"
    b"\r\n"
    b"Hello there.\r\n"
)


@pytest.mark.parametrize("algorithm", [RSA, ED25519])
def test_obsolete_colon_form_verifies(real_keys, algorithm):
    key = real_keys[algorithm]

    signatures, used = Signer([key]).sign(OBSOLETE)
    signed = signatures + OBSOLETE
    results = dkim_results(signed, RecordResolver([key]))

    assert used == [key]
    assert tags(signature_fields(signatures)[0])["h"] == "from:to:subject:from"
    assert [(result.result, result.header_d) for result in results] == [("pass", "example.com")]
    assert verify_each(without_obsolete_names(signed), dnsfunc_for([key])) == [True]


def test_unparsable_header_logged(real_keys):
    # "__" is neither a field nor a continuation line, so dkimpy rejects the header section.
    content = b"From: App <app@example.com>\r\nTo: user@example.net\r\n__\r\nSubject: s\r\n\r\nbody\r\n"

    with capture_logs() as logs:
        result = Signer([real_keys[RSA], real_keys[ED25519]]).sign(content)

    failures = [entry for entry in logs if entry["event"] == "dkim_sign_failed"]
    assert result == (b"", [])
    assert len(failures) == 1
    assert failures[0]["log_level"] == "warning"
    assert failures[0]["domain"] == "example.com"
    assert failures[0]["selector"] == "rsa1"
    assert "__" in failures[0]["error"]
