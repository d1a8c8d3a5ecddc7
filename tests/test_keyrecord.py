"""Tests for comparing published DKIM key records with the configured keys."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization

from relayd.alignment.keyrecord import key_record_problem
from relayd.config.model import DkimKey
from relayd.dkim.keys import generate_key, load_key, write_private_file


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    loaded = {}
    for algorithm in ("rsa-sha256", "ed25519-sha256"):
        path = directory / f"{algorithm}.key"
        write_private_file(path, generate_key(algorithm))
        loaded[algorithm] = load_key(DkimKey("example.com", "s1", path, algorithm))
    return loaded


def test_own_record_matches(keys):
    for key in keys.values():
        assert key_record_problem(key, [key.txt_record()]) == ""


def test_p_with_whitespace_matches(keys):
    key = keys["rsa-sha256"]
    spaced = " ".join(key.public_b64[i : i + 60] for i in range(0, len(key.public_b64), 60))

    assert key_record_problem(key, [f"v=DKIM1; k=rsa; p={spaced}"]) == ""


def test_rsa_pkcs1_form_matches(keys):
    key = keys["rsa-sha256"]
    public = serialization.load_der_public_key(base64.b64decode(key.public_b64))
    pkcs1 = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)

    assert key_record_problem(key, [f"k=rsa; p={base64.b64encode(pkcs1).decode()}"]) == ""


@pytest.mark.parametrize(
    "record, problem",
    [
        (None, "no TXT record at s1._domainkey.example.com"),
        ("k=ed25519; p=", "p= is empty, which revokes the key"),
        ("v=DKIM1; k=ed25519", "the p= tag is missing"),
        ("k=ed25519; v=DKIM1; p={p}", 'v= must be "DKIM1" and the first tag'),
        ("v=DKIM2; k=ed25519; p={p}", 'v= must be "DKIM1" and the first tag'),
        ("v=DKIM1; p={p}", "k=rsa is published, but key_file contains an ed25519 key"),
        ("v=DKIM1; k=ed25519; p=AAAA{p}", "the published p= is not the public key of key_file"),
        ("v=DKIM1; k=ed25519; t=s:y; p={p}", "t=y marks the key as testing"),
        ("v=DKIM1; k=ed25519; s=other; p={p}", "s=other does not include email"),
        ("v=DKIM1; k=ed25519; h=sha1; p={p}", "h=sha1 does not allow sha256"),
        ("v=DKIM1; k=ed25519; p={p}; p={p}", "invalid key record: tag p appears more than once"),
    ],
)
def test_record_problems(keys, record, problem):
    key = keys["ed25519-sha256"]
    texts = [] if record is None else [record.format(p=key.public_b64)]

    assert problem in key_record_problem(key, texts)


def test_several_records(keys):
    key = keys["ed25519-sha256"]

    problem = key_record_problem(key, [key.txt_record(), key.txt_record()])

    assert problem == "2 TXT records at s1._domainkey.example.com, so receivers may use any of them"


def test_testing_flag_with_other_flags_allowed(keys):
    key = keys["ed25519-sha256"]

    assert key_record_problem(key, [f"v=DKIM1; k=ed25519; t=s; s=email; h=sha256; p={key.public_b64}"]) == ""
