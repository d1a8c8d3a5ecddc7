"""Every reply relayd's SMTP listener sends, with its RFC 3463 enhanced status code.

The client sees a clear, generic sentence; the detailed reason goes to the
log. Constants with `{placeholders}` are filled in with Reply.format().
"""

from relayd.reply import Reply

R221_BYE = Reply(221, "2.0.0", "Bye")
R250_OK = Reply(250, "2.0.0", "Ok")
R250_SENDER_OK = Reply(250, "2.1.0", "Sender ok")
R250_RECIPIENT_OK = Reply(250, "2.1.5", "Recipient ok")
R250_QUEUED = Reply(250, "2.0.0", "Ok: queued as {queue_id}")
# A resubmission with the Idempotency-Key (or Message-ID) of a message
# accepted within the window: nothing new is queued.
R250_DUPLICATE = Reply(250, "2.0.0", "Ok: duplicate of {queue_id}")
R214_HELP = Reply(214, "2.0.0", "{detail}")
# RFC 5321 3.5.3: a relay cannot verify a remote mailbox.
R252_CANNOT_VERIFY = Reply(252, "2.5.0", "Cannot verify the address, but will accept a message for it and attempt delivery")

R421_IDLE_TIMEOUT = Reply(421, "4.4.2", "Idle for too long, closing the connection")
# RFC 5321 3.8: a server that is shutting down replies 421 and closes. The
# message is not lost: the client keeps it and tries again.
R421_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing the connection; try again in a moment")
R451_STORE_FAILED = Reply(451, "4.3.0", "Temporary failure storing the message, try again later")
R451_KEY_IN_USE = Reply(
    451, "4.3.0", "Another submission with the same Idempotency-Key is being stored right now, try again later"
)
R452_SPOOL_FULL = Reply(452, "4.3.1", "Insufficient storage for the message, try again later")
# RFC 5321 4.5.3.1.10: 452 to RCPT when the recipient limit is reached, and
# the client sends the remaining recipients in a further transaction.
R452_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients: at most {limit} per message, send the rest in another message")

R500_LINE_TOO_LONG_COMMAND = Reply(500, "5.5.2", "Command line too long")
R500_SYNTAX = Reply(500, "5.5.2", "Syntax error, command not recognized")
R501_SYNTAX_ADDRESS = Reply(501, "5.5.4", "Syntax error in the address: enclose it in angle brackets, as in <user@example.com>")
R502_NO_AUTH = Reply(502, "5.5.1", "AUTH is not supported: clients in an allowed network submit without authentication")
R502_NO_STARTTLS = Reply(502, "5.5.1", "STARTTLS is not supported on this listener")
R501_SYNTAX_MAIL = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
R501_SYNTAX_RCPT = Reply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
R501_BAD_PARAMETER = Reply(501, "5.5.4", "Invalid parameter: {detail}")
R503_NESTED_MAIL = Reply(503, "5.5.1", "Sender already given, send RSET to start a new message")
R503_NEED_MAIL = Reply(503, "5.5.1", "Send MAIL FROM first")
R503_NEED_RCPT = Reply(503, "5.5.1", "Send RCPT TO first: the message has no valid recipient")
R503_NEED_EHLO = Reply(503, "5.5.1", "Send EHLO or HELO first")
R550_RELAY_DENIED = Reply(550, "5.7.1", "Relay access denied: client address {client} is not in an allowed network")
# RFC 3463 X.1.1: the mailbox is treated as nonexistent while it is suppressed.
R550_SUPPRESSED_BOUNCE = Reply(
    550,
    "5.1.1",
    "Recipient suppressed: a message to this address bounced permanently on {date}, "
    "and it stays refused until it is removed from the suppression list",
)
R550_SUPPRESSED_MANUAL = Reply(
    550, "5.1.1", "Recipient suppressed: the operator put this address on the suppression list on {date}"
)
# The enhanced code is replaced by the one the address check chose.
R553_BAD_ADDRESS = Reply(553, "5.1.3", "Invalid address: {detail}")
R553_ADDRESS_LITERAL = Reply(553, "5.1.2", "Address literals as recipient domains are not relayed; use a domain name")
# RFC 5321 4.5.3.1.6 and RFC 5322 2.1.1: a line is at most 998 octets plus CRLF.
R550_LINE_TOO_LONG = Reply(
    550,
    "5.6.0",
    "Message refused: a line is longer than 998 octets; encode the body with quoted-printable or base64 and fold long header fields",
)
R550_INVALID_CLASS = Reply(
    550, "5.6.0", "Message refused: X-Relayd-Class \"{value}\" is not a class; use auth, transactional, shipping or notification"
)
# RFC 6152 and RFC 5322 2.3: no NUL in message content, 8-bit or not.
R550_NUL_BYTE = Reply(550, "5.6.0", "Message refused: it contains a NUL byte; encode binary data with base64")
# RFC 5321 2.3.8: lines end with CRLF only. A bare CR or LF is what SMTP
# smuggling relies on, so the whole message is refused rather than repaired.
R550_BARE_LINE_ENDING = Reply(
    550,
    "5.6.0",
    "Message refused: it contains a bare {what}; every line must end with CRLF",
)
# The alignment check under [policy] alignment = "reject". RFC 7372 defines
# x.7.26 as "multiple authentication checks failed": here DKIM and SPF.
R550_NOT_ALIGNED = Reply(550, "5.7.26", "Message refused: mail from {domain} would fail DMARC because {reason}")
# RFC 7489 6.6.1: DMARC needs exactly one author address in From.
R550_NO_AUTHOR_DOMAIN = Reply(
    550,
    "5.7.1",
    "Message refused: the From field must contain exactly one address, so that receivers can check DMARC for its domain",
)
# RFC 3463 x.4.3: a directory server (here DNS) failed.
R451_ALIGNMENT_UNCHECKED = Reply(451, "4.4.3", "Temporary DNS failure checking DMARC alignment for {domain}, try again later")
R552_TOO_BIG = Reply(552, "5.3.4", "Message too big: the maximum size is {limit} bytes")
R555_UNKNOWN_PARAMETER = Reply(555, "5.5.4", "Unsupported MAIL FROM or RCPT TO parameter")
R555_UNSUPPORTED_PARAMETER = Reply(555, "5.5.4", "Unsupported {command} parameter {name}: {allowed}")
R502_NO_EXPN = Reply(502, "5.5.1", "EXPN is not supported: relayd relays mail and has no mailing lists to expand")
