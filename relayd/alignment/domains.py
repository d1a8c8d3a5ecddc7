"""Organizational domains (RFC 7489 3.2) and identifier alignment (RFC 7489 3.1)."""

import tldextract

STRICT = "s"
RELAXED = "r"


def public_suffix_list() -> tldextract.TLDExtract:
    """Build an extractor on the Public Suffix List snapshot bundled with tldextract.

    No URL and no cache directory means tldextract never fetches the list and
    never writes a cache file, so the result changes only with the installed
    tldextract version. The private section is included (github.io,
    blogspot.com) because it makes organizational domains longer: relaxed
    alignment then errs toward "not aligned", never toward a pass that a
    receiver using the whole list would deny.
    """
    return tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True, include_psl_private_domains=True
    )


_SUFFIXES = public_suffix_list()


def organizational_domain(domain: str) -> str:
    """Return the public suffix of `domain` plus one label (RFC 7489 3.2).

    A domain that is itself a public suffix is its own organizational
    domain. A TLD missing from the list counts as a one-label suffix by the
    list's implicit "*" rule, so mail.example.test gives example.test.
    """
    domain = domain.lower().rstrip(".")
    suffix = _SUFFIXES.extract_str(domain).suffix or domain.rpartition(".")[2]
    labels = domain.split(".")
    keep = suffix.count(".") + 2
    return ".".join(labels[-keep:]) if len(labels) >= keep else domain


def is_aligned(domain: str, from_domain: str, mode: str) -> bool:
    """Return whether an authenticated `domain` aligns with the From domain.

    RFC 7489 3.1.1 and 3.1.2: strict mode needs the same domain, relaxed
    mode the same organizational domain.
    """
    domain = domain.lower().rstrip(".")
    from_domain = from_domain.lower().rstrip(".")
    if domain == from_domain:
        return True
    if mode == STRICT:
        return False
    return organizational_domain(domain) == organizational_domain(from_domain)
