"""Opening an SMTP session to one MX host address: connect, greeting, EHLO or HELO, STARTTLS."""

import ssl
from dataclasses import dataclass

import aiosmtplib
import structlog

from relayd.config.model import DeliveryConfig
from relayd.delivery.errors import HostFailed, local_reply, translate_error
from relayd.delivery.routing import MxHost
from relayd.reply import Reply

log = structlog.get_logger("relayd.delivery")

_REQUIRED_BY = {"required": "TLS is required", "verify": "the domain's MTA-STS policy requires TLS"}


@dataclass
class Session:
    """An open SMTP connection, ready for MAIL, and what it was opened with."""

    client: aiosmtplib.SMTP
    host: MxHost
    address: str
    tls_mode: str
    tls: str = "none"
    # True while no transaction is open on the server's side, so a reused
    # session can start with MAIL. The reply to the final dot, to RSET or
    # to a rejected MAIL leaves the server in its initial state (RFC 5321
    # 4.1.1.1, 4.1.1.4, 4.1.1.5). After an error the state is unknown.
    ready: bool = True
    # True when the session comes from the pool, where the server may have
    # closed it unseen.
    reused: bool = False

    @property
    def key(self) -> tuple[str, int, str]:
        """The pool key: sessions are shared only between attempts with the same TLS mode."""
        return (self.address, self.host.port, self.tls_mode)

    @property
    def label(self) -> str:
        return f"{self.host.name}[{self.address}]:{self.host.port}"


async def open_session(local_hostname: str, host: MxHost, address: str, tls_mode: str, config: DeliveryConfig) -> Session:
    """Return a session on which a transaction can start; raise HostFailed otherwise."""
    client = await _connect(local_hostname, host, address, config)
    session = Session(client, host, address, tls_mode)
    if tls_mode == "off":
        return session
    if not client.supports_extension("starttls"):
        if tls_mode in ("required", "verify"):
            await close_session(session)
            reply = local_reply(451, "4.7.10", f"{host.name} does not offer STARTTLS and {_REQUIRED_BY[tls_mode]}", "EHLO")
            raise HostFailed(reply)
        return session
    try:
        # "verify" is the MTA-STS enforce mode (RFC 8461 4.2): the
        # certificate must be valid for the MX host name. Otherwise TLS is
        # opportunistic and unauthenticated (RFC 7435).
        await client.starttls(
            server_hostname=host.name,
            validate_certs=tls_mode == "verify",
            cert_bundle=config.ca_file or None,
            timeout=config.command_timeout,
        )
        await client.ehlo(timeout=config.command_timeout)
    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
        await close_session(session)
        reply = translate_error(exc, "STARTTLS")
        if tls_mode in ("required", "verify"):
            raise HostFailed(reply) from exc
        # RFC 7435: opportunistic TLS falls back to plain text when the
        # handshake fails.
        log.info("starttls_failed_falling_back", host=host.name, address=address, reply=str(reply))
        return Session(await _connect(local_hostname, host, address, config), host, address, tls_mode)
    session.tls = _describe_tls(client)
    return session


async def close_session(session: Session) -> None:
    """End the session politely; a failure here changes no outcome."""
    client = session.client
    if client.is_connected:
        try:
            await client.quit(timeout=5)
        except (aiosmtplib.SMTPException, OSError):
            client.close()


def _describe_tls(client: aiosmtplib.SMTP) -> str:
    ssl_object = client.get_transport_info("ssl_object")
    if ssl_object is None:
        return "none"
    cipher = ssl_object.cipher()
    return f"{ssl_object.version()} {cipher[0] if cipher else ''}".strip()


async def _connect(local_hostname: str, host: MxHost, address: str, config: DeliveryConfig) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(
        hostname=address,
        port=host.port,
        local_hostname=local_hostname,
        timeout=config.command_timeout,
        start_tls=False,
        use_tls=False,
    )
    try:
        await client.connect(timeout=config.connect_timeout)
    except aiosmtplib.SMTPConnectResponseError as exc:
        raise HostFailed(Reply.parse(exc.code, exc.message, "CONNECT")) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise HostFailed(translate_error(exc, "CONNECT")) from exc
    try:
        await client.ehlo(timeout=config.command_timeout)
    except aiosmtplib.SMTPHeloError:
        # RFC 5321 3.2: a server that does not understand EHLO still takes HELO.
        try:
            await client.helo(timeout=config.command_timeout)
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise HostFailed(translate_error(exc, "HELO")) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        client.close()
        raise HostFailed(translate_error(exc, "EHLO")) from exc
    return client
