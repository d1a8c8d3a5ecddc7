"""Delivery status notifications (RFC 3464) for recipients that bounced or expired.

A DSN goes to the envelope sender with the null sender, so it never
triggers another DSN (RFC 5321 6.1). It carries the original header
section but not the body (RFC 3462 text/rfc822-headers): transactional mail
contains reset links and codes that a bounce should not copy around.
"""

import email.message
import re
import email.policy
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, make_msgid

from relayd.headers import header_section

SUBJECT = "Undelivered Mail Returned to Sender"


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient the DSN reports: its final state and the last reply that decided it."""

    address: str
    state: str  # "bounced" or "expired"
    status: str  # RFC 3463 code, e.g. "5.1.1"
    diagnostic: str  # the remote reply, or relayd's own reason
    remote_mta: str
    last_attempt: float


def build_dsn(
    *,
    hostname: str,
    queue_id: str,
    sender: str,
    received_at: float,
    original: bytes,
    failed: list[FailedRecipient],
) -> bytes:
    """Return the DSN message for `failed` recipients of the message `queue_id`."""
    report = email.message.EmailMessage(policy=email.policy.SMTP)
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    report["To"] = sender
    report["Subject"] = SUBJECT
    report["Date"] = format_datetime(datetime.now(timezone.utc))
    report["Message-ID"] = make_msgid(domain=hostname)
    # RFC 3834 5: a DSN is an automatic reply that other robots must not reply to.
    report["Auto-Submitted"] = "auto-replied"
    report.set_type("multipart/report")
    report.set_param("report-type", "delivery-status")

    report.attach(_explanation(hostname, failed))
    report.attach(_status(hostname, queue_id, received_at, failed))
    report.attach(_headers_part(original))
    # The per-recipient blocks use the compat32 policy, which ends lines with
    # LF; SMTP needs CRLF throughout (RFC 5321 2.3.8).
    return re.sub(rb"\r?\n", b"\r\n", report.as_bytes())


def _explanation(hostname: str, failed: list[FailedRecipient]) -> email.message.EmailMessage:
    lines = [
        f"This is the mail system at {hostname}.",
        "",
        "Your message could not be delivered to the recipients below.",
        "",
    ]
    for recipient in failed:
        why = "gave up after retrying" if recipient.state == "expired" else "the receiving server refused it"
        lines.append(f"<{recipient.address}>: {why}: {recipient.diagnostic}")
    part = email.message.EmailMessage(policy=email.policy.SMTP)
    part.set_content("\n".join(lines) + "\n")
    return part


def _status(hostname: str, queue_id: str, received_at: float, failed: list[FailedRecipient]) -> email.message.Message:
    """Build the message/delivery-status part: one per-message block, then one block per recipient."""
    per_message = email.message.Message()
    per_message["Reporting-MTA"] = f"dns; {hostname}"
    per_message["X-Relayd-Queue-ID"] = queue_id
    per_message["Arrival-Date"] = _date(received_at)

    blocks = [per_message]
    for recipient in failed:
        block = email.message.Message()
        block["Final-Recipient"] = f"rfc822; {recipient.address}"
        block["Action"] = "failed"
        block["Status"] = recipient.status or "5.0.0"
        if recipient.remote_mta:
            block["Remote-MTA"] = f"dns; {recipient.remote_mta}"
        block["Diagnostic-Code"] = f"smtp; {recipient.diagnostic}"
        block["Last-Attempt-Date"] = _date(recipient.last_attempt)
        blocks.append(block)

    part = email.message.Message()
    part.set_type("message/delivery-status")
    part.set_payload(blocks)
    return part


def _headers_part(original: bytes) -> email.message.EmailMessage:
    part = email.message.EmailMessage(policy=email.policy.SMTP)
    part.set_content(header_section(original) + b"\r\n", maintype="text", subtype="rfc822-headers", cte="8bit")
    return part


def _date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, timezone.utc))
