"""Library exceptions of a delivery session translated into replies relayd records.

aiosmtplib, ssl and OSError exceptions end here: every failure becomes a
Reply, and the outcome module turns replies into recipient states.
"""

import ssl

import aiosmtplib

from relayd.reply import Reply


class HostFailed(Exception):
    """A host could not start a transaction; the next host is tried."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


def local_reply(code: int, enhanced: str, text: str, command: str) -> Reply:
    return Reply(code, enhanced, text, command)


def translate_error(exc: BaseException, command: str) -> Reply:
    """Turn a library exception into the transient reply relayd records for it."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return Reply.parse(exc.code, exc.message, command)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return local_reply(451, "4.4.2", f"Timed out waiting for the reply to {command}", command)
    if isinstance(exc, ssl.SSLError):
        return local_reply(451, "4.7.0", f"TLS handshake failed: {exc.reason or exc}", command)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return local_reply(451, "4.4.2", f"Connection lost during {command}", command)
    if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return local_reply(451, "4.4.1", "Connection refused", command)
    return local_reply(451, "4.4.1", f"Connection failed: {exc}", command)
