"""DSN construction (RFC 3464), checked against a golden file and parsed back with the email package."""

import email
import email.policy
import re
from pathlib import Path

from relayd.dsn import FailedRecipient, build_dsn

GOLDEN = Path(__file__).parent / "golden" / "dsn-bounced-and-expired.eml"
ORIGINAL = (
    b"From: Shop <no-reply@shop.example>\r\n"
    b"To: customer@dest.example\r\n"
    b"Subject: Your password reset code\r\n"
    b"Message-ID: <reset-1@shop.example>\r\n"
    b"\r\n"
    b"Your code is 493021\r\n"
)
FAILED = [
    FailedRecipient("customer@dest.example", "bounced", "5.1.1", "550 5.1.1 No such user", "mx1.dest.example", 1796400060.0),
    FailedRecipient("other@dest.example", "expired", "4.4.1", "451 4.4.1 Connection refused", "mx2.dest.example", 1796403600.0),
]


def make_dsn() -> bytes:
    return build_dsn(
        hostname="relay.example.com",
        queue_id="661D4E2B197F8C7A28B",
        sender="no-reply@shop.example",
        received_at=1796400000.0,
        original=ORIGINAL,
        failed=FAILED,
    )


def without_volatile(dsn: bytes) -> bytes:
    """Replace the fields that change on every run: Date, Message-ID and the MIME boundary."""
    boundary = re.search(rb'boundary="([^"]+)"', dsn).group(1)
    dsn = dsn.replace(boundary, b"BOUNDARY")
    dsn = re.sub(rb"(?m)^Date: .*$", b"Date: DATE", dsn)
    return re.sub(rb"(?m)^Message-ID: .*$", b"Message-ID: MESSAGE-ID", dsn)


def test_dsn_matches_golden_file():
    assert without_volatile(make_dsn()) == GOLDEN.read_bytes()


def test_dsn_crlf_only():
    dsn = make_dsn()
    assert b"\n" not in dsn.replace(b"\r\n", b"")


def test_dsn_parses_as_report():
    report = email.message_from_bytes(make_dsn(), policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["Auto-Submitted"] == "auto-replied"
    parts = list(report.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]

    blocks = parts[1].get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; relay.example.com"
    assert [b["Final-Recipient"] for b in blocks[1:]] == ["rfc822; customer@dest.example", "rfc822; other@dest.example"]
    assert [b["Status"] for b in blocks[1:]] == ["5.1.1", "4.4.1"]
    assert [b["Action"] for b in blocks[1:]] == ["failed", "failed"]


def test_dsn_leaves_out_body():
    dsn = make_dsn()
    assert b"Subject: Your password reset code" in dsn
    assert b"493021" not in dsn
