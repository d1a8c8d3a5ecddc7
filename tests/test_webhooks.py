"""Tests for relayd.webhooks: the Standard Webhooks signature and the dispatcher with a fake transport."""

import asyncio
import base64
import time

import pytest
from structlog.testing import capture_logs

from relayd import metrics
from relayd.config.model import RetryPolicy, Webhook
from relayd.state import OutboxEntry
from relayd.webhooks import WebhookDispatcher, WebhookError, signing
from relayd.webhooks.transport import _retry_after, redact_url

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
FAST = RetryPolicy(first=0.05, multiplier=2.0, max_interval=0.2, give_up=30.0)


def test_signature_matches_published_vector():
    # The test vector published with the Standard Webhooks libraries.
    key = signing.secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

    value = signing.signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')

    assert value == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signed_headers_names():
    headers = signing.signed_headers(b"k" * 24, "evt_1", 1700000000, b"{}")

    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@hooks.example.com/in?token=abc", "https://hooks.example.com/in"),
        ("http://127.0.0.1:8080/hooks", "http://127.0.0.1:8080/hooks"),
        ("http://[::1]:9000/h", "http://[::1]:9000/h"),
    ],
)
def test_redact_url_drops_credentials(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 5 ", 5.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None)])
def test_retry_after_seconds_only(value, seconds):
    assert _retry_after(value) == seconds


class FakeTransport:
    """Returns a scripted status for each request and records what was sent."""

    def __init__(self, statuses=None, delay: float = 0.0):
        self.statuses = list(statuses or [])
        self.delay = delay
        self.sent: list[tuple[str, dict]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_keys: set[str] = set()
        self.overlaps = 0
        self.closed = False

    async def post(self, url, body, headers, timeout):
        key = body.decode()
        if key.split("/")[0] in self.in_flight_keys:
            self.overlaps += 1
        self.in_flight_keys.add(key.split("/")[0])
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.sent.append((key, headers))
            answer = self.statuses.pop(0) if self.statuses else 200
            if isinstance(answer, Exception):
                raise answer
            return answer if isinstance(answer, tuple) else (answer, None)
        finally:
            self.in_flight -= 1
            self.in_flight_keys.discard(key.split("/")[0])

    async def close(self):
        self.closed = True


@pytest.fixture
def store(state_store):
    return state_store


def hook(url: str = "https://hooks.example.com/a", **overrides) -> Webhook:
    return Webhook(**{"url": url, "secret": SECRET, "retry": FAST, **overrides})


def entries(url: str, queue_id: str, count: int, created_at: float | None = None) -> list[OutboxEntry]:
    now = created_at if created_at is not None else time.time()
    return [
        OutboxEntry(url, f"evt_{queue_id}_{n}", "delivered", queue_id, f"{queue_id}/{n}".encode(), now) for n in range(count)
    ]


async def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def run_dispatcher(store, hooks, transports):
    dispatcher = WebhookDispatcher(tuple(hooks), store, transport_factory=lambda h: transports[h.url])
    await dispatcher.start()
    return dispatcher


async def test_events_of_one_message_in_order(store):
    transport = FakeTransport(delay=0.02)
    webhook = hook(max_concurrency=4)
    await store.enqueue_events(entries(webhook.url, "Q1", 5) + entries(webhook.url, "Q2", 5))
    dispatcher = await run_dispatcher(store, [webhook], {webhook.url: transport})

    await wait_for(lambda: len(transport.sent) == 10)
    await dispatcher.stop(1.0)

    for queue_id in ("Q1", "Q2"):
        sent = [body for body, _ in transport.sent if body.startswith(queue_id)]
        assert sent == [f"{queue_id}/{n}" for n in range(5)]
    assert transport.overlaps == 0, "never two events of one message at once"
    assert transport.max_in_flight == 2, "the two messages are sent side by side"


async def test_each_request_signed_with_attempt_time(store):
    transport = FakeTransport()
    webhook = hook()
    await store.enqueue_events(entries(webhook.url, "Q1", 1))
    dispatcher = await run_dispatcher(store, [webhook], {webhook.url: transport})

    await wait_for(lambda: len(transport.sent) == 1)
    await dispatcher.stop(1.0)

    body, headers = transport.sent[0]
    key = signing.secret_key(SECRET)
    timestamp = int(headers["webhook-timestamp"])
    assert abs(timestamp - time.time()) < 5
    assert headers["webhook-signature"] == signing.signature(key, "evt_Q1_0", timestamp, body.encode())


async def test_failures_retried_until_2xx(store):
    transport = FakeTransport([500, WebhookError("timed out after 1s without a response"), (503, None), 204])
    webhook = hook()
    await store.enqueue_events(entries(webhook.url, "Q1", 2))
    with capture_logs() as logs:
        dispatcher = await run_dispatcher(store, [webhook], {webhook.url: transport})
        await wait_for(lambda: len(transport.sent) == 5)
        await dispatcher.stop(1.0)

    assert [body for body, _ in transport.sent] == ["Q1/0"] * 4 + ["Q1/1"]
    assert {headers["webhook-id"] for body, headers in transport.sent[:4]} == {"evt_Q1_0"}
    assert (await store.due_events(webhook.url, time.time() + 100, 10, ()))[0] == []
    names = [line["event"] for line in logs]
    assert names.count("webhook_endpoint_failing") == 1
    assert names.count("webhook_endpoint_recovered") == 1


async def test_retry_after_delays_next_request(store):
    transport = FakeTransport([(429, 0.5), 200])
    webhook = hook(retry=RetryPolicy(first=0.05, multiplier=2.0, max_interval=5.0, give_up=30.0))
    await store.enqueue_events(entries(webhook.url, "Q1", 1))
    dispatcher = await run_dispatcher(store, [webhook], {webhook.url: transport})

    await wait_for(lambda: len(transport.sent) == 1)
    rejected_at = time.monotonic()
    await wait_for(lambda: len(transport.sent) == 2)
    await dispatcher.stop(1.0)

    # The policy alone would retry after about 0.05 s.
    assert time.monotonic() - rejected_at >= 0.45


async def test_given_up_after_give_up_age(store):
    transport = FakeTransport([500] * 100)
    webhook = hook(retry=RetryPolicy(first=0.05, multiplier=1.0, max_interval=0.05, give_up=0.3))
    await store.enqueue_events(entries(webhook.url, "Q1", 2))
    with capture_logs() as logs:
        dispatcher = await run_dispatcher(store, [webhook], {webhook.url: transport})
        await wait_for(lambda: any(body == "Q1/1" for body, _ in transport.sent))
        await dispatcher.stop(1.0)

    given_up = [line for line in logs if line["event"] == "webhook_given_up"]
    assert given_up[0]["event_id"] == "evt_Q1_0"
    assert given_up[0]["queue_id"] == "Q1"
    assert given_up[0]["error"] == "HTTP status 500"
    assert "secret" not in str(given_up)


async def test_concurrency_bounded_per_endpoint(store):
    transport = FakeTransport(delay=0.05)
    webhook = hook(max_concurrency=3)
    for n in range(10):
        await store.enqueue_events(entries(webhook.url, f"Q{n}", 1))
    dispatcher = await run_dispatcher(store, [webhook], {webhook.url: transport})

    await wait_for(lambda: len(transport.sent) == 10)
    await dispatcher.stop(1.0)

    assert transport.max_in_flight == 3


async def test_hanging_endpoint_does_not_block_another(store):
    hanging = FakeTransport(delay=60.0)
    healthy = FakeTransport()
    slow_hook = hook("https://slow.example.com/", max_concurrency=1)
    fast_hook = hook("https://fast.example.com/")
    await store.enqueue_events(entries(slow_hook.url, "Q1", 3) + entries(fast_hook.url, "Q1", 3))
    dispatcher = await run_dispatcher(store, [slow_hook, fast_hook], {slow_hook.url: hanging, fast_hook.url: healthy})

    await wait_for(lambda: len(healthy.sent) == 3)
    cancelled = await dispatcher.stop(0.1)

    assert cancelled == 1
    assert hanging.sent == []
    assert hanging.closed
    left, _ = await store.due_events(slow_hook.url, time.time() + 1, 10, ())
    assert [e.event_id for e in left] == ["evt_Q1_0"], "the cancelled request stays in the outbox"


async def test_new_events_sent_without_waiting(store):
    transport = FakeTransport()
    webhook = hook()
    dispatcher = await run_dispatcher(store, [webhook], {webhook.url: transport})
    await asyncio.sleep(0.05)

    await store.enqueue_events(entries(webhook.url, "Q1", 1))
    dispatcher.notify(webhook.url)
    started = time.monotonic()
    await wait_for(lambda: len(transport.sent) == 1)
    await dispatcher.stop(1.0)

    assert time.monotonic() - started < 0.5


async def test_unconfigured_endpoint_entries_dropped(store):
    removed = "https://old.example.com/?token=s3cret"
    await store.enqueue_events(entries(removed, "Q1", 2))
    with capture_logs() as logs:
        dispatcher = await run_dispatcher(store, [], {})
        await dispatcher.stop(0.1)

    dropped = [line for line in logs if line["event"] == "webhook_outbox_dropped"]
    assert dropped[0]["events"] == 2
    assert dropped[0]["endpoint"] == "https://old.example.com/"
    assert (await store.due_events(removed, time.time() + 1, 10, ()))[0] == []


async def test_unexpected_error_postpones_event(store):
    transport = FakeTransport([RuntimeError("bug in a transport")])
    webhook = hook()
    await store.enqueue_events(entries(webhook.url, "Q1", 1))
    with capture_logs() as logs:
        dispatcher = await run_dispatcher(store, [webhook], {webhook.url: transport})
        await wait_for(lambda: any(line["event"] == "webhook_send_failed_internally" for line in logs))
        await asyncio.sleep(0.2)
        await dispatcher.stop(1.0)

    assert len(transport.sent) == 1, "not sent again at once"
    due, later = await store.due_events(webhook.url, time.time(), 10, ())
    assert due == []
    assert later > time.time() + 50


async def test_reload_starts_new_and_stops_removed_endpoints(store):
    old, new = hook("https://old.example.com/"), hook("https://new.example.com/")
    transports = {old.url: FakeTransport(), new.url: FakeTransport()}
    dispatcher = await run_dispatcher(store, [old], transports)

    dispatcher.reload((new,))
    await store.enqueue_events(entries(old.url, "Q1", 1) + entries(new.url, "Q2", 1))
    dispatcher.notify(old.url)
    dispatcher.notify(new.url)
    await wait_for(lambda: len(transports[new.url].sent) == 1)
    await dispatcher.stop(1.0)

    assert transports[old.url].sent == []
    assert transports[old.url].closed
    assert list(dispatcher.senders) == [new.url]


async def test_reload_replaces_changed_endpoint(store):
    webhook = hook(timeout=5.0)
    first, second = FakeTransport(), FakeTransport()
    transports = iter([first, second])
    dispatcher = WebhookDispatcher((webhook,), store, transport_factory=lambda h: next(transports))
    await dispatcher.start()

    dispatcher.reload((hook(timeout=2.0),))
    await store.enqueue_events(entries(webhook.url, "Q1", 1))
    dispatcher.notify(webhook.url)
    await wait_for(lambda: len(second.sent) == 1)
    await dispatcher.stop(1.0)

    assert first.sent == []
    assert dispatcher.senders[webhook.url].webhook.timeout == 2.0


async def test_failed_request_counted_by_reason(store):
    failures = metrics.REGISTRY.get_sample_value
    before = {reason: failures("relayd_webhook_failures_total", {"reason": reason}) for reason in ("http_status", "connection")}
    transport = FakeTransport([500, WebhookError("request failed: connection refused")])
    webhook = hook()
    await store.enqueue_events(entries(webhook.url, "Q1", 1))
    dispatcher = await run_dispatcher(store, [webhook], {webhook.url: transport})

    await wait_for(lambda: len(transport.sent) == 3)
    await dispatcher.stop(1.0)

    assert failures("relayd_webhook_failures_total", {"reason": "http_status"}) == before["http_status"] + 1
    assert failures("relayd_webhook_failures_total", {"reason": "connection"}) == before["connection"] + 1
