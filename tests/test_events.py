"""Tests for relayd.events: the JSON body, event ids and the recorder's routing to endpoints."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
from structlog.testing import capture_logs

from relayd import events
from relayd.config.model import WEBHOOK_EVENTS, Webhook
from relayd.events import EventRecorder
from relayd.reply import Reply
from relayd.state import StateError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "events.md"
REPLY = Reply(550, "5.1.1", "No such user here", "RCPT")
SECRET = "whsec_" + "A" * 43 + "="


def documented_schema() -> dict:
    text = DOCS.read_text()
    block = text.split("### JSON Schema", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)```", block, re.S).group(1))


def sample(event_type: str) -> events.Event:
    fields = dict(queue_id="Q1", message_id="<m1@app.test>", recipient="User@Example.org", domain="example.org", timestamp=1_700_000_000.25)
    if event_type == "duplicate":
        return events.duplicate(**fields)
    if event_type in ("queued", "suppressed"):
        return events.state_change(event_type, reason="added by an operator" if event_type == "suppressed" else "", **fields)
    return events.state_change(
        event_type,
        attempt=2,
        host="mx.example.org[192.0.2.25]:25",
        reply=REPLY,
        next_attempt=1_700_000_060.0 if event_type == "deferred" else None,
        **fields,
    )


def test_documented_schema_valid():
    jsonschema.Draft202012Validator.check_schema(documented_schema())


@pytest.mark.parametrize("event_type", WEBHOOK_EVENTS)
def test_event_matches_documented_schema(event_type):
    body = json.loads(sample(event_type).to_json())

    jsonschema.validate(body, documented_schema(), cls=jsonschema.Draft202012Validator)


def test_body_fields():
    body = json.loads(sample("deferred").to_json())

    assert body["type"] == "deferred"
    assert body["timestamp"] == "2023-11-14T22:13:20.250Z"
    assert body["data"]["queue_id"] == "Q1"
    assert body["data"]["message_id"] == "<m1@app.test>"
    assert body["data"]["recipient"] == "User@Example.org"
    assert body["data"]["attempt"] == 2
    assert body["data"]["reply"] == {"code": 550, "enhanced_status": "5.1.1", "text": "No such user here", "command": "RCPT"}
    assert body["data"]["next_attempt"] == "2023-11-14T22:14:20.000Z"


def test_body_compact_utf8():
    event = events.state_change(
        "queued", queue_id="Q1", message_id="", recipient="jörg@bücher.example", domain="xn--bcher-kva.example", timestamp=1.0
    )

    body = event.to_json()

    assert b" " not in body
    assert "jörg".encode() in body


def test_event_id_stable_per_state_change():
    first = events.event_id("Q1", "a@example.org", "deferred", 1)

    assert first == events.event_id("Q1", "a@example.org", "deferred", 1)
    assert first != events.event_id("Q1", "a@example.org", "deferred", 2)
    assert first != events.event_id("Q1", "a@example.org", "delivered", 1)
    assert first != events.event_id("Q1", "b@example.org", "deferred", 1)
    assert first != events.event_id("Q2", "a@example.org", "deferred", 1)


def test_duplicate_ids_unique():
    assert sample("duplicate").id != sample("duplicate").id


class FakeOutbox:
    def __init__(self, error: Exception | None = None):
        self.error = error
        self.entries = []

    async def enqueue_events(self, entries):
        if self.error:
            raise self.error
        self.entries.extend(entries)
        return len(entries)


async def test_recorder_routes_by_event_type():
    outbox = FakeOutbox()
    woken = []
    hooks = (
        Webhook("https://a.example/", SECRET),
        Webhook("https://b.example/", SECRET, events=("bounced",)),
    )
    recorder = EventRecorder(outbox, hooks, woken.append)

    await recorder.record([sample("queued"), sample("bounced")])

    routed = sorted((e.endpoint, e.event_type) for e in outbox.entries)
    assert routed == [("https://a.example/", "bounced"), ("https://a.example/", "queued"), ("https://b.example/", "bounced")]
    assert sorted(woken) == ["https://a.example/", "https://b.example/"]
    assert all(e.ordering_key == "Q1" for e in outbox.entries)


async def test_recorder_without_subscribers_stores_nothing():
    outbox = FakeOutbox(error=AssertionError("must not be called"))
    recorder = EventRecorder(outbox, (Webhook("https://a.example/", SECRET, events=("bounced",)),))

    await recorder.record([sample("queued")])


async def test_recorder_store_failure_logged():
    recorder = EventRecorder(FakeOutbox(StateError("disk I/O error")), (Webhook("https://a.example/", SECRET),))

    with capture_logs() as logs:
        await recorder.record([sample("delivered")])

    assert logs[0]["event"] == "events_not_stored"
    assert logs[0]["queue_id"] == "Q1"
    assert logs[0]["error"] == "disk I/O error"
