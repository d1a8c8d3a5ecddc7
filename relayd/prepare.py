"""Preparation of a message for delivery, done once before it is spooled.

The content is relayed byte for byte: relayd prepends a Received header field
and, when they are missing, Message-ID and Date (RFC 5322 3.6 requires Date,
and receivers score mail without Message-ID as spam). Nothing else changes,
so every attempt sends the same bytes.
"""

import re
import secrets
from datetime import datetime, timezone
from email.utils import format_datetime


# RFC 5322 3.6.8 field name, with the obsolete white space before the colon
# that RFC 5322 4.5 tells readers to accept ("Date : ...").
_FIELD_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def header_names(content: bytes) -> set[str]:
    """Return the lower-cased field names of the header section of `content`.

    The email package's parser does not recognise the obsolete form with
    white space before the colon, so the names are read line by line here.
    Continuation lines and lines that are not fields (an mbox "From " line)
    are skipped.
    """
    return {name for name, _, _ in _header_fields(content) if name}


def header_field(content: bytes, name: str) -> str | None:
    """Return the unfolded value of the first `name` field of the header section, or None.

    RFC 5322 2.2.3: unfolding removes each CRLF that precedes white space.
    Octets that are not UTF-8 are replaced, since the value is only read.
    """
    target = name.lower()
    for field_name, start, end in _header_fields(content):
        if field_name == target:
            unfolded = content[start:end].replace(b"\r\n", b"")
            value = unfolded.split(b":", 1)[1]
            return value.decode("utf-8", "replace").strip()
    return None


def remove_fields(content: bytes, name: str) -> bytes:
    """Return `content` without any `name` field, continuation lines included, in its header section."""
    target = name.lower()
    pieces = []
    position = 0
    for field_name, start, end in _header_fields(content):
        if field_name == target:
            pieces.append(content[position:start])
            position = end
    if not pieces:
        return content
    return b"".join(pieces) + content[position:]


def _header_fields(content: bytes) -> list[tuple[str | None, int, int]]:
    """Split the header section into fields: (lower-cased name or None, start offset, end offset).

    A field runs from its first line to the CRLF ending its last
    continuation line. A line that is not a field gets the name None.
    """
    if content.startswith(b"\r\n"):
        # An empty line first: the header section is empty.
        return []
    blank = content.find(b"\r\n\r\n")
    header_end = len(content) if blank < 0 else blank + 2
    fields: list[tuple[str | None, int, int]] = []
    position = 0
    while position < header_end:
        line_end = content.find(b"\r\n", position, header_end)
        line_end = header_end if line_end < 0 else line_end + 2
        line = content[position:line_end]
        if line[:1] in (b" ", b"\t") and fields:
            name, start, _ = fields[-1]
            fields[-1] = (name, start, line_end)
        else:
            match = _FIELD_NAME.match(line)
            fields.append((match.group(1).decode("ascii").lower() if match else None, position, line_end))
        position = line_end
    return fields


def received_header(
    *,
    queue_id: str,
    hostname: str,
    client_ip: str,
    client_helo: str,
    protocol: str,
    recipients: list[str],
    now: datetime,
) -> str:
    """Return the Received field (RFC 5321 4.4) for a message accepted now.

    The `for` clause names the recipient only when there is exactly one, so a
    message to several people does not disclose the others to each of them.
    """
    helo = client_helo or "unknown"
    lines = [
        f"Received: from {helo} ([{client_ip}])",
        f"\tby {hostname} (relayd) with {protocol} id {queue_id}",
    ]
    if len(recipients) == 1:
        lines.append(f"\tfor <{recipients[0]}>")
    lines[-1] += ";"
    lines.append(f"\t{format_datetime(now)}")
    return "\r\n".join(lines) + "\r\n"


def prepare(
    content: bytes,
    *,
    queue_id: str,
    hostname: str,
    client_ip: str,
    client_helo: str,
    protocol: str,
    recipients: list[str],
    now: datetime | None = None,
) -> bytes:
    """Return `content` with the Received field prepended and missing Message-ID and Date added."""
    now = now or datetime.now(timezone.utc)
    present = header_names(content)
    added = received_header(
        queue_id=queue_id,
        hostname=hostname,
        client_ip=client_ip,
        client_helo=client_helo,
        protocol=protocol,
        recipients=recipients,
        now=now,
    )
    if "message-id" not in present:
        added += f"Message-ID: <{queue_id}.{secrets.token_hex(4)}@{hostname}>\r\n"
    if "date" not in present:
        added += f"Date: {format_datetime(now)}\r\n"
    # Header fields may carry UTF-8 under SMTPUTF8 (RFC 6532); the helo and
    # recipient come from the envelope, which was validated as such.
    return added.encode("utf-8") + content
