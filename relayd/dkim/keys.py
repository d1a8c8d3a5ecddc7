"""DKIM private keys: loading with safety checks, generation, and the DNS record to publish.

RSA keys are PEM files (PKCS#1 or PKCS#8); Ed25519 keys are a base64 32-byte
seed (RFC 8463), the forms dkimpy reads. A key that others can read, or
whose type does not match its configured algorithm, stops start-up.
"""

import base64
import binascii
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nacl.encoding
import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relayd.config.model import DkimKey

# RFC 8301 3.2: signers must use RSA keys of at least 1024 bits and should
# use 2048.
MIN_RSA_BITS = 1024
DEFAULT_RSA_BITS = 2048


class DkimKeyError(Exception):
    """A DKIM key file that cannot be used; the message tells the operator how to fix it."""


@dataclass(frozen=True)
class SigningKey:
    """A loaded DKIM key: where it signs, and the key in the form dkimpy takes."""

    domain: str
    selector: str
    algorithm: str
    private: bytes = field(repr=False)
    public_b64: str
    active: bool = True

    @property
    def key_type(self) -> str:
        return "ed25519" if self.algorithm == "ed25519-sha256" else "rsa"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def txt_record(self) -> str:
        """Return the TXT record value (RFC 6376 3.6.1) that publishes this key."""
        return f"v=DKIM1; k={self.key_type}; p={self.public_b64}"


def load_key(config: DkimKey) -> SigningKey:
    """Read and check the key file of one `[[dkim.keys]]` entry; raise DkimKeyError."""
    path = Path(config.key_file)
    where = f"dkim key {config.selector}._domainkey.{config.domain} ({path})"
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise DkimKeyError(f"{where}: file not found; create it with `relayd dkim keygen`") from None
    except OSError as exc:
        raise DkimKeyError(f"{where}: cannot read the file: {exc.strerror}") from exc
    if mode & (stat.S_IRWXO):
        raise DkimKeyError(f"{where}: the file is readable by others; run `chmod 600 {path}`")

    found = _key_kind(data)
    if found != config.algorithm:
        raise DkimKeyError(
            f"{where}: the file contains {_describe(found)} but algorithm is \"{config.algorithm}\"; "
            f"set algorithm = \"{found}\" or point key_file at {_describe(config.algorithm)}"
            if found
            else f"{where}: not a PEM private key (RSA or Ed25519) or a base64 Ed25519 seed"
        )
    if found == "ed25519-sha256":
        private, public = _ed25519(data)
    else:
        private, public = _rsa(data, where)
    return SigningKey(config.domain, config.selector, config.algorithm, private, public, config.active)


def _describe(algorithm: str) -> str:
    return "an Ed25519 key" if algorithm == "ed25519-sha256" else "a PEM RSA private key"


def _key_kind(data: bytes) -> str | None:
    if b"-----BEGIN" in data and b"PRIVATE KEY-----" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            return "rsa-sha256"
        return "ed25519-sha256" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa-sha256"
    try:
        seed = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return "ed25519-sha256" if len(seed) == 32 else None


def _ed25519(data: bytes) -> tuple[bytes, str]:
    if b"-----BEGIN" in data:
        # dkimpy reads only the base64 seed; a PKCS#8 PEM key carries the same seed.
        key = serialization.load_pem_private_key(data, password=None)
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        data = base64.b64encode(raw)
    seed = data.strip()
    try:
        signing = nacl.signing.SigningKey(seed, encoder=nacl.encoding.Base64Encoder)
    except (nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise DkimKeyError(f"invalid Ed25519 seed: {exc}") from exc
    # RFC 8463 3: the p= value is the raw 32-byte public key, base64.
    public = base64.b64encode(bytes(signing.verify_key)).decode("ascii")
    return seed, public


def _rsa(data: bytes, where: str) -> tuple[bytes, str]:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"{where}: invalid PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError(f"{where}: the PEM file contains a {type(key).__name__}, not an RSA key")
    if key.key_size < MIN_RSA_BITS:
        raise DkimKeyError(f"{where}: the RSA key has {key.key_size} bits; use at least {DEFAULT_RSA_BITS} (RFC 8301)")
    # dkimpy reads only the PKCS#1 form.
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    # RFC 6376 3.6.1: p= is the base64 DER SubjectPublicKeyInfo.
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pkcs1, base64.b64encode(public).decode("ascii")


def generate_key(algorithm: str, bits: int = DEFAULT_RSA_BITS) -> bytes:
    """Return a new private key file's content for `algorithm`."""
    if algorithm == "ed25519-sha256":
        signing = nacl.signing.SigningKey.generate()
        return base64.b64encode(bytes(signing)) + b"\n"
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def write_private_file(path: Path, content: bytes) -> None:
    """Create `path` with mode 0600 before any key byte is written; never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
