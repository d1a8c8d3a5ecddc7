"""Every Prometheus metric relayd exports, on a registry of its own.

Names start with `relayd_` and follow Prometheus naming (`_total` for
counters, base units such as `_seconds`). Label values come from small fixed
sets: no recipient, no queue id, and a domain only when it is in
`http.metrics_domains`, otherwise "other". The helpers below are the only
way code outside this module should touch a labelled metric, so a label value
outside its set can never create a new series.
"""

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from relayd.config.model import MESSAGE_CLASSES, DKIM_ALGORITHMS
from relayd.reply import Reply
from relayd.smtp import replies
from relayd.spool.records import PENDING_STATES

# The `_created` series double the output and no dashboard or alert here
# reads them. This switch is process-wide, and relayd is the only user of
# prometheus-client in its process.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(namespace="relayd", registry=REGISTRY)

OTHER = "other"
CLASSES = (*MESSAGE_CLASSES, OTHER)
RECIPIENT_STATES = ("delivered", "deferred", "bounced", "expired", "suppressed")
DNS_TYPES = ("MX", "A", "AAAA", "TXT", OTHER)
DNS_FAILURES = ("nxdomain", "servfail", "timeout", "error")
WEBHOOK_FAILURES = ("timeout", "connection", "http_status", OTHER)
RELOAD_RESULTS = ("success", "failure")

# Every refusal the listener sends, by the name of its constant in
# relayd.smtp.replies, and the reason label it is counted under. A test
# checks that each refusal constant is listed here.
REASON_BY_REPLY = {
    "R421_SHUTTING_DOWN": "shutting_down",
    "R451_STORE_FAILED": "store_failed",
    "R452_SPOOL_FULL": "spool_full",
    "R452_TOO_MANY_RECIPIENTS": "too_many_recipients",
    "R451_ALIGNMENT_UNCHECKED": "alignment",
    "R550_NOT_ALIGNED": "alignment",
    "R550_NO_AUTHOR_DOMAIN": "alignment",
    "R550_RELAY_DENIED": "relay_denied",
    "R553_BAD_ADDRESS": "invalid_address",
    "R553_ADDRESS_LITERAL": "invalid_address",
    "R550_INVALID_CLASS": "invalid_class",
    "R550_SUPPRESSED_BOUNCE": "suppressed",
    "R550_SUPPRESSED_MANUAL": "suppressed",
    "R451_KEY_IN_USE": "idempotency_key_in_use",
    "R550_LINE_TOO_LONG": "invalid_content",
    "R550_NUL_BYTE": "invalid_content",
    "R550_BARE_LINE_ENDING": "invalid_content",
    "R552_TOO_BIG": "too_big",
    "R500_LINE_TOO_LONG_COMMAND": "protocol",
    "R500_SYNTAX": "protocol",
    "R501_SYNTAX_ADDRESS": "protocol",
    "R501_SYNTAX_MAIL": "protocol",
    "R501_SYNTAX_RCPT": "protocol",
    "R501_BAD_PARAMETER": "protocol",
    "R502_NO_AUTH": "protocol",
    "R502_NO_EXPN": "protocol",
    "R502_NO_STARTTLS": "protocol",
    "R503_NESTED_MAIL": "protocol",
    "R503_NEED_MAIL": "protocol",
    "R503_NEED_RCPT": "protocol",
    "R503_NEED_EHLO": "protocol",
    "R555_UNKNOWN_PARAMETER": "protocol",
    "R555_UNSUPPORTED_PARAMETER": "protocol",
}
# A refusal that matches no constant (a reply aiosmtpd wrote itself) is
# grouped by the subject of its RFC 3463 enhanced status code.
_REASON_BY_SUBJECT = {"1": "invalid_address", "5": "protocol", "6": "invalid_content"}
REJECTION_REASONS = tuple(sorted({*REASON_BY_REPLY.values(), *_REASON_BY_SUBJECT.values(), OTHER}))


def _reply_patterns() -> list[tuple[int, re.Pattern, str]]:
    """Return (code, pattern of the text, reason) for each listed constant; a {placeholder} matches any text."""
    patterns = []
    for name, reason in REASON_BY_REPLY.items():
        reply = getattr(replies, name, None)
        if isinstance(reply, Reply):
            parts = re.split(r"\{\w+\}", reply.text)
            patterns.append((reply.code, re.compile(".*".join(re.escape(part) for part in parts), re.S), reason))
    return patterns


_REPLY_PATTERNS = _reply_patterns()

# Accepting takes milliseconds (one fsync); delivering takes from under a
# second to the give-up age of days.
ACCEPT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
DNS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

build_info = Gauge("relayd_build_info", "Always 1; the label carries the relayd version.", ["version"], registry=REGISTRY)

messages_accepted = Counter(
    "relayd_messages_accepted", "Messages accepted and spooled, by class.", ["class"], registry=REGISTRY
)
messages_rejected = Counter(
    "relayd_messages_rejected",
    "Refusals sent in the inbound SMTP dialog, by reason. A refused recipient counts once, "
    "even when the rest of its message is accepted.",
    ["reason"],
    registry=REGISTRY,
)
recipients = Counter(
    "relayd_recipients",
    "Recipient state changes, by state, class and domain (a domain of http.metrics_domains, or other). "
    "A recipient deferred three times counts three times.",
    ["state", "class", "domain"],
    registry=REGISTRY,
)
smtp_sessions_open = Gauge("relayd_smtp_sessions_open", "Inbound SMTP sessions open now.", registry=REGISTRY)

queue_recipients = Gauge(
    "relayd_queue_recipients", "Pending recipients in the spool, by state and class.", ["state", "class"], registry=REGISTRY
)
queue_messages = Gauge("relayd_queue_messages", "Messages in the spool, by class.", ["class"], registry=REGISTRY)
queue_oldest_age = Gauge(
    "relayd_queue_oldest_age_seconds",
    "Age of the oldest message in the spool, by class; 0 when the class has none.",
    ["class"],
    registry=REGISTRY,
)

accept_latency = Histogram(
    "relayd_accept_latency_seconds",
    "Time from the end of DATA to the 250 reply for accepted messages (preparation, DKIM signing, spool fsync), by class.",
    ["class"],
    buckets=ACCEPT_BUCKETS,
    registry=REGISTRY,
)
delivery_latency = Histogram(
    "relayd_delivery_latency_seconds",
    "Time from acceptance to the remote server's positive reply, per delivered recipient, by class.",
    ["class"],
    buckets=DELIVERY_BUCKETS,
    registry=REGISTRY,
)
delivery_attempts = Counter(
    "relayd_delivery_attempts",
    "Recipients tried in delivery attempts, one per recipient per attempt, by result and by the class "
    "and subject of the reply's enhanced status code (RFC 3463), such as 2.0, 4.4 or 5.1.",
    ["result", "status"],
    registry=REGISTRY,
)

dns_lookup_duration = Histogram(
    "relayd_dns_lookup_duration_seconds",
    "Duration of DNS look-ups made for delivery, by record type.",
    ["type"],
    buckets=DNS_BUCKETS,
    registry=REGISTRY,
)
dns_lookup_failures = Counter(
    "relayd_dns_lookup_failures",
    "DNS look-ups for delivery that returned no records, by record type and reason (an empty answer is not counted).",
    ["type", "reason"],
    registry=REGISTRY,
)

# The webhook sender sets and counts these through set_webhook_outbox() and
# record_webhook_failure().
webhook_outbox_events = Gauge(
    "relayd_webhook_outbox_events", "Events waiting in the webhook outbox.", registry=REGISTRY
)
webhook_failures = Counter(
    "relayd_webhook_failures", "Failed webhook requests, by reason.", ["reason"], registry=REGISTRY
)

dkim_signatures = Counter(
    "relayd_dkim_signatures", "DKIM signatures added to messages, by algorithm.", ["algorithm"], registry=REGISTRY
)
config_reloads = Counter(
    "relayd_config_reloads", "Configuration reloads on SIGHUP, by result.", ["result"], registry=REGISTRY
)

_domains: frozenset[str] = frozenset()


def _initialise() -> None:
    """Create every series of the fixed label sets, so rates and alerts see 0 before the first event."""
    try:
        build_info.labels(version=version("relayd")).set(1)
    except PackageNotFoundError:
        build_info.labels(version="unknown").set(1)
    for message_class in CLASSES:
        messages_accepted.labels(message_class)
        accept_latency.labels(message_class)
        delivery_latency.labels(message_class)
        queue_messages.labels(message_class)
        queue_oldest_age.labels(message_class)
        for state in PENDING_STATES:
            queue_recipients.labels(state, message_class)
    for reason in REJECTION_REASONS:
        messages_rejected.labels(reason)
    for result in ("delivered", "deferred", "bounced", "expired"):
        delivery_attempts.labels(result, "none")
    for rdtype in DNS_TYPES:
        dns_lookup_duration.labels(rdtype)
        for reason in DNS_FAILURES:
            dns_lookup_failures.labels(rdtype, reason)
    for reason in WEBHOOK_FAILURES:
        webhook_failures.labels(reason)
    for algorithm in DKIM_ALGORITHMS:
        dkim_signatures.labels(algorithm)
    for result in RELOAD_RESULTS:
        config_reloads.labels(result)
    _initialise_domains()


def _initialise_domains() -> None:
    for domain in (*sorted(_domains), OTHER):
        for message_class in CLASSES:
            for state in RECIPIENT_STATES:
                recipients.labels(state, message_class, domain)


def set_domains(domains: Iterable[str]) -> None:
    """Set the domains that get a label value of their own; all others count as "other"."""
    global _domains
    _domains = frozenset(domains)
    _initialise_domains()


def domain_label(domain: str) -> str:
    return domain if domain in _domains else OTHER


def class_label(message_class: str) -> str:
    return message_class if message_class in MESSAGE_CLASSES else OTHER


def status_label(enhanced: str) -> str:
    """Return the class and subject of an RFC 3463 enhanced status code ("4.7.1" gives "4.7").

    RFC 3463 3 defines subjects 0 to 7; a remote server's code outside
    those gives "other", and a reply without a code gives "none".
    """
    if not enhanced:
        return "none"
    parts = enhanced.split(".")
    if len(parts) != 3 or parts[0] not in ("2", "4", "5") or parts[1] not in ("0", "1", "2", "3", "4", "5", "6", "7"):
        return OTHER
    return f"{parts[0]}.{parts[1]}"


def rejection_reason(reply: Reply) -> str:
    """Return the reason label for a refusal the inbound listener sent."""
    for code, pattern, reason in _REPLY_PATTERNS:
        if reply.code == code and pattern.fullmatch(reply.text):
            return reason
    subject = reply.enhanced.split(".")[1] if reply.enhanced.count(".") == 2 else ""
    return _REASON_BY_SUBJECT.get(subject, OTHER)


def record_rejected(reply: Reply) -> None:
    messages_rejected.labels(rejection_reason(reply)).inc()


def record_accepted(message_class: str, seconds: float) -> None:
    """Count an accepted message and how long it took from the end of DATA to the reply."""
    label = class_label(message_class)
    messages_accepted.labels(label).inc()
    accept_latency.labels(label).observe(seconds)


def record_attempt(
    *, message_class: str, domain: str, received_at: float, now: float, outcomes: Iterable[tuple[str, Reply]]
) -> None:
    """Count the outcome of one attempt: a (state, reply) pair per recipient, all of one domain."""
    label = class_label(message_class)
    domain = domain_label(domain)
    for state, reply in outcomes:
        recipients.labels(state, label, domain).inc()
        delivery_attempts.labels(state, status_label(reply.enhanced)).inc()
        if state == "delivered":
            delivery_latency.labels(label).observe(max(now - received_at, 0.0))


def record_suppressed(message_class: str, domain: str) -> None:
    """Count a recipient not sent because its address is on the suppression list."""
    recipients.labels("suppressed", class_label(message_class), domain_label(domain)).inc()


def record_dns_lookup(rdtype: str, seconds: float, failure: str | None) -> None:
    """Count one DNS look-up; `failure` is one of DNS_FAILURES, or None when it returned records or an empty answer."""
    label = rdtype if rdtype in DNS_TYPES else OTHER
    dns_lookup_duration.labels(label).observe(seconds)
    if failure is not None:
        dns_lookup_failures.labels(label, failure if failure in DNS_FAILURES else "error").inc()


def record_dkim_signature(algorithm: str) -> None:
    dkim_signatures.labels(algorithm if algorithm in DKIM_ALGORITHMS else OTHER).inc()


def set_webhook_outbox(events: int) -> None:
    """Set the number of events waiting in the webhook outbox."""
    webhook_outbox_events.set(events)


def record_webhook_failure(reason: str) -> None:
    """Count a failed webhook request; `reason` is one of WEBHOOK_FAILURES."""
    webhook_failures.labels(reason if reason in WEBHOOK_FAILURES else OTHER).inc()


def record_reload(success: bool) -> None:
    config_reloads.labels("success" if success else "failure").inc()


def set_queue(
    pending: Mapping[tuple[str, str], int], messages: Mapping[str, tuple[int, float]], now: float
) -> None:
    """Set the queue gauges from a spool summary.

    `pending` maps (state, class) to a count of pending recipients and
    `messages` maps a class to (messages, oldest acceptance time). Every
    series is set, so a class that emptied reads 0 instead of its last value.
    """
    recipient_counts = {(state, c): 0 for state in PENDING_STATES for c in CLASSES}
    for (state, message_class), count in pending.items():
        recipient_counts[(state, class_label(message_class))] += count
    message_counts = dict.fromkeys(CLASSES, 0)
    ages = dict.fromkeys(CLASSES, 0.0)
    for message_class, (count, oldest) in messages.items():
        label = class_label(message_class)
        message_counts[label] += count
        ages[label] = max(ages[label], now - oldest)

    for (state, message_class), count in recipient_counts.items():
        queue_recipients.labels(state, message_class).set(count)
    for message_class in CLASSES:
        queue_messages.labels(message_class).set(message_counts[message_class])
        queue_oldest_age.labels(message_class).set(ages[message_class])


def exposition() -> bytes:
    """Return every metric in the Prometheus text format."""
    return generate_latest(REGISTRY)


_initialise()
