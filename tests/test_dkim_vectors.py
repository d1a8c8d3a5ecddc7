"""Published DKIM test vectors (RFC 8463, RFC 6376, dkimpy's test data) against dkimpy and relayd's keys.

The DNS answers are the vectors' own record files, served by name, so
nothing is looked up on a network.
"""

import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import dkim
import pytest

from relayd.config.model import DkimKey
from relayd.dkim.keys import load_key
from relayd.dkim.signer import Signer

VECTORS = Path(os.environ.get("RELAYD_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus") / "dkim-vectors"

# RFC 8463 A.3: both signatures carry this t= and this body hash.
RFC8463_TIME = 1528637909
RFC8463_BODY_HASH = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="


def read(*parts: str) -> bytes:
    return VECTORS.joinpath(*parts).read_bytes()


def dkimpy_ed25519_record() -> bytes:
    # dkimpy's ed25519test.dns has no v= tag; RFC 6376 3.6.1 lets a record omit it.
    return b"v=DKIM1; " + read("dkimpy", "ed25519test.dns").strip()


def published_records() -> dict[str, bytes]:
    """Return the TXT record of each selector the vectors sign with, by DNS name."""
    return {
        "brisbane._domainkey.football.example.com": read("rfc8463", "brisbane._domainkey.football.example.com.txt").strip(),
        "test._domainkey.football.example.com": read("rfc8463", "test._domainkey.football.example.com.txt").strip(),
        "brisbane._domainkey.example.com": read("rfc6376", "brisbane._domainkey.example.com.txt").strip(),
        "sed._domainkey.test.ex": read("dkimpy", "eximtest.dns").strip(),
        "test._domainkey.example.com": read("dkimpy", "test.txt").strip(),
        "test._domainkey.example.net": dkimpy_ed25519_record(),
    }


def lookup(name: bytes, timeout: float = 5) -> bytes | None:
    """Return the published record for `name`, which dkimpy passes with a trailing dot."""
    return published_records().get(name.decode().rstrip("."))


def verify_each(message: bytes) -> list[bool]:
    """Verify every DKIM-Signature of `message`, top first. A signature dkimpy rejects counts as False."""
    verifier = dkim.DKIM(message)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    results = []
    for index in range(count):
        try:
            results.append(bool(verifier.verify(idx=index, dnsfunc=lookup)))
        except dkim.DKIMException:
            # dkimpy raises ValidationError on a body hash mismatch.
            results.append(False)
    return results


def tags(field_value: bytes) -> dict[str, str]:
    """Return the tag=value pairs of a DKIM-Signature value, white space removed."""
    compact = re.sub(rb"\s+", b"", field_value).decode("ascii")
    pairs = [item.split("=", 1) for item in compact.split(";") if item]
    return {name: text for name, text in pairs}


def published_signature(selector: str) -> dict[str, str]:
    """Return the tags of the RFC 8463 A.3 signature with s=`selector`."""
    message = dkim.DKIM(read("rfc8463", "message-signed.eml"))
    for name, value in message.headers:
        if name.lower() == b"dkim-signature" and tags(value)["s"] == selector:
            return tags(value)
    raise AssertionError(f"no published signature with s={selector}")


def private_copy(tmp_path, *parts: str) -> Path:
    """Copy a vector key file into tmp_path with mode 0600, which load_key requires."""
    path = tmp_path / parts[-1]
    shutil.copyfile(VECTORS.joinpath(*parts), path)
    path.chmod(0o600)
    return path


def test_vectors_present():
    assert (VECTORS / "rfc8463" / "message-signed.eml").is_file(), f"DKIM vectors not found at {VECTORS}"
    assert (VECTORS / "rfc6376" / "message-signed.eml").is_file()
    assert (VECTORS / "dkimpy" / "ed25519test2.msg").is_file()


# RFC 8463 (Ed25519-SHA256)


def test_rfc8463_both_signatures_verify():
    assert verify_each(read("rfc8463", "message-signed.eml")) == [True, True]


def test_rfc8463_tampered_body_fails():
    tampered = read("rfc8463", "message-signed.eml").replace(b"hungry", b"angry")
    assert verify_each(tampered) == [False, False]


@pytest.mark.parametrize(
    "selector, key_file, algorithm",
    [
        ("brisbane", "ed25519-private-seed.b64", "ed25519-sha256"),
        ("test", "rsa-private.pem", "rsa-sha256"),
    ],
)
def test_rfc8463_resign_reproduces_b(selector, key_file, algorithm):
    published = published_signature(selector)
    include = [name.encode() for name in published["h"].split(":")]
    private = read("rfc8463", key_file).strip() if algorithm == "ed25519-sha256" else read("rfc8463", key_file)
    signer = dkim.DKIM(read("rfc8463", "message-unsigned.eml"), signature_algorithm=algorithm.encode())

    # dkimpy takes t= from time.time() through its own module reference; pin it there only.
    with mock.patch.object(dkim, "time", SimpleNamespace(time=lambda: RFC8463_TIME)):
        field = signer.sign(
            selector.encode(),
            b"football.example.com",
            private,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
            identity=b"@football.example.com",
        )
    ours = tags(field.split(b":", 1)[1])

    assert published["t"] == str(RFC8463_TIME)
    assert ours["bh"] == RFC8463_BODY_HASH
    assert ours["b"] == published["b"]
    assert ours == published


# RFC 6376 (rsa-sha256, simple/simple)


def test_rfc6376_a2_verifies():
    assert verify_each(read("rfc6376", "message-signed.eml")) == [True]


def test_rfc6376_uncorrected_body_fails():
    # The RFC prints two spaces after "game.", but the errata-corrected body has one.
    original = read("rfc6376", "message-signed.eml").replace(b"game. Are", b"game.  Are")
    assert verify_each(original) == [False]


# dkimpy's test data


@pytest.mark.parametrize(
    "name, expected",
    [
        ("ed25519test2.msg", [True]),
        ("rfc6376.signed.msg", [True, True]),
    ],
    ids=["exim-ed25519", "dkimpy-simple"],
)
def test_dkimpy_signed_vectors_verify(name, expected):
    assert verify_each(read("dkimpy", name)) == expected


@pytest.mark.parametrize(
    "message, selector, domain, key_file, algorithm",
    [
        ("ed25519test.msg", "test", "example.net", "ed25519test.key", "ed25519-sha256"),
        ("test.message", "test", "example.com", "test.private", "rsa-sha256"),
    ],
)
@pytest.mark.parametrize("canonicalization", ["simple", "relaxed"])
def test_dkimpy_keys_sign_and_verify(message, selector, domain, key_file, algorithm, canonicalization):
    content = read("dkimpy", message)
    private = read("dkimpy", key_file).strip() if algorithm == "ed25519-sha256" else read("dkimpy", key_file)
    field = dkim.sign(
        content, selector.encode(), domain.encode(), private,
        canonicalize=(canonicalization.encode(), canonicalization.encode()),
        signature_algorithm=algorithm.encode(),
    )
    assert verify_each(field + content) == [True]


# relayd's key loading against the published keys


@pytest.mark.parametrize(
    "folder, key_file, algorithm, record",
    [
        ("rfc8463", "ed25519-private-seed.b64", "ed25519-sha256", "brisbane._domainkey.football.example.com.txt"),
        ("rfc8463", "rsa-private.pem", "rsa-sha256", "test._domainkey.football.example.com.txt"),
        ("rfc6376", "rsa-private.pem", "rsa-sha256", "brisbane._domainkey.example.com.txt"),
    ],
    ids=["rfc8463-ed25519", "rfc8463-rsa", "rfc6376-rsa"],
)
def test_loaded_key_matches_record(tmp_path, folder, key_file, algorithm, record):
    path = private_copy(tmp_path, folder, key_file)
    key = load_key(DkimKey("football.example.com", "brisbane", path, algorithm))
    published = tags(read(folder, record))
    assert tags(key.txt_record().encode())["p"] == published["p"]


def test_rfc8463_ed25519_txt_record_exact(tmp_path):
    path = private_copy(tmp_path, "rfc8463", "ed25519-private-seed.b64")
    key = load_key(DkimKey("football.example.com", "brisbane", path, "ed25519-sha256"))
    assert key.txt_record().encode() == read("rfc8463", "brisbane._domainkey.football.example.com.txt").strip()
    assert key.record_name == "brisbane._domainkey.football.example.com"


@pytest.mark.parametrize(
    "selector, key_file, algorithm",
    [
        ("brisbane", "ed25519-private-seed.b64", "ed25519-sha256"),
        ("test", "rsa-private.pem", "rsa-sha256"),
    ],
)
def test_relayd_signature_verifies_published(tmp_path, selector, key_file, algorithm):
    path = private_copy(tmp_path, "rfc8463", key_file)
    key = load_key(DkimKey("football.example.com", selector, path, algorithm))
    content = read("rfc8463", "message-unsigned.eml")

    field, used = Signer([key]).sign(content)
    signed = tags(field.split(b":", 1)[1])

    assert used == [key]
    assert signed["d"] == "football.example.com"
    assert signed["s"] == selector
    assert signed["bh"] == RFC8463_BODY_HASH
    assert verify_each(field + content) == [True]
