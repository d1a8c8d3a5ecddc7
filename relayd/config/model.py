"""The configuration as one frozen dataclass tree; every default lives here."""

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from relayd.config.units import HostPort

MESSAGE_CLASSES = ("auth", "transactional", "shipping", "notification")
TLS_MODES = ("opportunistic", "required", "off")
ALIGNMENT_POLICIES = ("reject", "warn", "off")
DKIM_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
WEBHOOK_EVENTS = ("queued", "delivered", "deferred", "bounced", "expired", "suppressed", "duplicate")
SUPPRESSION_ACTIONS = ("reject", "drop")


@dataclass(frozen=True)
class ServerConfig:
    hostname: str = "localhost"
    spool_dir: Path = Path("var/spool")
    # On SIGTERM, attempts and inbound transactions in progress get this
    # long to finish; what is left stays in the spool for the next start.
    shutdown_grace: float = 30.0


@dataclass(frozen=True)
class SmtpConfig:
    listen: tuple[HostPort, ...] = (HostPort("127.0.0.1", 2525),)
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    max_message_size: int = 25_000_000
    # RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients.
    max_recipients: int = 100
    # RFC 5321 4.5.3.2.7: the server waits at least 5 minutes for the next command.
    idle_timeout: float = 300.0


@dataclass(frozen=True)
class HttpConfig:
    listen: HostPort = HostPort("127.0.0.1", 2580)
    # Recipient domains that get a label value of their own in the metrics;
    # every other domain is counted as "other", so the series stay bounded.
    metrics_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class DnsConfig:
    nameservers: tuple[HostPort, ...] = ()
    timeout: float = 5.0


@dataclass(frozen=True)
class DeliveryConfig:
    port: int = 25
    tls: str = "opportunistic"
    # RFC 5321 4.5.3.2 gives 5 minutes for the greeting and each command and
    # 10 minutes for the reply to the final dot; relayd waits less for a
    # connection and the greeting so a dead MX host does not hold a slot long.
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    max_concurrency: int = 50
    # Attempts in progress at once to one recipient domain, so one slow
    # destination cannot take every slot.
    max_per_domain: int = 10
    # Sessions open at once to one MX address, whichever domains it serves.
    max_per_host: int = 20
    # How long an SMTP session stays open, unused, for the next message.
    connection_idle: float = 5.0
    # After this many attempts in a row that reach no host, the domain is
    # paused for `pause` instead of being tried again at once.
    pause_after: int = 5
    pause: float = 60.0
    # Send an RFC 3464 DSN to the sender of a bounced or expired recipient.
    # Off by default: applications learn outcomes from webhooks or logs.
    dsn: bool = False
    # Follow the MTA-STS policies domains publish (RFC 8461).
    mta_sts: bool = True
    # CA certificates for verifying MX hosts and MTA-STS servers; empty
    # means the system's store.
    ca_file: str = ""
    # TLS mode by recipient domain, overriding `tls`.
    tls_policy: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # This relay's outbound addresses, for the SPF part of the alignment
    # check; empty means the addresses of server.hostname.
    source_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """A configured next hop: a host name or IP address and an optional port."""

    host: str
    port: int | None = None


@dataclass(frozen=True)
class RetryPolicy:
    first: float = 30.0
    multiplier: float = 2.0
    max_interval: float = 3600.0
    give_up: float = 2 * 86400.0


@dataclass(frozen=True)
class ClassConfig:
    deadline: float
    retry: RetryPolicy
    # Fraction of delivery slots, and of each domain's, kept for this class.
    share: float = 0.0


@dataclass(frozen=True)
class ClassRule:
    """Picks `message_class` for a message whose sender or a recipient domain matches.

    `sender` is an address, or "*@domain" for every address of a domain.
    """

    message_class: str
    sender: str = ""
    recipient_domain: str = ""


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    key_file: Path
    algorithm: str = "rsa-sha256"
    # An inactive key is published but does not sign yet: the next selector
    # during a key rotation.
    active: bool = True


@dataclass(frozen=True)
class PolicyConfig:
    alignment: str = "warn"


# Standard Webhooks suggests retrying over several days with exponential
# backoff; this curve (5 s, 20 s, 80 s, ... capped at 6 h) keeps trying for
# 3 days, past a weekend outage of the receiver.
WEBHOOK_RETRY = RetryPolicy(first=5.0, multiplier=4.0, max_interval=6 * 3600.0, give_up=3 * 86400.0)


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = WEBHOOK_EVENTS
    # Standard Webhooks recommends a request timeout of 15 to 30 seconds.
    timeout: float = 15.0
    max_concurrency: int = 4
    retry: RetryPolicy = WEBHOOK_RETRY


@dataclass(frozen=True)
class SuppressionConfig:
    # Enhanced status codes (RFC 3463) of a bounce that add the recipient to
    # the suppression list: X.1.1 bad mailbox, X.1.2 bad system, X.1.3 bad
    # mailbox syntax, X.1.6 mailbox moved, X.1.10 null MX (RFC 7505), X.2.1
    # mailbox disabled. "x" in a code matches any number.
    codes: tuple[str, ...] = ("5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1")
    # "reject": 550 at RCPT; "drop": accept, send nothing, emit a suppressed event.
    action: str = "reject"
    # Lifetime of an entry added by a bounce; None keeps it until removed.
    ttl: float | None = None


@dataclass(frozen=True)
class IdempotencyConfig:
    window: float = 86400.0
    by_message_id: bool = False


# Delivery deadlines per class, and the retry keys in which a class differs
# from [retry] unless the file overrides them: a stale 2FA code is worse than
# none, so auth gives up after 15 minutes.
CLASS_DEADLINES = {"auth": 1.0, "transactional": 30.0, "shipping": 300.0, "notification": 3600.0}
# Share of slots reserved per class; the slots left over are shared by every class.
CLASS_SHARES = {"auth": 0.2, "transactional": 0.2, "shipping": 0.1, "notification": 0.1}
CLASS_RETRY_DEFAULTS: Mapping[str, Mapping[str, float]] = {
    "auth": {"first": 5.0, "max_interval": 60.0, "give_up": 900.0},
    "transactional": {},
    "shipping": {},
    "notification": {"give_up": 5 * 86400.0},
}


@dataclass(frozen=True)
class Config:
    server: ServerConfig = ServerConfig()
    smtp: SmtpConfig = SmtpConfig()
    http: HttpConfig = HttpConfig()
    dns: DnsConfig = DnsConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    routes: Mapping[str, Route] = field(default_factory=lambda: MappingProxyType({}))
    retry: RetryPolicy = RetryPolicy()
    classes: Mapping[str, ClassConfig] = field(default_factory=lambda: MappingProxyType({}))
    class_rules: tuple[ClassRule, ...] = ()
    # Honour a client's X-Relayd-Class header field; it is removed before delivery either way.
    class_header: bool = True
    dkim_keys: tuple[DkimKey, ...] = ()
    policy: PolicyConfig = PolicyConfig()
    webhooks: tuple[Webhook, ...] = ()
    suppression: SuppressionConfig = SuppressionConfig()
    idempotency: IdempotencyConfig = IdempotencyConfig()
    path: Path | None = None

    def deadline_for(self, message_class: str) -> float:
        found = self.classes.get(message_class)
        return found.deadline if found else CLASS_DEADLINES.get(message_class, CLASS_DEADLINES["transactional"])

    def shares(self) -> dict[str, float]:
        return {name: found.share for name, found in self.classes.items()}

    def retry_for(self, message_class: str) -> RetryPolicy:
        """Return the retry curve of `message_class`, falling back to [retry]."""
        found = self.classes.get(message_class)
        return found.retry if found else self.retry
