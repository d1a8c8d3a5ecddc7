"""One attempt for one (message, domain): route, deliver, decide, record, then log."""

import random
import time
from typing import Awaitable, Callable

import structlog

from relayd import events, maillog, metrics
from relayd.config import Config
from relayd.delivery import outcome
from relayd.delivery.courier import Courier
from relayd.delivery.results import AttemptResult, OutboundEnvelope, RecipientResult
from relayd.delivery.health import DestinationHealth
from relayd.delivery.mta_sts import MtaSts
from relayd.delivery.retry import next_attempt_time
from relayd.dsn import FailedRecipient, build_dsn
from relayd.delivery.routing import RouteError, Router
from relayd.events import EventRecorder
from relayd.reply import Reply
from relayd.spool import RecipientUpdate, Spool
from relayd.state import StateError
from relayd.suppression import SuppressionList

log = structlog.get_logger("relayd.delivery")

# Spools a message relayd writes itself (a DSN) and returns its queue id:
# (sender, recipient, content).
InjectFunction = Callable[[str, str, bytes], Awaitable[str]]

_EVENTS = {
    outcome.DELIVERED: maillog.delivered,
    outcome.BOUNCED: maillog.bounced,
    "expired": maillog.expired,
}


class AttemptRunner:
    def __init__(
        self,
        config: Config,
        spool: Spool,
        router: Router,
        courier: Courier,
        clock: Callable[[], float] = time.time,
        random_source: Callable[[], float] = random.random,
        health: DestinationHealth | None = None,
        inject: InjectFunction | None = None,
        mta_sts: MtaSts | None = None,
        recorder: EventRecorder | None = None,
        suppressions: SuppressionList | None = None,
    ):
        self.health = health
        self.inject = inject
        self.mta_sts = mta_sts
        self.config = config
        self.spool = spool
        self.router = router
        self.courier = courier
        self.clock = clock
        self.random = random_source
        self.recorder = recorder
        self.suppressions = suppressions

    async def __call__(self, queue_id: str, domain: str) -> float | None:
        """Run one attempt; return when the next one is due, or None when none is needed."""
        loaded = await self.spool.load(queue_id, domain)
        if loaded is None or not loaded[1]:
            return None
        message, recipients = loaded
        attempt = max(r.attempts for r in recipients) + 1
        with structlog.contextvars.bound_contextvars(queue_id=queue_id, domain=domain, attempt=attempt):
            return await self._attempt(message, recipients, attempt)

    async def _attempt(self, message, recipients, attempt: int) -> float | None:
        started = self.clock()
        addresses = [r.address for r in recipients]
        try:
            hosts = await self.router.hosts_for(recipients[0].domain)
        except RouteError as exc:
            state = outcome.BOUNCED if exc.permanent else outcome.DEFERRED
            result = AttemptResult([RecipientResult(a, state, exc.reply, "") for a in addresses])
        else:
            result = await self._deliver(message, addresses, hosts, recipients[0].domain)
            if result is None:
                return None

        # Every decision is stored before it is logged or acted on, so a crash
        # here repeats the attempt instead of forgetting its outcome.
        now = self.clock()
        policy = self.config.retry_for(message.message_class)
        previous = {r.address: r for r in recipients}
        updates = []
        for item in result.results:
            attempts = previous[item.address].attempts + 1
            state, due = item.state, None
            if state == outcome.DEFERRED:
                due = next_attempt_time(
                    received_at=message.received_at, now=now, attempts=attempts, policy=policy, random=self.random
                )
                if due is None:
                    state = "expired"
            updates.append(RecipientUpdate(item.address, state, attempts, due, str(item.reply), item.host))

        # Events go to the outbox before the spool records the outcome. A
        # crash between the two repeats the attempt under the same attempt
        # number, and the same outcome then gets the same event id: no
        # event is lost and none is stored twice.
        if self.recorder is not None:
            await self.recorder.record(
                [
                    events.state_change(
                        update.state,
                        queue_id=message.queue_id,
                        message_id=message.message_id,
                        recipient=update.address,
                        domain=self._domain(recipients, update.address),
                        timestamp=now,
                        attempt=update.attempts,
                        host=result.host or item.host,
                        reply=item.reply,
                        next_attempt=update.next_attempt,
                    )
                    for update, item in zip(updates, result.results)
                ]
            )
        # The DSN is spooled before the failure is recorded: a crash in
        # between repeats the attempt, and at worst sends a second DSN.
        await self._send_dsn(message, updates, result)
        await self.spool.record(message.queue_id, updates)
        await self._suppress_hard_bounces(message.queue_id, updates, result)

        delays = {"spool": round(started - message.received_at, 3), **result.delays}
        for update, item in zip(updates, result.results):
            fields = dict(
                queue_id=message.queue_id,
                recipient=update.address,
                domain=self._domain(recipients, update.address),
                host=result.host or item.host,
                attempt=update.attempts,
                reply=item.reply,
                delays=delays,
                tls=result.tls,
            )
            if update.state == outcome.DEFERRED:
                maillog.deferred(next_attempt=update.next_attempt, **fields)
            else:
                _EVENTS[update.state](**fields)

        metrics.record_attempt(
            message_class=message.message_class,
            domain=recipients[0].domain,
            received_at=message.received_at,
            now=now,
            outcomes=[(update.state, item.reply) for update, item in zip(updates, result.results)],
        )

        due_times = [u.next_attempt for u in updates if u.state == outcome.DEFERRED]
        return min(due_times) if due_times else None

    async def _deliver(self, message, addresses: list[str], hosts, domain: str) -> AttemptResult | None:
        tls_mode = None
        policy = None
        if self.mta_sts is not None and not self.router.is_routed(domain):
            policy = await self.mta_sts.policy(domain)
        if policy is not None and policy.mode == "enforce":
            # RFC 8461 4.1 and 4.2: only listed MX hosts, only over verified TLS.
            hosts = [host for host in hosts if policy.matches(host.name)]
            tls_mode = "verify"
            if not hosts:
                reply = Reply(451, "4.7.5", f"No MX host of {domain} matches its MTA-STS policy", "MTA-STS")
                return AttemptResult([RecipientResult(a, outcome.DEFERRED, reply, "") for a in addresses])

        content = await self.spool.content(message.queue_id)
        if content is None:
            return None
        envelope = OutboundEnvelope(message.sender, message.smtputf8, message.body_8bit)
        result = await self.courier.deliver(envelope, content, addresses, hosts, domain, tls_mode)
        if self.health is not None:
            self.health.record(domain, result.connected)
        return result

    async def _send_dsn(self, message, updates: list[RecipientUpdate], result: AttemptResult) -> None:
        failed = [u for u in updates if u.state in (outcome.BOUNCED, "expired")]
        # A DSN for a DSN would loop: the null sender never gets one (RFC 5321 6.1).
        if not failed or not message.sender or not self.config.delivery.dsn or self.inject is None:
            return
        original = await self.spool.content(message.queue_id) or b""
        replies = {item.address: item.reply for item in result.results}
        report = build_dsn(
            hostname=self.config.server.hostname,
            queue_id=message.queue_id,
            sender=message.sender,
            received_at=message.received_at,
            original=original,
            failed=[
                FailedRecipient(
                    address=u.address,
                    state=u.state,
                    status=replies[u.address].enhanced or ("4.4.7" if u.state == "expired" else "5.0.0"),
                    diagnostic=u.last_reply,
                    remote_mta=u.last_host.split("[", 1)[0],
                    last_attempt=self.clock(),
                )
                for u in failed
            ],
        )
        dsn_queue_id = await self.inject("", message.sender, report)
        log.info("dsn_queued", queue_id=message.queue_id, dsn_queue_id=dsn_queue_id, recipients=len(failed))

    async def _suppress_hard_bounces(self, queue_id: str, updates: list[RecipientUpdate], result: AttemptResult) -> None:
        if self.suppressions is None:
            return
        for update, item in zip(updates, result.results):
            if update.state != outcome.BOUNCED:
                continue
            try:
                entry = await self.suppressions.add_bounce(update.address, item.reply)
            except StateError as exc:
                log.error("suppression_add_failed", queue_id=queue_id, recipient=update.address, error=str(exc))
                continue
            if entry is not None:
                maillog.suppression_added(
                    queue_id=queue_id, recipient=update.address, reason=entry.reason, expires_at=entry.expires_at
                )

    @staticmethod
    def _domain(recipients, address: str) -> str:
        return next(r.domain for r in recipients if r.address == address)
