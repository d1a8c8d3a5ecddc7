"""Envelope-address syntax check for the inbound SMTP server.

parse_path() validates the text between the angle brackets of MAIL FROM and
RCPT TO against the RFC 5321 section 4.1.2 Mailbox grammar, extended for
SMTPUTF8 by RFC 6531 section 3.3, and the RFC 5321 section 4.5.3.1 size
limits. Each rejection raises AddressError with an RFC 3463 enhanced status
code and a message that names the problem.
"""

from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import dataclass
from typing import Literal

import idna

# Size limits from RFC 5321 section 4.5.3.1, in octets, with non-ASCII text
# counted in its UTF-8 encoding.
MAX_LOCAL_PART_OCTETS = 64
MAX_DOMAIN_OCTETS = 255
MAX_LABEL_OCTETS = 63
# The path limit includes the angle brackets and any source route.
MAX_PATH_OCTETS = 256

# RFC 3463 enhanced status codes: bad destination mailbox address syntax,
# bad sender's mailbox address syntax, and (RFC 6531 section 3.5) a
# non-ASCII address sent without SMTPUTF8.
CODE_BAD_RECIPIENT_SYNTAX = "5.1.3"
CODE_BAD_SENDER_SYNTAX = "5.1.7"
CODE_NEEDS_SMTPUTF8 = "5.6.7"

# RFC 5322 section 3.2.3 atext, which RFC 5321 uses for Atom.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
# RFC 5321 Standardized-tag of a General-address-literal.
_STANDARDIZED_TAG = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]")
# One "@" Domain of an RFC 5321 A-d-l. [^\W_] is a letter or digit, non-ASCII ones included.
_ROUTE_HOP = re.compile(r"@(?:[^\W_]|-)+(?:\.(?:[^\W_]|-)+)*")

_CONTROL_NAMES = {
    0x00: "NUL", 0x09: "TAB", 0x0A: "LF", 0x0B: "VT", 0x0C: "FF", 0x0D: "CR", 0x1B: "ESC", 0x7F: "DEL",
    0x2028: "LINE SEPARATOR", 0x2029: "PARAGRAPH SEPARATOR",
}

_NO_DOMAIN = "the address has no @domain part"


class AddressError(ValueError):
    """Invalid envelope address.

    str(exc) is a sentence that a person can act on, and `enhanced` is the
    RFC 3463 status code to send in the SMTP reply.
    """

    def __init__(self, message: str, enhanced: str) -> None:
        super().__init__(message)
        self.enhanced = enhanced


class _SyntaxProblem(Exception):
    """Syntax error from a helper, which parse_path raises as AddressError with the role's status code."""


@dataclass(frozen=True)
class Address:
    """Valid envelope mailbox from MAIL FROM or RCPT TO."""

    local: str
    """Local part exactly as given, with quotes, escapes and case kept."""
    domain: str
    """Domain as given, in U-labels, A-labels or as an address literal in brackets."""
    ascii_domain: str
    """Lower-case A-label form of the domain, or the literal unchanged, used to group deliveries."""

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def is_literal(self) -> bool:
        """Whether the domain is an address literal such as [192.0.2.1]."""
        return self.domain.startswith("[")

    @property
    def needs_smtputf8(self) -> bool:
        """Whether the local part or the domain as given contains non-ASCII characters.

        for_delivery() converts the domain to A-labels, so only a non-ASCII
        local part forces SMTPUTF8 on the next hop.
        """
        return not (self.local.isascii() and self.domain.isascii())

    def for_delivery(self) -> str:
        """Return local@ascii_domain, the form to send to the next hop."""
        return f"{self.local}@{self.ascii_domain}"


def parse_path(
    text: str, *, smtputf8: bool, role: Literal["sender", "recipient"]
) -> Address | None:
    """Parse the text inside the angle brackets of a reverse-path or forward-path.

    Returns None for the null reverse-path "" of a sender. A source route
    ("@a,@b:") is validated and dropped, as RFC 5321 section 4.1.2 and
    Appendix C require. Raises AddressError for every other invalid path,
    and ValueError for a role other than "sender" or "recipient".
    """
    if role not in ("sender", "recipient"):
        raise ValueError(f"role must be 'sender' or 'recipient', not {role!r}")
    syntax_code = CODE_BAD_SENDER_SYNTAX if role == "sender" else CODE_BAD_RECIPIENT_SYNTAX

    if not text:
        if role == "sender":
            return None
        message = "the recipient address is empty, but the null path <> is allowed only in MAIL FROM"
        raise AddressError(message, syntax_code)

    try:
        return _parse_mailbox_path(text, smtputf8)
    except _SyntaxProblem as problem:
        raise AddressError(str(problem), syntax_code) from None


def _parse_mailbox_path(text: str, smtputf8: bool) -> Address:
    # Controls and invalid UTF-8 come first, because they are rejected even
    # when the client uses SMTPUTF8.
    _check_characters(text)
    if not smtputf8:
        _reject_non_ascii(text)

    mailbox = _strip_source_route(text)
    local, domain = _split_mailbox(mailbox)

    if not local.startswith('"'):
        _check_dot_string(local)
    # The limit counts the local part as sent, with any quotes and backslashes.
    _check_length("local part", local, MAX_LOCAL_PART_OCTETS)

    if domain.startswith("["):
        _check_address_literal(domain)
        ascii_domain = domain
    else:
        ascii_domain = _check_domain_name(domain)

    # The brackets count towards the path limit but are not part of text.
    path_octets = _octets(text) + 2
    if path_octets > MAX_PATH_OCTETS:
        raise _SyntaxProblem(
            f"the address is {path_octets} octets long including the angle brackets"
            f" and any source route, but the maximum is {MAX_PATH_OCTETS}"
        )
    return Address(local=local, domain=domain, ascii_domain=ascii_domain)


def _check_characters(text: str) -> None:
    # Security invariant: no control character may reach the next hop, where
    # CR or LF could end the command and inject another. RFC 6531
    # UTF8-non-ascii would admit the C1 controls U+0080-U+009F, but RFC 5198
    # section 2 forbids them in network text. Unicode-aware line splitters,
    # Python's str.splitlines() among them, break lines at U+0085, U+2028 and U+2029.
    for char in text:
        point = ord(char)
        if point < 0x20 or 0x7F <= point <= 0x9F or point in (0x2028, 0x2029):
            name = _CONTROL_NAMES.get(point, "C1 control" if point >= 0x80 else "control")
            raise _SyntaxProblem(
                f"the address contains a {name} character (U+{point:04X}),"
                " which is not allowed anywhere in an address, even inside quotes"
            )
        if 0xD800 <= point <= 0xDFFF:
            raise _SyntaxProblem(_describe_surrogate(point))


def _describe_surrogate(point: int) -> str:
    # aiosmtpd 1.4.6 with enable_SMTPUTF8 decodes command arguments with
    # errors="surrogateescape", which maps each byte that is not valid UTF-8
    # to U+DC80-U+DCFF.
    if 0xDC80 <= point <= 0xDCFF:
        return (
            f"the address contains the byte 0x{point - 0xDC00:02X}, which is not valid UTF-8,"
            " so the client must send the address in UTF-8"
        )
    return f"the address contains the surrogate code point U+{point:04X}, which is not valid in UTF-8"


def _reject_non_ascii(text: str) -> None:
    # Raises AddressError directly, because 5.6.7 does not depend on the role.
    for char in text:
        if not char.isascii():
            raise AddressError(
                f"the address contains the non-ASCII character '{char}' (U+{ord(char):04X}),"
                " so the client must use the SMTPUTF8 extension to send it",
                CODE_NEEDS_SMTPUTF8,
            )


def _strip_source_route(text: str) -> str:
    """Return text without a leading RFC 5321 A-d-l such as "@a.example,@b.example:"."""
    if not text.startswith("@"):
        return text
    route, colon, mailbox = text.partition(":")
    # A route contains only domain names, so "@[IPv6:..." is an empty local
    # part before an address literal, which _split_mailbox reports.
    if not colon or "[" in route:
        return text
    for hop in route.split(","):
        if not _ROUTE_HOP.fullmatch(hop):
            raise _SyntaxProblem(
                f"the source route '{route}:' is invalid, so remove it (relays ignore source routes)"
            )
    return mailbox


def _split_mailbox(mailbox: str) -> tuple[str, str]:
    if mailbox.startswith('"'):
        end = _find_quoted_string_end(mailbox)
        local, rest = mailbox[:end], mailbox[end:]
        if not rest:
            raise _SyntaxProblem(_NO_DOMAIN)
        if not rest.startswith("@"):
            raise _SyntaxProblem(
                "the local part has text after its closing quote, so put the whole local part inside quotes"
            )
        return local, rest[1:]

    # An unquoted local part cannot contain "@", so the first one ends it.
    local, at, domain = mailbox.partition("@")
    # NOTE: RFC 5321 section 4.1.1.3 requires a server to accept RCPT TO:<Postmaster>
    # without a domain. This check rejects it, so the caller must handle it first.
    if not at:
        raise _SyntaxProblem(_NO_DOMAIN)
    if "@" in domain:
        raise _SyntaxProblem("the address contains more than one @, so quote the local part if it has an @")
    return local, domain


def _find_quoted_string_end(mailbox: str) -> int:
    """Return the index just past the closing DQUOTE of a leading Quoted-string.

    qtextSMTP is every printable ASCII character except DQUOTE and backslash,
    plus UTF8-non-ascii under SMTPUTF8. _check_characters has already rejected
    controls, so only the quoted-pairSMTP rule needs a check here.
    """
    index = 1
    while index < len(mailbox):
        char = mailbox[index]
        if char == '"':
            return index + 1
        if char == "\\" and index + 1 < len(mailbox):
            escaped = mailbox[index + 1]
            # RFC 6531 extends qtextSMTP but not quoted-pairSMTP, which stays %d32-126.
            if not " " <= escaped <= "~":
                raise _SyntaxProblem(
                    f"a backslash in the quoted local part escapes '{escaped}' (U+{ord(escaped):04X}),"
                    " but only printable ASCII characters can be escaped, so remove the backslash"
                )
            index += 2
            continue
        index += 1
    raise _SyntaxProblem("the quoted local part has no closing quote")


def _check_dot_string(local: str) -> None:
    """Raise _SyntaxProblem unless local is an RFC 5321 Dot-string.

    Non-ASCII characters count as atext, because parse_path has already
    rejected them unless the client uses SMTPUTF8.
    """
    if not local:
        raise _SyntaxProblem("the local part before @ is empty")
    for char in local:
        if char == "." or char in _ATEXT or not char.isascii():
            continue
        if char == " ":
            raise _SyntaxProblem("the local part contains a space, so quote the local part or delete the space")
        raise _SyntaxProblem(
            f"the local part contains '{char}' (U+{ord(char):04X}),"
            " which is allowed only in a quoted local part"
        )

    dot_fix = "so remove the dot or quote the local part"
    if local.startswith("."):
        raise _SyntaxProblem(f"the local part starts with a dot, {dot_fix}")
    if local.endswith("."):
        raise _SyntaxProblem(f"the local part ends with a dot, {dot_fix}")
    if ".." in local:
        raise _SyntaxProblem(f"the local part contains two dots in a row, {dot_fix}")


def _check_length(part: str, value: str, max_octets: int) -> None:
    length = _octets(value)
    if length > max_octets:
        raise _SyntaxProblem(f"the {part} is {length} octets long, but the maximum is {max_octets}")


def _octets(value: str) -> int:
    return len(value.encode("utf-8"))


def _check_address_literal(domain: str) -> None:
    """Raise _SyntaxProblem unless domain is an IPv4 or IPv6 address literal.

    NOTE: this checks syntax only. Whether to deliver to a loopback or
    private address is a decision for the delivery policy.
    """
    if not domain.endswith("]") or len(domain) < 3:
        raise _SyntaxProblem(f"the address literal '{domain}' must end with ']' and contain an address")
    content = domain[1:-1]
    tag, colon, address = content.partition(":")

    if not colon:
        _check_ipv4_literal(domain, content)
    elif tag.lower() == "ipv6":
        _check_ipv6_literal(domain, address)
    elif _STANDARDIZED_TAG.fullmatch(tag):
        # A General-address-literal (RFC 5321 section 4.1.3) whose tag relayd cannot route.
        raise _SyntaxProblem(
            f"the address literal '{domain}' uses the tag '{tag}', which is not supported,"
            " so use an IPv4 literal such as [192.0.2.1] or an IPv6 literal such as [IPv6:2001:db8::1]"
        )
    else:
        raise _SyntaxProblem(
            f"the address literal '{domain}' is invalid,"
            " so write an IPv6 address with the IPv6: tag, as in [IPv6:2001:db8::1]"
        )


def _check_ipv4_literal(domain: str, content: str) -> None:
    # ipaddress accepts only four ASCII decimal octets. It rejects leading
    # zeros such as 010, which inet_aton() reads as octal, although RFC 5321
    # Snum would allow them.
    try:
        ipaddress.IPv4Address(content)
    except ValueError as exc:
        raise _SyntaxProblem(f"the address literal '{domain}' is not a valid IPv4 address: {exc}") from None


def _check_ipv6_literal(domain: str, address: str) -> None:
    # ipaddress accepts a zone such as %eth0, which RFC 5321 IPv6-addr does not.
    if "%" in address:
        raise _SyntaxProblem(f"the address literal '{domain}' has a zone index after %, so remove it")
    try:
        ipaddress.IPv6Address(address)
    except ValueError as exc:
        raise _SyntaxProblem(f"the address literal '{domain}' is not a valid IPv6 address: {exc}") from None


def _check_domain_name(domain: str) -> str:
    """Validate an RFC 5321 Domain and return its lower-case A-label form."""
    if not domain:
        raise _SyntaxProblem("the domain after @ is empty")
    if domain.endswith("."):
        raise _SyntaxProblem(f"the domain '{domain}' ends with a dot, so remove the trailing dot")
    if domain.startswith(".") or ".." in domain:
        raise _SyntaxProblem(f"the domain '{domain}' contains an empty label, so remove the extra dot")
    _check_length("domain", domain, MAX_DOMAIN_OCTETS)

    # ASCII names, A-labels included, get only the RFC 5321 LDH check,
    # because IDNA 2008 rejects some A-labels registered under IDNA 2003,
    # such as emoji names, that still resolve.
    if domain.isascii():
        _check_host_name(domain)
        return domain.lower()

    ascii_domain = _to_a_labels(domain)
    _check_host_name(ascii_domain)
    return ascii_domain


def _to_a_labels(domain: str) -> str:
    # UTS 46 mapping lower-cases the name and maps full-width and ideographic
    # full stops to ".", so _check_host_name runs again on the result.
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        message = f"the domain '{domain}' is not a valid internationalized domain name: {exc}"
        raise _SyntaxProblem(message) from None


def _check_host_name(domain: str) -> None:
    labels = domain.split(".")
    for label in labels:
        _check_label(label)

    # RFC 5321 section 2.3.5 allows only fully qualified names in SMTP. A
    # dotless name would be looked up through the relay host's DNS search
    # list, which could deliver to a machine on the local network.
    if len(labels) < 2:
        raise _SyntaxProblem(
            f"the domain '{domain}' has no dot, but this relay accepts only fully qualified domain names"
        )
    # No top-level domain consists only of digits, so such a name is an IP
    # address that the client forgot to bracket.
    if labels[-1].isdigit():
        raise _SyntaxProblem(
            f"the domain '{domain}' looks like an IP address,"
            " so write it as an address literal such as [192.0.2.1]"
        )


def _check_label(label: str) -> None:
    # _check_domain_name and idna.encode have already rejected empty labels.
    _check_length(f"domain label '{label}'", label, MAX_LABEL_OCTETS)
    if label.startswith("-"):
        raise _SyntaxProblem(f"the domain label '{label}' starts with a hyphen, which is not allowed")
    if label.endswith("-"):
        raise _SyntaxProblem(f"the domain label '{label}' ends with a hyphen, which is not allowed")
    for char in label:
        if char != "-" and not (char.isascii() and char.isalnum()):
            raise _SyntaxProblem(
                f"the domain label '{label}' contains '{char}' (U+{ord(char):04X}), but a label"
                " may contain only letters, digits and hyphens"
            )
