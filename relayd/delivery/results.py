"""The values an attempt produces: the outbound envelope and one decision per recipient."""

from dataclasses import dataclass, field

import idna

from relayd.reply import Reply


@dataclass(frozen=True)
class OutboundEnvelope:
    sender: str
    smtputf8: bool = False
    body_8bit: bool = False


@dataclass(frozen=True)
class RecipientResult:
    """The decision of one attempt for one recipient."""

    address: str
    state: str
    reply: Reply
    host: str


@dataclass
class AttemptResult:
    results: list[RecipientResult]
    host: str = ""
    delays: dict = field(default_factory=dict)
    # The TLS protocol and cipher of the session, or "none".
    tls: str = "none"
    # False when no host could even start a session: the destination is down.
    connected: bool = True


def wire_address(address: str) -> str:
    """Return `address` with its domain in IDNA ASCII form, the local part unchanged."""
    if not address:
        return ""
    local, _, domain = address.rpartition("@")
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        pass
    return f"{local}@{domain}"
