"""Failure policy: what a reply or an error means for the recipients of an attempt.

One function per scope (connection, message, recipient). Anything that is
not clearly permanent is transient: a wrong deferral costs a retry, a wrong
bounce loses the mail.
"""

from relayd.reply import Reply

DELIVERED = "delivered"
DEFERRED = "deferred"
BOUNCED = "bounced"


def for_reply(reply: Reply) -> str:
    """Return the recipient state a reply to MAIL, RCPT or the final dot leads to."""
    if 200 <= reply.code < 300:
        return DELIVERED
    if 500 <= reply.code < 600:
        return BOUNCED
    return DEFERRED


def for_recipient(reply: Reply) -> str | None:
    """Return the state a RCPT reply settles, or None when the recipient was accepted.

    RFC 5321 3.4: 251 (will forward) is a positive reply like 250.
    """
    if reply.code in (250, 251):
        return None
    return BOUNCED if 500 <= reply.code < 600 else DEFERRED


def for_connection(replies: list[Reply]) -> str:
    """Return the state of all recipients when no MX host could start a transaction.

    The failure is permanent only when every host refused the session with a
    5xx greeting (RFC 5321 3.1: no SMTP service here). Refused connections,
    time-outs and 4xx replies are transient.
    """
    if replies and all(r.command == "CONNECT" and 500 <= r.code < 600 for r in replies):
        return BOUNCED
    return DEFERRED
