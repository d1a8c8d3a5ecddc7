"""DKIM signing with dkimpy, done once when a message is prepared.

The signature is stored with the message, so every attempt sends the same
bytes. Canonicalization is relaxed/relaxed (RFC 6376 3.4), which survives
the header refolding and whitespace changes some relays make.
"""

import dkim
import structlog

from relayd import metrics
from relayd.dkim.keys import SigningKey
from relayd.headers import from_domain, header_fields, without_obsolete_names

log = structlog.get_logger("relayd.dkim")


# The fields signed when present; each occurrence is signed, and From once
# more than it occurs, so a second From field added in transit makes the
# signature fail (RFC 6376 8.15, "over-signing").
SIGNED_FIELDS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
)


class Signer:
    """Chooses keys by the From domain and produces the DKIM-Signature fields."""

    def __init__(self, keys: list[SigningKey]):
        self._by_domain: dict[str, list[SigningKey]] = {}
        for key in keys:
            if key.active:
                self._by_domain.setdefault(key.domain, []).append(key)

    @property
    def has_keys(self) -> bool:
        return bool(self._by_domain)

    def keys_for(self, domain: str) -> list[SigningKey]:
        """Return the active keys for `domain`, or for its nearest configured parent domain.

        A key for example.com signs mail from mail.example.com with
        d=example.com, which relaxed DMARC alignment accepts.
        """
        labels = domain.split(".")
        for start in range(len(labels) - 1):
            found = self._by_domain.get(".".join(labels[start:]))
            if found:
                return found
        return []

    def sign(self, content: bytes) -> tuple[bytes, list[SigningKey]]:
        """Return the DKIM-Signature fields to prepend to `content` and the keys used.

        A message that cannot be signed leaves unsigned, with a log line: a
        missing signature costs reputation, a refused message is lost.
        """
        domain = from_domain(content)
        keys = self.keys_for(domain) if domain else []
        if not keys:
            return b"", []
        include = signed_field_list(content)
        parsable = without_obsolete_names(content)
        signatures = b""
        for key in keys:
            try:
                signer = dkim.DKIM(parsable, signature_algorithm=key.algorithm.encode())
                signatures += signer.sign(
                    key.selector.encode(),
                    key.domain.encode(),
                    key.private,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=include,
                )
            except dkim.DKIMException as exc:
                log.warning("dkim_sign_failed", domain=key.domain, selector=key.selector, error=str(exc))
                return b"", []
        for key in keys:
            metrics.record_dkim_signature(key.algorithm)
        return signatures, keys


def signed_field_list(content: bytes) -> list[bytes]:
    """Return the h= list: each present field as often as it occurs, and From once more."""
    names = [name for name, _ in header_fields(content)]
    include = []
    for field in SIGNED_FIELDS:
        include.extend([field.encode()] * names.count(field))
    include.append(b"from")
    return include
