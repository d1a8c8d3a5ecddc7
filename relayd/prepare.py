"""Preparation of a message for delivery, done once before it is spooled.

The content is relayed byte for byte: relayd prepends a Received header field
and, when they are missing, Message-ID and Date (RFC 5322 3.6 requires Date,
and receivers score mail without Message-ID as spam). Nothing else changes,
so every attempt sends the same bytes.
"""

import secrets
from datetime import datetime, timezone
from email.utils import format_datetime

from relayd.headers import header_fields


def header_names(content: bytes) -> set[str]:
    """Return the lower-cased field names of the header section of `content`."""
    return {name for name, _ in header_fields(content)}


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
