"""The inbound SMTP protocol: aiosmtpd's SMTP with relayd's replies and address parsing."""

import asyncio
import secrets

import structlog
from aiosmtpd.smtp import SMTP, syntax

from relayd import maillog
from relayd.config import Config
from relayd.reply import Reply
from relayd.smtp import replies
from relayd.smtp.handler import SubmissionHandler
from relayd.smtp.sessions import Sessions

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
    "553 5.1.3 Error: malformed address": replies.R501_SYNTAX_ADDRESS,
    "501 Error: BODY can only be one of 7BIT, 8BITMIME": replies.R501_BAD_PARAMETER.format(
        detail="BODY must be 7BIT or 8BITMIME"
    ),
    "501 Error: SMTPUTF8 takes no arguments": replies.R501_BAD_PARAMETER.format(detail="SMTPUTF8 takes no value"),
    "555 MAIL FROM parameters not recognized or not implemented": replies.R555_UNKNOWN_PARAMETER,
    "555 RCPT TO parameters not recognized or not implemented": replies.R555_UNKNOWN_PARAMETER,
    "502 EXPN not implemented": replies.R502_NO_EXPN,
    "250 OK": replies.R250_OK,
    "221 Bye": replies.R221_BYE,
}


class RelaySMTP(SMTP):
    """One inbound SMTP session."""

    def __init__(self, handler: SubmissionHandler, config: Config, sessions: Sessions | None = None):
        self._sessions = sessions if sessions is not None else Sessions()
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
        self._session_id = secrets.token_hex(4)
        structlog.contextvars.bind_contextvars(peer=self._peer(), session=self._session_id)
        if self._sessions.draining:
            maillog.rejected(reply=replies.R421_SHUTTING_DOWN, reason="shutting down", client=self._client())
            self.close_for_shutdown()
            return
        await super()._handle_client()

    # Shutdown (relayd.smtp.sessions): the session list, a 421 to new
    # transactions while draining, and the 421 that ends a session.

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._sessions.opened(self)

    @property
    def in_transaction(self) -> bool:
        return bool(self.envelope is not None and self.envelope.mail_from)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str) -> None:
        if self._sessions.draining:
            maillog.rejected(reply=replies.R421_SHUTTING_DOWN, reason="shutting down", client=self._client())
            self.close_for_shutdown()
            return
        if self.session is not None and self.session.extended_smtp and not self.in_transaction:
            problem = self._parameter_problem(arg, "FROM:", "MAIL FROM", _MAIL_PARAMETERS)
            if problem is not None:
                await self.push(str(problem))
                return
        await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str) -> None:
        if self.session is not None and self.session.extended_smtp and self.in_transaction:
            problem = self._parameter_problem(arg, "TO:", "RCPT TO", ())
            if problem is not None:
                await self.push(str(problem))
                return
        await super().smtp_RCPT(arg)

    def _parameter_problem(self, arg: str | None, keyword: str, command: str, allowed: tuple[str, ...]) -> Reply | None:
        """Name the parameter aiosmtpd would refuse without saying which; None leaves the command to aiosmtpd."""
        stripped = self._strip_command_keyword(keyword, arg) if arg else None
        if not stripped:
            return None
        address, parameters = self._getaddr(stripped)
        if not address or not parameters:
            return None
        for parameter in parameters.split():
            name, _, value = parameter.partition("=")
            if name.upper() not in allowed:
                supported = f"this server supports {', '.join(allowed)}" if allowed else "this server supports none"
                return replies.R555_UNSUPPORTED_PARAMETER.format(command=command, name=name, allowed=supported)
            if name.upper() == "SIZE" and not value.isdigit():
                return replies.R501_BAD_PARAMETER.format(detail=f"SIZE={value} is not a number of octets")
        return None

    def close_for_shutdown(self) -> None:
        """Send 421 (RFC 5321 3.8) and close the connection."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(str(replies.R421_SHUTTING_DOWN).encode() + b"\r\n")
            self.transport.close()

    def _peer(self) -> str:
        peer = self.session.peer if self.session else None
        if not peer:
            return "unknown"
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"

    async def push(self, status):
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        reply = self._translate(text)
        if reply != text and reply[:1] in ("4", "5"):
            # A refusal aiosmtpd decided (size, syntax, order of commands):
            # the handler did not log it.
            maillog.rejected(reply=Reply.parse(int(reply[:3]), reply[4:]), reason="protocol", client=self._client())
        if not (self.envelope is not None and self.envelope.smtp_utf8) and not reply.isascii():
            # RFC 6531 3.7.4.2: UTF-8 in replies only to SMTPUTF8 clients.
            reply = reply.encode("ascii", "backslashreplace").decode("ascii")
        await super().push(reply)

    def _client(self) -> str:
        return str(self.session.peer[0]) if self.session and self.session.peer else "unknown"

    async def smtp_AUTH(self, arg: str) -> None:
        maillog.rejected(reply=replies.R502_NO_AUTH, reason="AUTH attempted", client=self._client())
        await super().push(str(replies.R502_NO_AUTH))

    async def smtp_STARTTLS(self, arg: str) -> None:
        maillog.rejected(reply=replies.R502_NO_STARTTLS, reason="STARTTLS attempted", client=self._client())
        await super().push(str(replies.R502_NO_STARTTLS))

    def _timeout_cb(self):
        # RFC 5321 4.5.3.2: a server that closes an idle session sends 421 first.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(str(replies.R421_IDLE_TIMEOUT).encode() + b"\r\n")
        log.info("session_idle_timeout", peer=self._peer(), session=getattr(self, "_session_id", ""))
        super()._timeout_cb()

    def connection_lost(self, error: Exception | None) -> None:
        in_transaction = bool(self.envelope is not None and self.envelope.mail_from)
        log.info(
            "session_closed",
            peer=self._peer(),
            session=getattr(self, "_session_id", ""),
            in_transaction=in_transaction,
            error=str(error) if error else None,
        )
        self._sessions.closed(self)
        super().connection_lost(error)

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
        if text.startswith("250 Supported commands:"):
            return str(replies.R214_HELP.format(detail=text[4:]))
        if text.startswith("252 Cannot VRFY"):
            return str(replies.R252_CANNOT_VERIFY)
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


# The MAIL parameters of the extensions relayd offers (RFC 1870, 6152, 6531).
_MAIL_PARAMETERS = ("SIZE", "BODY", "SMTPUTF8")


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


async def start_listeners(
    config: Config, handler: SubmissionHandler, sessions: Sessions
) -> list[asyncio.AbstractServer]:
    """Start one listening socket for each `smtp.listen` address.

    Each new session reads `handler.config`, so a reloaded config applies
    to sessions opened after the reload.
    """
    loop = asyncio.get_running_loop()
    servers = []
    for address in config.smtp.listen:
        server = await loop.create_server(
            lambda: RelaySMTP(handler, handler.config, sessions), host=address.host, port=address.port
        )
        servers.append(server)
        log.info("listening", address=str(address))
    return servers
