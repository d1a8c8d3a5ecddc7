"""`relayd serve`: recover the spool, start the listeners and the scheduler, stop on a signal."""

import asyncio
import contextlib
import random
import signal
import time

import structlog

from relayd import events
from relayd.alignment.policy import build_alignment_policy
from relayd.config import Config
from relayd.delivery.attempt import AttemptRunner, InjectFunction
from relayd.delivery.courier import Courier
from relayd.delivery.dns import Resolver
from relayd.delivery.health import DestinationHealth
from relayd.delivery.mta_sts import MtaSts
from relayd.delivery.routing import Router
from relayd.delivery.results import wire_address
from relayd.delivery.scheduler import Scheduler
from relayd.dkim.keys import SigningKey
from relayd.dkim.signer import Signer
from relayd.events import EventRecorder
from relayd.headers import header_field
from relayd.smtp.handler import SubmissionHandler
from relayd.smtp.server import start_listeners
from relayd.spool import NewMessage, Spool, new_queue_id
from relayd.state import SqliteStateStore, StateError, StateStore, state_path
from relayd.suppression import SuppressionList
from relayd.webhooks import WebhookDispatcher

log = structlog.get_logger("relayd")

# How long SIGTERM waits for attempts in progress before leaving them spooled.
SHUTDOWN_GRACE = 10.0
# How long SIGTERM then waits for webhook requests in progress; the rest
# stay in the outbox and are sent after the next start.
WEBHOOK_SHUTDOWN_GRACE = 5.0
# How often expired suppressions and idempotency keys are deleted.
HOUSEKEEPING_INTERVAL = 300.0


async def _recover_state(spool: Spool, state: StateStore, recorder: EventRecorder) -> None:
    """Settle what a stop between the spool and the state store may have left half done.

    A pending idempotency claim is committed when its message reached the
    spool and dropped when it did not. A recipient never attempted gets its
    `queued` event stored again: the event id is the same, so the outbox
    keeps one, though a receiver may get it twice if it was already sent.
    """
    claims = await state.pending_claims()
    if claims:
        spooled = await spool.contains(claims)
        await state.settle_claims(committed=spooled, released=set(claims) - spooled)
        log.info("idempotency_claims_settled", committed=len(spooled), released=len(claims) - len(spooled))

    unattempted = await spool.unattempted()
    await recorder.record(
        [
            events.state_change(
                "queued",
                queue_id=queue_id,
                message_id=message_id,
                recipient=recipient,
                domain=domain,
                timestamp=received_at,
            )
            for queue_id, message_id, recipient, domain, received_at in unattempted
        ]
    )


async def _housekeeping(config: Config, state: StateStore) -> None:
    while True:
        try:
            await state.purge(time.time(), config.idempotency.window)
        except StateError as exc:
            log.error("state_purge_failed", error=str(exc))
        await asyncio.sleep(HOUSEKEEPING_INTERVAL)


def _injector(spool: Spool, recorder: EventRecorder, scheduler: Scheduler) -> InjectFunction:
    """Return the function that spools a message relayd wrote itself, such as a DSN, and schedules it."""

    async def inject(sender: str, recipient: str, content: bytes) -> str:
        domain = wire_address(recipient).rpartition("@")[2].lower()
        queue_id = new_queue_id()
        message = NewMessage(
            sender=sender,
            recipients=((recipient, domain),),
            content=content,
            received_at=time.time(),
            client="relayd",
            message_id=header_field(content, "message-id") or "",
        )
        await spool.add(queue_id, message)
        # Like a submitted message, it gets its `queued` event before its first attempt.
        await recorder.record(
            [
                events.state_change(
                    "queued",
                    queue_id=queue_id,
                    message_id=message.message_id,
                    recipient=recipient,
                    domain=domain,
                    timestamp=message.received_at,
                )
            ]
        )
        scheduler.schedule(queue_id, domain, 0.0)
        return queue_id

    return inject


async def serve(config: Config, keys: list[SigningKey]) -> int:
    """Run the daemon until SIGTERM or SIGINT; return the exit status."""
    signer = Signer(keys)
    spool = Spool(config.server.spool_dir)
    spool.open()
    state = SqliteStateStore(state_path(config.server.spool_dir))
    try:
        state.open()
    except StateError:
        spool.close()
        raise

    dispatcher = WebhookDispatcher(config.webhooks, state)
    recorder = EventRecorder(state, config.webhooks, dispatcher.notify)
    suppressions = SuppressionList(state, config.suppression)
    await _recover_state(spool, state, recorder)

    rng = random.Random()
    resolver = Resolver(config.dns)
    router = Router(config.routes, config.delivery.port, resolver, rng)
    alignment = build_alignment_policy(config, signer, resolver)
    courier = Courier(config.server.hostname, config.delivery)
    health = DestinationHealth(config.delivery.pause_after, config.delivery.pause)
    mta_sts = MtaSts(resolver, config.delivery.ca_file or None) if config.delivery.mta_sts else None
    runner = AttemptRunner(
        config,
        spool,
        router,
        courier,
        random_source=rng.random,
        health=health,
        mta_sts=mta_sts,
        recorder=recorder,
        suppressions=suppressions,
    )
    scheduler = Scheduler(
        runner,
        config.delivery.max_concurrency,
        per_domain=config.delivery.max_per_domain,
        health=health,
        shares=config.shares(),
    )
    # Set once the scheduler exists: the scheduler runs the attempts, and the DSNs they write go to the scheduler.
    runner.inject = _injector(spool, recorder, scheduler)

    # Every pending recipient is scheduled again; due times in the past mean now.
    pending = await spool.pending()
    for job in pending:
        # A message never attempted keeps its class deadline; a retry is due at its next attempt time.
        deadline = job.received_at + config.deadline_for(job.message_class) if not job.attempted else job.due
        scheduler.schedule(job.queue_id, job.domain, job.due, job.message_class, deadline)
    for key in keys:
        log.info("dkim_key_loaded", domain=key.domain, selector=key.selector, algorithm=key.algorithm, active=key.active)
    log.info("spool_recovered", jobs=len(pending), spool=str(spool.path))

    def on_accepted(queue_id: str, domains: set[str], message_class: str, received_at: float) -> None:
        # Due at once; the class's deadline orders it among other due work.
        deadline = received_at + config.deadline_for(message_class)
        for domain in sorted(domains):
            scheduler.schedule(queue_id, domain, 0.0, message_class, deadline)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    handler = SubmissionHandler(config, spool, signer, on_accepted, suppressions, state, recorder, alignment)
    try:
        servers = await start_listeners(config, handler)
    except OSError as exc:
        log.error("listen_failed", addresses=[str(a) for a in config.smtp.listen], error=str(exc))
        alignment.close()
        state.close()
        spool.close()
        return 1
    courier.pool.start()
    await dispatcher.start()
    housekeeping = asyncio.create_task(_housekeeping(config, state), name="housekeeping")
    scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
    log.info("started", hostname=config.server.hostname, webhooks=len(config.webhooks))

    await stop.wait()
    log.info("stopping")
    for server in servers:
        server.close()
    scheduler_task.cancel()
    cancelled = await scheduler.drain(SHUTDOWN_GRACE)
    await courier.pool.close()
    alignment.close()
    webhooks_left = await dispatcher.stop(WEBHOOK_SHUTDOWN_GRACE)
    housekeeping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await housekeeping
    state.close()
    spool.close()
    log.info("stopped", attempts_left_spooled=cancelled, webhook_requests_cancelled=webhooks_left)
    return 0
