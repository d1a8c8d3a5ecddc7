"""Webhooks through the running daemon: signed, durable across an outage and a restart, in order."""

import time
from collections import Counter

from tests.support.sinks import SmtpScript

MESSAGE = b"Subject: hooks\r\nMessage-ID: <hooks-{n}@app.test>\r\n\r\nhello\r\n"
FAST_RETRY = {"first": "200ms", "multiplier": 2.0, "max_interval": "1s"}
DELIVERY_EVENTS = ("delivered", "deferred", "bounced", "expired")


def submit(relayd, recipients: list[str], n: int) -> str:
    return relayd.submit(recipients, MESSAGE.replace(b"{n}", str(n).encode()))


def expected_events(relayd, submitted: dict[str, list[str]]) -> set[tuple]:
    """Return (type, queue id, recipient, attempt) for every event that relayd's log records."""
    expected = {("queued", queue_id, r, 0) for queue_id, recipients in submitted.items() for r in recipients}
    for name in DELIVERY_EVENTS:
        for line in relayd.events(name):
            expected.add((name, line["queue_id"], line["recipient"], line["attempt"]))
    return expected


def received_events(receiver) -> set[tuple]:
    return {
        (r.event["type"], r.event["data"]["queue_id"], r.event["data"]["recipient"], r.event["data"]["attempt"])
        for r in receiver.unique().values()
    }


def test_events_survive_outage_and_restart(sinks, daemon, webhook_receiver):
    everything = webhook_receiver()
    finals = webhook_receiver()
    sink = sinks(
        "127.0.0.2",
        SmtpScript(rcpt={"gone@hooks.test": "550 5.1.1 No such user", "grey@hooks.test": "451 4.7.1 Greylisted"}),
    )
    relayd = daemon(
        {
            "routes": {"hooks.test": "127.0.0.2"},
            "retry": {"first": "1s", "max_interval": "1s"},
            "webhooks": [
                {"url": everything.url, "secret": everything.secret, "retry": FAST_RETRY},
                {"url": finals.url, "secret": finals.secret, "events": ["delivered", "bounced"], "retry": FAST_RETRY},
            ],
        }
    )
    submitted = {}
    first = submit(relayd, ["ok1@hooks.test", "gone@hooks.test"], 1)
    submitted[first] = ["ok1@hooks.test", "gone@hooks.test"]
    grey = submit(relayd, ["grey@hooks.test"], 2)
    submitted[grey] = ["grey@hooks.test"]
    everything.wait_until(lambda r: len(r.unique()) >= 5, description="first events")

    # The endpoint goes down: mail goes on at full speed.
    everything.stop()
    accepted_at = time.time()
    during_outage = submit(relayd, ["ok3@hooks.test"], 3)
    submitted[during_outage] = ["ok3@hooks.test"]
    delivered = relayd.wait_for_event("delivered", queue_id=during_outage)[0]
    assert time.time() - accepted_at < 3.0
    assert delivered["attempt"] == 1
    # The greylisted message is deferred again, so its events queue up.
    relayd.wait_for_event("deferred", queue_id=grey, count=2)

    # relayd restarts while the endpoint is still down; the outbox is kept.
    assert relayd.stop() == 0
    sink.script = SmtpScript(rcpt={"gone@hooks.test": "550 5.1.1 No such user"})
    relayd.start()
    relayd.wait_for_event("delivered", queue_id=grey, timeout=20)
    after_restart = submit(relayd, ["ok4@hooks.test"], 4)
    submitted[after_restart] = ["ok4@hooks.test"]
    relayd.wait_for_event("delivered", queue_id=after_restart)

    everything.start()
    expected = expected_events(relayd, submitted)
    everything.wait_until(lambda r: received_events(r) >= expected, timeout=30, description="every event")
    finals.wait_until(
        lambda r: received_events(r) >= {e for e in expected if e[0] in ("delivered", "bounced")}, description="final events"
    )
    time.sleep(0.5)

    # None lost, none extra, each id once, every signature valid.
    assert received_events(everything) == expected
    assert received_events(finals) == {e for e in expected if e[0] in ("delivered", "bounced")}
    for receiver in (everything, finals):
        requests = receiver.requests
        assert all(r.valid for r in requests)
        counts = Counter(r.webhook_id for r in requests)
        assert max(counts.values()) == 1, counts.most_common(3)
        assert all(r.webhook_id == r.event["id"] for r in requests)

    # Per message, events arrived in the order they happened.
    for queue_id in submitted:
        arrived = [r.event for r in everything.requests if r.event["data"]["queue_id"] == queue_id]
        attempts = [event["data"]["attempt"] for event in arrived]
        assert attempts == sorted(attempts), (queue_id, [(e["type"], e["data"]["attempt"]) for e in arrived])
        stamps = [event["timestamp"] for event in arrived]
        assert stamps == sorted(stamps)
        assert arrived[0]["type"] == "queued"

    # The body carries the message's Message-ID and the remote reply.
    bounce = next(r.event for r in finals.requests if r.event["type"] == "bounced")
    assert bounce["data"]["message_id"] == "<hooks-1@app.test>"
    assert bounce["data"]["reply"]["enhanced_status"] == "5.1.1"
    assert bounce["data"]["reply"]["command"] == "RCPT"
    assert bounce["data"]["host"].startswith("127.0.0.2")


def test_slow_endpoint_does_not_delay_mail(sinks, daemon, webhook_receiver):
    slow = webhook_receiver()
    slow.delay = 1.5
    sink = sinks("127.0.0.2")
    relayd = daemon(
        {
            "routes": {"slow.test": "127.0.0.2"},
            "webhooks": [
                {"url": slow.url, "secret": slow.secret, "timeout": "500ms", "max_concurrency": 1, "retry": FAST_RETRY}
            ],
        }
    )
    started = time.time()
    queue_ids = [submit(relayd, [f"user{n}@slow.test"], n) for n in range(5)]
    assert len(sink.wait_for(5, timeout=5)) == 5
    assert time.time() - started < 3.0

    # Timed-out requests are retried until the endpoint responds in time.
    assert slow.requests
    slow.delay = 0.0
    expected = {("delivered", q, f"user{n}@slow.test", 1) for n, q in enumerate(queue_ids)}
    slow.wait_until(lambda r: received_events(r) >= expected, timeout=20, description="delivered events")


def test_failing_endpoint_retried_until_2xx(sinks, daemon, webhook_receiver):
    receiver = webhook_receiver()
    receiver.status = 503
    sinks("127.0.0.2")
    relayd = daemon(
        {
            "routes": {"retry.test": "127.0.0.2"},
            "webhooks": [{"url": receiver.url, "secret": receiver.secret, "events": ["delivered"], "retry": FAST_RETRY}],
        }
    )
    queue_id = submit(relayd, ["user@retry.test"], 1)
    receiver.wait_until(lambda r: len(r.requests) >= 3, description="three rejected requests")
    receiver.status = 200
    rejected = len(receiver.requests)
    receiver.wait_until(lambda r: len(r.requests) > rejected, description="an accepted request")
    time.sleep(1.0)
    requests = receiver.requests
    assert len(requests) == rejected + 1, "nothing is sent again after a 2xx"
    assert requests[0].event["data"]["queue_id"] == queue_id
    assert {r.webhook_id for r in requests} == {requests[0].webhook_id}, "one event, retried under one id"
    timestamps = [r.timestamp for r in requests]
    assert timestamps == sorted(timestamps)
    assert relayd.events("webhook_endpoint_failing")
    assert relayd.events("webhook_endpoint_recovered")


def test_dsn_gets_queued_and_delivered_events(sinks, daemon, webhook_receiver):
    receiver = webhook_receiver()
    sinks("127.0.0.2", SmtpScript(rcpt_default="550 5.1.1 No such user here"))
    sinks("127.0.0.3")
    relayd = daemon(
        {
            "routes": {"hard.test": "127.0.0.2", "sender.test": "127.0.0.3"},
            "delivery": {"dsn": True},
            "webhooks": [{"url": receiver.url, "secret": receiver.secret, "retry": FAST_RETRY}],
        }
    )
    queue_id = submit(relayd, ["nobody@hard.test"], 1)
    dsn_queue_id = relayd.wait_for_event("dsn_queued", queue_id=queue_id)[0]["dsn_queue_id"]
    relayd.wait_for_event("delivered", queue_id=dsn_queue_id)

    expected = {
        ("queued", queue_id, "nobody@hard.test", 0),
        ("bounced", queue_id, "nobody@hard.test", 1),
        ("queued", dsn_queue_id, "app@sender.test", 0),
        ("delivered", dsn_queue_id, "app@sender.test", 1),
    }
    receiver.wait_until(lambda r: received_events(r) >= expected, description="events of the message and its DSN")
    dsn_events = [r.event for r in receiver.requests if r.event["data"]["queue_id"] == dsn_queue_id]
    assert [e["type"] for e in dsn_events] == ["queued", "delivered"]
    # The DSN carries the Message-ID relayd wrote for it, on relayd's host name.
    assert dsn_events[0]["data"]["message_id"].endswith("@relay.test>")
    assert dsn_events[1]["data"]["message_id"] == dsn_events[0]["data"]["message_id"]
