"""`relayd dkim keygen`: write a new private key (mode 0600) and print the TXT record to publish."""

import re
import sys
from pathlib import Path

import idna

from relayd.config.model import DkimKey
from relayd.dkim.keys import MIN_RSA_BITS, generate_key, load_key, write_private_file

ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}

# RFC 6376 3.1: a selector is one or more DNS labels.
SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# Larger keys do not fit a DNS TXT record most providers accept.
MAX_RSA_BITS = 4096

# RFC 1035 3.3: one character-string in a TXT record is at most 255 octets.
TXT_STRING_OCTETS = 255


def txt_strings(value: str) -> list[str]:
    """Split a TXT value into the character-strings a zone file needs."""
    return [value[i : i + TXT_STRING_OCTETS] for i in range(0, len(value), TXT_STRING_OCTETS)]


def run(domain: str, selector: str, algorithm: str, bits: int, output: str | None) -> int:
    algorithm = ALGORITHMS[algorithm]
    try:
        # The record name and d= use the domain's DNS (A-label) form.
        domain = idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        print(f"relayd: invalid --domain {domain!r}; expected a domain such as example.com", file=sys.stderr)
        return 2
    if not SELECTOR.match(selector):
        print(f"relayd: invalid --selector {selector!r}; expected a DNS label such as s2026", file=sys.stderr)
        return 2
    if algorithm == "rsa-sha256" and not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        print(f"relayd: invalid --bits {bits}; expected {MIN_RSA_BITS} to {MAX_RSA_BITS} (2048 is usual)", file=sys.stderr)
        return 2
    path = Path(output or f"{domain}.{selector}.key")
    if path.exists():
        print(f"relayd: {path} already exists; choose another --output or a new selector", file=sys.stderr)
        return 1
    try:
        write_private_file(path, generate_key(algorithm, bits))
    except OSError as exc:
        print(f"relayd: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    key = load_key(DkimKey(domain=domain, selector=selector, key_file=path, algorithm=algorithm))

    strings = " ".join(f'"{s}"' for s in txt_strings(key.txt_record()))
    print(f"Wrote the private key to {path} (mode 0600).")
    print("\nPublish this TXT record in DNS:\n")
    print(f"{key.record_name}. IN TXT ( {strings} )")
    print("\nThen add the key to the relayd configuration:\n")
    print("[[dkim.keys]]")
    print(f'domain = "{domain}"')
    print(f'selector = "{selector}"')
    print(f'key_file = "{path.resolve()}"')
    print(f'algorithm = "{algorithm}"')
    return 0
