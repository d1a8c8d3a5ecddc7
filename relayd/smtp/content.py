"""Checks on the content received with DATA, run before anything is spooled."""

import re

from relayd.reply import Reply
from relayd.smtp import replies

# RFC 5321 4.5.3.1.6 and RFC 5322 2.1.1: at most 998 octets before CRLF.
MAX_LINE_OCTETS = 998
_LONG_LINE = re.compile(rb"[^\r\n]{%d}" % (MAX_LINE_OCTETS + 1))


def check_content(content: bytes) -> Reply | None:
    """Return the rejection for `content`, or None when it may be spooled.

    aiosmtpd splits DATA on CRLF only, so `content` is a series of
    CRLF-terminated lines; any CR or LF left after removing those pairs is a
    bare line ending.
    """
    if b"\0" in content:
        return replies.R550_NUL_BYTE
    without_crlf = content.replace(b"\r\n", b"")
    if b"\n" in without_crlf:
        return replies.R550_BARE_LINE_ENDING.format(what="LF")
    if b"\r" in without_crlf:
        return replies.R550_BARE_LINE_ENDING.format(what="CR")
    if _LONG_LINE.search(content):
        return replies.R550_LINE_TOO_LONG
    return None
