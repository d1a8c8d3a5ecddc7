"""Published DKIM key records (RFC 6376 3.6.1), compared with the configured private keys."""

import base64
import binascii
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from relayd.alignment.taglist import parse_tag_list
from relayd.dkim.keys import SigningKey

_WHITESPACE = re.compile(r"\s+")


def key_record_problem(key: SigningKey, texts: list[str]) -> str:
    """Return why the TXT records `texts` at key.record_name fail to publish `key`, or "" when they publish it."""
    if not texts:
        return f"no TXT record at {key.record_name}"
    if len(texts) > 1:
        # RFC 6376 3.6.2.2: with several records the verifier's choice is undefined.
        return f"{len(texts)} TXT records at {key.record_name}, so receivers may use any of them"

    tags, errors = parse_tag_list(texts[0])
    if errors:
        return f"invalid key record: {errors[0]}"
    if "v" in tags and (tags["v"] != "DKIM1" or next(iter(tags)) != "v"):
        return 'invalid key record: v= must be "DKIM1" and the first tag'
    if "p" not in tags:
        return "invalid key record: the p= tag is missing"
    published = _WHITESPACE.sub("", tags["p"])
    if not published:
        return "p= is empty, which revokes the key (RFC 6376 3.6.1)"
    if tags.get("k", "rsa") != key.key_type:
        return f"k={tags.get('k', 'rsa')} is published, but key_file contains an {key.key_type} key"
    if not _same_public_key(published, key):
        return "the published p= is not the public key of key_file"
    return _usage_problem(tags)


def _usage_problem(tags: dict[str, str]) -> str:
    """Return why receivers would not use a matching key for mail, or ""."""
    flags = _colon_list(tags.get("t", ""))
    if "y" in flags:
        # RFC 6376 3.6.1: verifiers treat mail signed in testing mode as unsigned.
        return "t=y marks the key as testing, so receivers treat signed mail as unsigned"
    services = _colon_list(tags.get("s", "*"))
    if "*" not in services and "email" not in services:
        return f"s={tags['s']} does not include email"
    hashes = _colon_list(tags.get("h", "sha256"))
    if "sha256" not in hashes:
        return f"h={tags['h']} does not allow sha256, which relayd signs with"
    return ""


def _colon_list(text: str) -> list[str]:
    return [item.strip().lower() for item in text.split(":")]


def _same_public_key(published: str, key: SigningKey) -> bool:
    """Compare the published p= with the key's own, accepting the PKCS#1 form some tools publish for RSA."""
    if published == key.public_b64:
        return True
    if key.key_type != "rsa":
        return False
    try:
        found = serialization.load_der_public_key(base64.b64decode(published, validate=True))
        expected = serialization.load_der_public_key(base64.b64decode(key.public_b64))
    except (binascii.Error, ValueError):
        return False
    return isinstance(found, rsa.RSAPublicKey) and found.public_numbers() == expected.public_numbers()
