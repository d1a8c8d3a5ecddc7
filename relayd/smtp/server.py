"""The inbound SMTP protocol: aiosmtpd's SMTP with relayd's replies and address parsing."""

import asyncio
import secrets

import structlog
from aiosmtpd.smtp import SMTP

from relayd.config import Config
from relayd.reply import Reply
from relayd.smtp import replies
from relayd.smtp.handler import SubmissionHandler

log = structlog.get_logger("relayd.smtp")

# aiosmtpd 1.4.6 sends these fixed replies itself. Each becomes relayd's own
# reply with an enhanced status code (RFC 2034) and a sentence a person can
# act on.
_LIBRARY_REPLIES: dict[str, Reply] = {
    "500 Line too long (see RFC5321 4.5.3.1.6)": replies.R550_LINE_TOO_LONG,
    "500 Command line too long": replies.R500_LINE_TOO_LONG_COMMAND,
    "500 Error: bad syntax": replies.R500_SYNTAX,
    "500 Error: strict ASCII mode": replies.R500_SYNTAX,
    "503 Error: need RCPT command": replies.R503_NEED_RCPT,
    "503 Error: need MAIL command": replies.R503_NEED_MAIL,
    "503 Error: nested MAIL command": replies.R503_NESTED_MAIL,
    "503 Error: send HELO first": replies.R503_NEED_EHLO,
    "503 Error: send EHLO first": replies.R503_NEED_EHLO,
    "553 5.1.3 Error: malformed address": Reply(
        553, "5.1.3", "Invalid address: enclose it in angle brackets, as in <user@example.com>"
    ),
    "501 Error: BODY can only be one of 7BIT, 8BITMIME": replies.R501_BAD_PARAMETER.format(
        detail="BODY must be 7BIT or 8BITMIME"
    ),
    "501 Error: SMTPUTF8 takes no arguments": replies.R501_BAD_PARAMETER.format(detail="SMTPUTF8 takes no value"),
    "555 MAIL FROM parameters not recognized or not implemented": replies.R555_UNKNOWN_PARAMETER,
    "555 RCPT TO parameters not recognized or not implemented": replies.R555_UNKNOWN_PARAMETER,
    "250 OK": replies.R250_OK,
    "221 Bye": replies.R221_BYE,
}


class RelaySMTP(SMTP):
    """One inbound SMTP session."""

    def __init__(self, handler: SubmissionHandler, config: Config):
        super().__init__(
            handler,
            hostname=config.server.hostname,
            ident="ESMTP relayd",
            data_size_limit=config.smtp.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=config.smtp.idle_timeout,
        )
        self._size_reply = replies.R552_TOO_BIG.format(limit=config.smtp.max_message_size)

    async def _handle_client(self) -> None:
        # aiosmtpd runs each session in its own task, so ids bound here
        # reach every log line of this session and no other.
        peer = self.session.peer if self.session else None
        structlog.contextvars.bind_contextvars(
            peer=f"{peer[0]}:{peer[1]}" if peer else "unknown", session=secrets.token_hex(4)
        )
        await super()._handle_client()

    async def push(self, status):
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        await super().push(self._translate(text))

    def _translate(self, text: str) -> str:
        if text.startswith("552 Error:"):
            return str(self._size_reply)
        if text in _LIBRARY_REPLIES:
            return str(_LIBRARY_REPLIES[text])
        if text.startswith("501 Syntax: MAIL"):
            return str(replies.R501_SYNTAX_MAIL)
        if text.startswith("501 Syntax: RCPT"):
            return str(replies.R501_SYNTAX_RCPT)
        if text.startswith('500 Error: command "'):
            return str(replies.R500_SYNTAX)
        return _add_enhanced_code(text)

    def _getaddr(self, arg: str):
        """Split a MAIL or RCPT argument into the path's text and the parameters.

        aiosmtpd's own parser rewrites the address through the email
        package's header grammar; relayd keeps the exact text between the
        angle brackets and checks it against RFC 5321 in the handler.
        """
        text = arg.strip()
        if not text:
            return "", ""
        if not text.startswith("<"):
            address, _, rest = text.partition(" ")
            return address, rest
        end = _closing_bracket(text)
        if end < 0:
            return None, None
        inner = text[1:end]
        return (inner or "<>"), text[end + 1 :].strip()


def _closing_bracket(text: str) -> int:
    """Return the index of the '>' that closes the path, skipping quoted strings."""
    quoted = escaped = False
    for index, char in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
    return -1


def _add_enhanced_code(text: str) -> str:
    """Add a generic enhanced status code (RFC 3463 x.0.0) to a negative reply that lacks one."""
    code, sep, rest = text.partition(" ")
    if not sep or not code.isdigit() or code[0] not in "45":
        return text
    first = rest.split(" ", 1)[0]
    if first[:2] == f"{code[0]}." and first.count(".") == 2:
        return text
    return f"{code} {code[0]}.0.0 {rest}"


async def start_listeners(config: Config, handler: SubmissionHandler) -> list[asyncio.AbstractServer]:
    """Start one listening socket for each `smtp.listen` address."""
    loop = asyncio.get_running_loop()
    servers = []
    for address in config.smtp.listen:
        server = await loop.create_server(lambda: RelaySMTP(handler, config), host=address.host, port=address.port)
        servers.append(server)
        log.info("listening", address=str(address))
    return servers
