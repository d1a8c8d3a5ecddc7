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
    if content.startswith(b"\r\n"):
        # An empty line first: the header section is empty.
        return set()
    end = content.find(b"\r\n\r\n")
    header_block = content if end < 0 else content[:end]
    names = set()
    for line in header_block.split(b"\r\n"):
        match = _FIELD_NAME.match(line)
        if match:
            names.add(match.group(1).decode("ascii").lower())
    return names


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
