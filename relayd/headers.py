"""Reading the header fields of raw message content, and removing or rewriting fields with the rest kept byte for byte."""

import email.utils
import re

import idna

# RFC 5322 3.6.8 field name, with the obsolete white space before the colon
# that RFC 5322 4.5 tells readers to accept ("Date : ...").
_FIELD_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def header_section(content: bytes) -> bytes:
    """Return the header section of `content`, without the empty line that ends it."""
    if content.startswith(b"\r\n"):
        return b""
    end = content.find(b"\r\n\r\n")
    return content if end < 0 else content[:end]


def header_fields(content: bytes) -> list[tuple[str, bytes]]:
    """Return (lower-cased name, unfolded value) for each header field, in order.

    Lines that are neither fields nor continuations (an mbox "From " line)
    are skipped.
    """
    fields: list[tuple[str, bytes]] = []
    for line in _header_lines(content)[0]:
        line = line.removesuffix(b"\r\n")
        if line[:1] in (b" ", b"\t"):
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, value + line)
            continue
        match = _FIELD_NAME.match(line)
        if match:
            fields.append((match.group(1).decode("ascii").lower(), line[match.end() :].strip()))
    return fields


def header_field(content: bytes, name: str) -> str | None:
    """Return the unfolded value of the first `name` field of the header section, or None.

    RFC 5322 2.2.3: unfolding removes each CRLF that precedes white space.
    Octets that are not UTF-8 are replaced, since the value is only read.
    """
    target = name.lower()
    for field_name, value in header_fields(content):
        if field_name == target:
            return value.decode("utf-8", "replace").strip()
    return None


def _header_lines(content: bytes) -> tuple[list[bytes], int]:
    """Split the header section into lines that keep their CRLF; also return the offset where the section ends.

    That offset is where the empty line after the header section starts, or
    the end of `content` when there is no empty line. Only CRLF ends a line.
    """
    if content.startswith(b"\r\n"):
        return [], 0
    blank = content.find(b"\r\n\r\n")
    end = len(content) if blank < 0 else blank + 2
    lines = []
    position = 0
    while position < end:
        line_end = content.find(b"\r\n", position, end)
        line_end = end if line_end < 0 else line_end + 2
        lines.append(content[position:line_end])
        position = line_end
    return lines, end


# A field name followed by white space before the colon (RFC 5322 4.5).
_OBSOLETE_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]+:", re.MULTILINE)


def without_obsolete_names(content: bytes) -> bytes:
    """Rewrite "Name :" as "Name:" in the header section, for dkimpy's parser.

    Relaxed header canonicalization (RFC 6376 3.4.2) deletes white space
    around the colon, so a relaxed signature over the rewritten copy is also
    valid for the original bytes, which are what relayd sends.
    """
    header = header_section(content)
    fixed = _OBSOLETE_NAME.sub(rb"\1:", header)
    return content if fixed == header else fixed + content[len(header) :]


def remove_fields(content: bytes, name: str) -> bytes:
    """Return `content` without the header fields called `name`, continuation lines included.

    Everything else, the body and the other fields with their line endings,
    stays byte for byte. `content` itself is returned when it has no such field.
    """
    target = name.lower()
    lines, end = _header_lines(content)
    kept: list[bytes] = []
    dropping = removed = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        match = _FIELD_NAME.match(line)
        dropping = bool(match) and match.group(1).decode("ascii").lower() == target
        removed = removed or dropping
        if not dropping:
            kept.append(line)
    if not removed:
        return content
    return b"".join(kept) + content[end:]


def from_domain(content: bytes) -> str | None:
    """Return the domain of the single author in From, in IDNA ASCII form, or None.

    RFC 7489 6.6.1: a message with no From, several From fields or several
    addresses in From has no single author domain to check.
    """
    values = [value for name, value in header_fields(content) if name == "from"]
    if len(values) != 1:
        return None
    addresses = email.utils.getaddresses([values[0].decode("utf-8", "replace")])
    addresses = [address for _, address in addresses if address]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    domain = addresses[0].rpartition("@")[2].strip().rstrip(".")
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None
