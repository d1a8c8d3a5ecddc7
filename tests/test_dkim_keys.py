"""DKIM key files: loading with its safety checks, generation, and the TXT record."""

import base64
import os
import re
import secrets
import stat

import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from relayd.config.model import DkimKey
from relayd.dkim.keys import DkimKeyError, SigningKey, generate_key, load_key, write_private_file

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key, private_format: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption())


def spki(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_file(tmp_path, content: bytes, mode: int = 0o600, name: str = "dkim.key"):
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(mode)
    return path


def entry(path, algorithm: str = RSA, active: bool = True) -> DkimKey:
    return DkimKey(domain="example.com", selector="s1", key_file=path, algorithm=algorithm, active=active)


def load_error(path, algorithm: str = RSA) -> str:
    with pytest.raises(DkimKeyError) as caught:
        load_key(entry(path, algorithm))
    return str(caught.value)


def is_probable_prime(n: int) -> bool:
    """Return whether `n` passes 32 Miller-Rabin rounds with random bases."""
    if n < 4:
        return n in (2, 3)
    if n % 2 == 0:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(32):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def random_prime(bits: int, exponent: int) -> int:
    """Return a prime of exactly `bits` bits with its two top bits set, coprime to exponent - 1."""
    while True:
        candidate = secrets.randbits(bits) | (0b11 << (bits - 2)) | 1
        if (candidate - 1) % exponent and is_probable_prime(candidate):
            return candidate


def small_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """Build an RSA key of `bits` bits from its numbers.

    cryptography 50 will not generate a key under 1024 bits, but it loads
    one. Both primes have their two top bits set, so the modulus has exactly
    `bits` bits.
    """
    exponent = 65537
    p = random_prime(bits - bits // 2, exponent)
    q = random_prime(bits // 2, exponent)
    d = pow(exponent, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d,
        rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(exponent, p * q),
    )
    return numbers.private_key()


# Loading


@pytest.mark.parametrize(
    "private_format, marker",
    [
        (serialization.PrivateFormat.TraditionalOpenSSL, b"-----BEGIN RSA PRIVATE KEY-----"),
        (serialization.PrivateFormat.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
    ],
    ids=["pkcs1", "pkcs8"],
)
def test_load_rsa_pem(tmp_path, rsa_private, private_format, marker):
    content = pem(rsa_private, private_format)
    assert content.startswith(marker)

    key = load_key(entry(key_file(tmp_path, content)))

    assert key.domain == "example.com"
    assert key.selector == "s1"
    assert key.algorithm == RSA
    assert key.key_type == "rsa"
    assert key.active is True
    # dkimpy reads PKCS#1 only, so a PKCS#8 file is converted.
    assert key.private.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert spki(serialization.load_pem_private_key(key.private, None)) == spki(rsa_private)
    assert base64.b64decode(key.public_b64) == spki(rsa_private)


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n"], ids=["bare", "lf", "crlf"])
def test_load_ed25519_seed(tmp_path, ending):
    signing = nacl.signing.SigningKey.generate()
    content = base64.b64encode(bytes(signing)) + ending

    key = load_key(entry(key_file(tmp_path, content), ED25519))

    assert key.algorithm == ED25519
    assert key.key_type == "ed25519"
    assert key.private == base64.b64encode(bytes(signing))
    assert base64.b64decode(key.public_b64) == bytes(signing.verify_key)


def test_load_keeps_inactive_flag(tmp_path):
    path = key_file(tmp_path, generate_key(ED25519))
    key = load_key(entry(path, ED25519, active=False))
    assert key.active is False


def test_repr_hides_private_key(tmp_path):
    path = key_file(tmp_path, generate_key(ED25519))
    key = load_key(entry(path, ED25519))
    assert key.private.decode() not in repr(key)


# File permissions


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o666, 0o601])
def test_load_rejects_others_bits(tmp_path, mode):
    path = key_file(tmp_path, generate_key(ED25519), mode)
    message = load_error(path, ED25519)
    assert f"chmod 600 {path}" in message
    assert "s1._domainkey.example.com" in message


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400, 0o440])
def test_load_accepts_owner_and_group(tmp_path, mode):
    path = key_file(tmp_path, generate_key(ED25519), mode)
    assert load_key(entry(path, ED25519)).domain == "example.com"


def test_load_missing_file(tmp_path):
    path = tmp_path / "absent.key"
    message = load_error(path)
    assert "file not found" in message
    assert "relayd dkim keygen" in message
    assert str(path) in message


# Content checks


def test_rsa_file_configured_as_ed25519(tmp_path, rsa_private):
    path = key_file(tmp_path, pem(rsa_private, serialization.PrivateFormat.TraditionalOpenSSL))
    message = load_error(path, ED25519)
    assert "contains a PEM RSA private key" in message
    assert 'algorithm is "ed25519-sha256"' in message
    assert 'set algorithm = "rsa-sha256"' in message


def test_ed25519_file_configured_as_rsa(tmp_path):
    path = key_file(tmp_path, generate_key(ED25519))
    message = load_error(path, RSA)
    assert "contains an Ed25519 key" in message
    assert 'algorithm is "rsa-sha256"' in message
    assert 'set algorithm = "ed25519-sha256"' in message


def test_ed25519_pem_loads(tmp_path):
    private = ed25519.Ed25519PrivateKey.generate()
    content = pem(private, serialization.PrivateFormat.PKCS8)
    key = load_key(DkimKey(domain="example.com", selector="s1", key_file=key_file(tmp_path, content), algorithm=ED25519))
    raw_public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.public_b64 == base64.b64encode(raw_public).decode()


def test_ed25519_pem_configured_as_rsa(tmp_path):
    content = pem(ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8)
    message = load_error(key_file(tmp_path, content), "rsa-sha256")
    assert "contains an Ed25519 key" in message


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key\n",
        base64.b64encode(b"\x01" * 16) + b"\n",
        base64.b64encode(b"\x01" * 64) + b"\n",
        b"\x00\xff\xfe binary",
    ],
    ids=["empty", "text", "short-seed", "long-seed", "binary"],
)
def test_load_rejects_garbage(tmp_path, content):
    message = load_error(key_file(tmp_path, content), RSA)
    assert "not a PEM private key (RSA or Ed25519) or a base64 Ed25519 seed" in message


def test_load_rejects_broken_pem(tmp_path):
    content = b"-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n"
    message = load_error(key_file(tmp_path, content), RSA)
    assert "invalid PEM private key" in message


def test_load_rejects_ec_pem(tmp_path):
    content = pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    message = load_error(key_file(tmp_path, content), RSA)
    assert "not an RSA key" in message


@pytest.mark.parametrize("bits", [512, 1023])
def test_load_rejects_small_rsa(tmp_path, bits):
    private = small_rsa_key(bits)
    assert private.key_size == bits

    message = load_error(key_file(tmp_path, pem(private, serialization.PrivateFormat.PKCS8)), RSA)

    assert f"has {bits} bits" in message
    assert "RFC 8301" in message


# TXT record


def test_rsa_txt_record(tmp_path, rsa_private):
    path = key_file(tmp_path, pem(rsa_private, serialization.PrivateFormat.PKCS8))
    key = load_key(entry(path))

    match = re.fullmatch(r"v=DKIM1; k=rsa; p=([A-Za-z0-9+/=]+)", key.txt_record())

    assert match is not None
    assert base64.b64decode(match.group(1)) == spki(rsa_private)
    assert key.record_name == "s1._domainkey.example.com"


def test_ed25519_txt_record(tmp_path):
    signing = nacl.signing.SigningKey.generate()
    path = key_file(tmp_path, base64.b64encode(bytes(signing)))
    key = load_key(entry(path, ED25519))

    match = re.fullmatch(r"v=DKIM1; k=ed25519; p=([A-Za-z0-9+/=]+)", key.txt_record())

    assert match is not None
    assert base64.b64decode(match.group(1)) == bytes(signing.verify_key)
    assert len(base64.b64decode(match.group(1))) == 32


def test_txt_record_from_fields():
    key = SigningKey("mail.example.org", "e2026", ED25519, b"", "QUJD")
    assert key.record_name == "e2026._domainkey.mail.example.org"
    assert key.txt_record() == "v=DKIM1; k=ed25519; p=QUJD"


# Writing and generating


def test_write_private_file_mode(tmp_path):
    path = tmp_path / "keys" / "nested" / "new.key"
    previous = os.umask(0)
    try:
        write_private_file(path, b"secret\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"secret\n"


def test_write_private_file_no_overwrite(tmp_path):
    path = tmp_path / "existing.key"
    path.write_bytes(b"old\n")
    with pytest.raises(FileExistsError):
        write_private_file(path, b"new\n")
    assert path.read_bytes() == b"old\n"


@pytest.mark.parametrize(
    "algorithm, bits, marker",
    [
        (RSA, 2048, b"-----BEGIN RSA PRIVATE KEY-----"),
        (RSA, 1024, b"-----BEGIN RSA PRIVATE KEY-----"),
        (ED25519, None, b""),
    ],
    ids=["rsa-2048", "rsa-1024", "ed25519"],
)
def test_generated_key_loads(tmp_path, algorithm, bits, marker):
    content = generate_key(algorithm) if bits is None else generate_key(algorithm, bits)
    path = tmp_path / "generated.key"
    write_private_file(path, content)

    key = load_key(entry(path, algorithm))

    assert content.startswith(marker)
    assert key.algorithm == algorithm
    if bits is not None:
        assert serialization.load_pem_private_key(key.private, None).key_size == bits


def test_generated_keys_differ():
    assert generate_key(ED25519) != generate_key(ED25519)
