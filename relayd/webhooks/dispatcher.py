"""The webhook dispatcher: one sender task per endpoint, fed from the durable outbox.

Mail never waits for a webhook request, because attempts only store events
in the outbox (one commit in state.db). Each endpoint's task sends them with
its own bounded set of requests and its own timeout, so a slow or dead
endpoint delays only its own events.
Events of one message reach an endpoint in order, because the outbox makes
an entry due only after the one before it with the same queue id was sent
or given up.
"""

import asyncio
import random
import time
from typing import Callable

import structlog

from relayd import metrics
from relayd.config.model import Webhook
from relayd.delivery.retry import next_attempt_time
from relayd.state import OutboxEntry, OutboxStore, StateError
from relayd.webhooks import signing
from relayd.webhooks.transport import HttpTransport, Transport, WebhookError, redact_url

log = structlog.get_logger("relayd.webhooks")

# After a failed outbox read, wait this long before reading again.
STORE_RETRY = 5.0
# A send that fails with an unexpected error is tried again after this
# long, instead of at once and in a loop.
RETRY_AFTER_INTERNAL_ERROR = 60.0

TransportFactory = Callable[[Webhook], Transport]


class EndpointSender:
    """Sends one endpoint's due outbox entries, at most `max_concurrency` at a time."""

    def __init__(
        self,
        webhook: Webhook,
        store: OutboxStore,
        transport: Transport,
        clock: Callable[[], float],
        random_source: Callable[[], float],
    ):
        self.webhook = webhook
        self.store = store
        self.transport = transport
        self.clock = clock
        self.random = random_source
        self.endpoint = redact_url(webhook.url)
        self._key = signing.secret_key(webhook.secret)
        self._wake = asyncio.Event()
        self._sending: dict[int, asyncio.Task] = {}
        self._failing = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Send due entries for ever; cancel the task to stop."""
        limit = self.webhook.max_concurrency
        while True:
            self._wake.clear()
            later = None
            if len(self._sending) < limit:
                try:
                    entries, later = await self.store.due_events(
                        self.webhook.url, self.clock(), limit - len(self._sending), set(self._sending)
                    )
                except StateError as exc:
                    log.error("webhook_outbox_read_failed", endpoint=self.endpoint, error=str(exc))
                    entries, later = [], self.clock() + STORE_RETRY
                for entry in entries:
                    self._sending[entry.seq] = asyncio.create_task(self._send(entry), name=f"webhook {entry.event_id}")

            # With every slot busy, the end of a request wakes the loop.
            timeout = None
            if later is not None and len(self._sending) < limit:
                timeout = max(0.0, later - self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def drain(self, grace: float) -> int:
        """Wait up to `grace` seconds for requests in progress, cancel the rest; return how many were cancelled.

        A cancelled request leaves its entry in the outbox, to be sent again
        after the next start with the same webhook-id.
        """
        tasks = list(self._sending.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        await self.transport.close()
        return len(pending)

    async def _send(self, entry: OutboxEntry) -> None:
        try:
            await self._attempt(entry)
        except StateError as exc:
            # The entry stays in the outbox as it was and is sent again:
            # at least once, with the same webhook-id.
            log.error("webhook_outbox_update_failed", endpoint=self.endpoint, event_id=entry.event_id, error=str(exc))
        except Exception as exc:
            log.exception("webhook_send_failed_internally", endpoint=self.endpoint, event_id=entry.event_id)
            await self._postpone(entry, repr(exc))
        finally:
            self._sending.pop(entry.seq, None)
            self._wake.set()

    async def _postpone(self, entry: OutboxEntry, error: str) -> None:
        try:
            await self.store.event_failed(entry, self.clock() + RETRY_AFTER_INTERNAL_ERROR, error)
        except StateError as exc:
            log.error("webhook_outbox_update_failed", endpoint=self.endpoint, event_id=entry.event_id, error=str(exc))

    async def _attempt(self, entry: OutboxEntry) -> None:
        timestamp = int(self.clock())
        headers = signing.signed_headers(self._key, entry.event_id, timestamp, entry.body)
        retry_after = None
        try:
            status, retry_after = await self.transport.post(self.webhook.url, entry.body, headers, self.webhook.timeout)
            error = None if 200 <= status < 300 else f"HTTP status {status}"
            failure = "http_status"
        except WebhookError as exc:
            error = str(exc)
            failure = "timeout" if isinstance(exc.__cause__, TimeoutError) else "connection"

        now = self.clock()
        if error is None:
            await self.store.event_done(entry, now)
            self._note_success()
            log.debug("webhook_sent", endpoint=self.endpoint, event_id=entry.event_id, queue_id=entry.ordering_key)
            return

        metrics.record_webhook_failure(failure)
        policy = self.webhook.retry
        due = next_attempt_time(
            received_at=entry.created_at, now=now, attempts=entry.attempts + 1, policy=policy, random=self.random
        )
        if due is not None and retry_after is not None:
            # RFC 9110 10.2.3: the receiver asked for a pause; honour it up
            # to the usual cap, never past the give-up age.
            due = min(max(due, now + min(retry_after, policy.max_interval)), entry.created_at + policy.give_up)
        if due is None:
            await self.store.event_done(entry, now)
            log.warning(
                "webhook_given_up",
                endpoint=self.endpoint,
                event_id=entry.event_id,
                event_type=entry.event_type,
                queue_id=entry.ordering_key,
                attempts=entry.attempts + 1,
                error=error,
            )
            return
        await self.store.event_failed(entry, due, error)
        self._note_failure(error)
        log.debug(
            "webhook_failed",
            endpoint=self.endpoint,
            event_id=entry.event_id,
            queue_id=entry.ordering_key,
            attempts=entry.attempts + 1,
            error=error,
            next_attempt=round(due, 3),
        )

    def _note_failure(self, error: str) -> None:
        # One line when an endpoint starts failing and one when it recovers,
        # instead of one per event: a dead endpoint with a backlog would
        # otherwise flood the log.
        if not self._failing:
            self._failing = True
            log.warning("webhook_endpoint_failing", endpoint=self.endpoint, error=error)

    def _note_success(self) -> None:
        if self._failing:
            self._failing = False
            log.info("webhook_endpoint_recovered", endpoint=self.endpoint)


class WebhookDispatcher:
    """Runs one EndpointSender per configured webhook."""

    def __init__(
        self,
        webhooks: tuple[Webhook, ...],
        store: OutboxStore,
        transport_factory: TransportFactory | None = None,
        clock: Callable[[], float] = time.time,
        random_source: Callable[[], float] = random.random,
    ):
        self.store = store
        self._factory = transport_factory or (lambda hook: HttpTransport(hook.max_concurrency))
        self._clock = clock
        self._random = random_source
        self.senders = {hook.url: self._sender(hook) for hook in webhooks}
        self._tasks: dict[str, asyncio.Task] = {}
        # Senders of endpoints a reload removed or changed, finishing their requests.
        self._retiring: set[asyncio.Task] = set()
        self._running = False

    def _sender(self, hook: Webhook) -> EndpointSender:
        return EndpointSender(hook, self.store, self._factory(hook), self._clock, self._random)

    def notify(self, url: str) -> None:
        """Wake the sender of `url`: new entries were stored for it."""
        sender = self.senders.get(url)
        if sender is not None:
            sender.wake()

    async def start(self) -> None:
        """Drop the entries of endpoints no longer configured, then start one task per endpoint."""
        dropped = await self.store.drop_endpoints_except(list(self.senders))
        for url, count in dropped.items():
            log.warning("webhook_outbox_dropped", endpoint=redact_url(url), events=count, reason="endpoint no longer configured")
        self._running = True
        for url, sender in self.senders.items():
            self._start(url, sender)

    def _start(self, url: str, sender: EndpointSender) -> None:
        self._tasks[url] = asyncio.create_task(sender.run(), name=f"webhook sender {sender.endpoint}")

    def reload(self, webhooks: tuple[Webhook, ...], grace: float = 30.0) -> None:
        """Send to `webhooks` from now on: new endpoints start, and removed or changed ones stop.

        A changed endpoint (same URL, other secret, events or limits) gets a
        new sender that continues with its entries in the outbox; an entry
        the old sender is still sending can go out twice, with the same
        webhook-id, as at-least-once delivery allows. A removed
        endpoint's requests in progress get `grace` seconds to finish in the
        background, and its entries stay in the outbox until the next start
        drops them.
        """
        wanted = {hook.url: hook for hook in webhooks}
        for url, sender in list(self.senders.items()):
            if wanted.get(url) == sender.webhook:
                continue
            del self.senders[url]
            task = self._tasks.pop(url, None)
            retiring = asyncio.create_task(self._retire(sender, task, grace), name=f"webhook retire {sender.endpoint}")
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
        for url, hook in wanted.items():
            if url not in self.senders:
                self.senders[url] = self._sender(hook)
                if self._running:
                    self._start(url, self.senders[url])

    async def _retire(self, sender: EndpointSender, task: asyncio.Task | None, grace: float) -> None:
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        await sender.drain(grace)

    async def stop(self, grace: float) -> int:
        """Stop sending; wait up to `grace` seconds for requests in progress; return how many were cancelled."""
        self._running = False
        tasks = [*self._tasks.values(), *self._retiring]
        for task in self._tasks.values():
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        self._tasks = {}
        cancelled = await asyncio.gather(*(sender.drain(grace) for sender in self.senders.values()))
        return sum(cancelled)
