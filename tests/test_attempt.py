"""Tests for relayd.delivery.attempt with fakes: events and DSNs before the spool record, hard bounces suppressed."""

import json

from relayd.config import parse_config
from relayd.delivery.attempt import AttemptRunner
from relayd.delivery.results import AttemptResult, RecipientResult
from relayd.delivery.routing import MxHost
from relayd.reply import Reply
from relayd.spool import RecipientState, SpooledMessage
from relayd.state import StateError
from relayd.suppression import SuppressionList

NOW = 1_700_000_000.0
MESSAGE = SpooledMessage("Q1", "app@example.com", NOW - 10, 100, "127.0.0.1", False, False, "transactional", "<m@app>")
GONE = Reply(550, "5.1.1", "No such user", "RCPT")
SPAM = Reply(550, "5.7.1", "Rejected as spam", "DATA")
FULL = Reply(452, "4.2.2", "Mailbox full", "RCPT")
OK = Reply(250, "2.0.0", "Ok", "DATA")


class Journal:
    """Collects the calls of every fake in the order they happened."""

    def __init__(self):
        self.calls = []


class FakeSpool:
    def __init__(self, journal, recipients):
        self.journal = journal
        self.recipients = recipients

    async def load(self, queue_id, domain):
        return MESSAGE, self.recipients

    async def content(self, queue_id):
        return b"Subject: x\r\n\r\nhi\r\n"

    async def record(self, queue_id, updates):
        self.journal.calls.append(("spool.record", [(u.address, u.state) for u in updates]))
        return False


class FakeRouter:
    async def hosts_for(self, domain):
        return [MxHost("mx.example.org", 10, ("192.0.2.25",), 25)]


class FakeCourier:
    def __init__(self, results):
        self.results = results

    async def deliver(self, envelope, content, recipients, hosts, domain, tls_mode=None):
        return AttemptResult(
            [RecipientResult(address, state, reply, "mx.example.org") for address, state, reply in self.results],
            host="mx.example.org[192.0.2.25]:25",
        )


class FakeRecorder:
    def __init__(self, journal):
        self.journal = journal
        self.events = []

    async def record(self, events):
        self.journal.calls.append(("events", [(e.type, e.recipient) for e in events]))
        self.events.extend(events)


class FakeSuppressionStore:
    def __init__(self, journal, error=None):
        self.journal = journal
        self.error = error

    async def add_suppressions(self, entries):
        if self.error:
            raise self.error
        self.journal.calls.extend(("suppress", e.address, e.reason) for e in entries)


def recipient(address: str) -> RecipientState:
    return RecipientState(address, "example.org", "queued", 0, None, "", "")


def runner(journal, results, store_error=None, config=None, inject=None):
    config = config or parse_config({})
    addresses = [address for address, _, _ in results]
    recorder = FakeRecorder(journal)
    suppressions = SuppressionList(FakeSuppressionStore(journal, store_error), config.suppression, clock=lambda: NOW)
    attempt = AttemptRunner(
        config,
        FakeSpool(journal, [recipient(a) for a in addresses]),
        FakeRouter(),
        FakeCourier(results),
        clock=lambda: NOW,
        random_source=lambda: 0.5,
        inject=inject,
        recorder=recorder,
        suppressions=suppressions,
    )
    return attempt, recorder


async def test_events_stored_before_spool_record():
    journal = Journal()
    attempt, recorder = runner(journal, [("a@example.org", "delivered", OK), ("b@example.org", "deferred", FULL)])

    due = await attempt("Q1", "example.org")

    assert [call[0] for call in journal.calls] == ["events", "spool.record"]
    assert journal.calls[0][1] == [("delivered", "a@example.org"), ("deferred", "b@example.org")]
    assert due == recorder.events[1].next_attempt


async def test_event_fields_from_attempt():
    journal = Journal()
    attempt, recorder = runner(journal, [("a@example.org", "bounced", GONE)])

    await attempt("Q1", "example.org")

    body = json.loads(recorder.events[0].to_json())
    assert body["type"] == "bounced"
    assert body["data"]["queue_id"] == "Q1"
    assert body["data"]["message_id"] == "<m@app>"
    assert body["data"]["attempt"] == 1
    assert body["data"]["host"] == "mx.example.org[192.0.2.25]:25"
    assert body["data"]["reply"]["enhanced_status"] == "5.1.1"


async def test_only_hard_bounces_suppressed_after_record():
    journal = Journal()
    attempt, _ = runner(
        journal,
        [("Gone@Example.org", "bounced", GONE), ("spam@example.org", "bounced", SPAM), ("c@example.org", "deferred", FULL)],
    )

    await attempt("Q1", "example.org")

    assert [call[0] for call in journal.calls] == ["events", "spool.record", "suppress"]
    assert journal.calls[2] == ("suppress", "gone@example.org", "550 5.1.1 No such user")


async def test_suppression_store_failure_logged_not_raised():
    journal = Journal()
    attempt, _ = runner(journal, [("a@example.org", "bounced", GONE)], store_error=StateError("database is locked"))

    assert await attempt("Q1", "example.org") is None
    assert [call[0] for call in journal.calls] == ["events", "spool.record"]


async def test_dsn_spooled_after_events_before_record():
    journal = Journal()

    async def inject(sender, recipient, content):
        journal.calls.append(("inject", recipient))
        return "Q-DSN"

    config = parse_config({"delivery": {"dsn": True}})
    attempt, _ = runner(journal, [("a@example.org", "bounced", GONE)], config=config, inject=inject)

    await attempt("Q1", "example.org")

    assert [call[0] for call in journal.calls] == ["events", "inject", "spool.record", "suppress"]
    assert journal.calls[1] == ("inject", "app@example.com")
