"""Tests for relayd.metrics: names, label sets, and the helpers that choose label values."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from relayd import metrics
from relayd.reply import Reply
from relayd.smtp import replies

# Values for the placeholders, as the listener fills them in.
FILLED = {
    "client": "192.0.2.1",
    "limit": "100",
    "detail": "x",
    "what": "LF",
    "value": "bulk",
    "domain": "example.com",
    "command": "MAIL FROM",
    "name": "RET",
    "allowed": "this server supports SIZE",
    "reason": "no key",
    "date": "2026-01-02",
}


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels)


def families() -> dict:
    return {family.name: family for family in text_string_to_metric_families(metrics.exposition().decode())}


@pytest.mark.parametrize("name", metrics.REASON_BY_REPLY)
def test_rejection_reason_of_reply(name):
    template = getattr(replies, name)
    sent = template.format(**FILLED)

    assert metrics.rejection_reason(template) == metrics.REASON_BY_REPLY[name]
    assert metrics.rejection_reason(sent) == metrics.REASON_BY_REPLY[name]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("R550_RELAY_DENIED", "relay_denied"),
        ("R550_NO_AUTHOR_DOMAIN", "alignment"),
        ("R550_NUL_BYTE", "invalid_content"),
        ("R550_INVALID_CLASS", "invalid_class"),
        ("R550_SUPPRESSED_MANUAL", "suppressed"),
        ("R451_KEY_IN_USE", "idempotency_key_in_use"),
        ("R451_STORE_FAILED", "store_failed"),
        ("R452_SPOOL_FULL", "spool_full"),
        ("R452_TOO_MANY_RECIPIENTS", "too_many_recipients"),
        ("R421_SHUTTING_DOWN", "shutting_down"),
    ],
)
def test_replies_sharing_a_code_keep_their_reasons(name, reason):
    assert metrics.rejection_reason(getattr(replies, name).format(**FILLED)) == reason


def test_rejection_reason_after_enhanced_code_replaced():
    # The address check puts its own enhanced code on R553_BAD_ADDRESS.
    sent = Reply(553, "5.1.7", "Invalid address: the domain is too long")

    assert metrics.rejection_reason(sent) == "invalid_address"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(500, "5.5.2", "Unrecognised command"), "protocol"),
        (Reply(550, "5.1.0", "Unknown address problem"), "invalid_address"),
        (Reply(554, "5.3.0", "Unknown"), "other"),
        (Reply(554, "", "No code"), "other"),
    ],
)
def test_rejection_reason_of_unknown_reply(reply, reason):
    assert metrics.rejection_reason(reply) == reason


def test_every_refusal_has_a_reason():
    refusals = [name for name, value in vars(replies).items() if isinstance(value, Reply) and value.code >= 400]
    refusals.remove("R421_IDLE_TIMEOUT")

    assert sorted(refusals) == sorted(metrics.REASON_BY_REPLY)


@pytest.mark.parametrize(
    ("enhanced", "label"),
    [("2.0.0", "2.0"), ("4.7.1", "4.7"), ("5.1.10", "5.1"), ("", "none"), ("5.100.200", "other"), ("3.0.0", "other"), ("4.4", "other")],
)
def test_status_label(enhanced, label):
    assert metrics.status_label(enhanced) == label


def test_domain_label_uses_configured_list():
    metrics.set_domains(["gmail.com"])
    try:
        assert metrics.domain_label("gmail.com") == "gmail.com"
        assert metrics.domain_label("example.org") == "other"
    finally:
        metrics.set_domains([])

    assert metrics.domain_label("gmail.com") == "other"


def test_record_attempt_counts_each_recipient():
    bounced = {"state": "bounced", "class": "auth", "domain": "other"}
    before = value("relayd_recipients_total", **bounced)
    latency_before = value("relayd_delivery_latency_seconds_sum", **{"class": "auth"})

    metrics.record_attempt(
        message_class="auth",
        domain="example.org",
        received_at=100.0,
        now=102.5,
        outcomes=[("delivered", Reply(250, "2.0.0", "Ok")), ("bounced", Reply(550, "5.1.1", "No such user"))],
    )

    assert value("relayd_recipients_total", **bounced) == before + 1
    assert value("relayd_delivery_latency_seconds_sum", **{"class": "auth"}) == latency_before + 2.5


def test_unknown_class_counts_as_other():
    assert metrics.class_label("newsletter") == "other"
    assert metrics.class_label("auth") == "auth"


def test_set_queue_resets_emptied_classes():
    shipping = {"class": "shipping"}
    metrics.set_queue({("deferred", "shipping"): 3}, {"shipping": (1, 90.0)}, now=100.0)
    assert value("relayd_queue_recipients", state="deferred", **shipping) == 3
    assert value("relayd_queue_oldest_age_seconds", **shipping) == 10.0

    metrics.set_queue({}, {}, now=200.0)

    assert value("relayd_queue_recipients", state="deferred", **shipping) == 0
    assert value("relayd_queue_messages", **shipping) == 0
    assert value("relayd_queue_oldest_age_seconds", **shipping) == 0


def test_webhook_hooks_bound_their_labels():
    metrics.set_webhook_outbox(7)
    metrics.record_webhook_failure("made-up")
    try:
        assert value("relayd_webhook_outbox_events") == 7
        assert value("relayd_webhook_failures_total", reason="other") >= 1
    finally:
        metrics.set_webhook_outbox(0)


def test_names_prefixed_and_documented():
    found = families()

    assert found
    for name, family in found.items():
        assert name.startswith("relayd_"), name
        assert family.documentation, name


def test_no_created_series():
    assert "_created" not in metrics.exposition().decode()


# Label names allowed anywhere, each with a fixed set of values.
LABELS = {"class", "state", "domain", "reason", "result", "status", "type", "algorithm", "version"}


def test_labels_from_fixed_sets():
    for family in families().values():
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= LABELS, sample
