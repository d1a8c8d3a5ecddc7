"""`relayd serve`: recover the spool, start the listeners and the scheduler, stop on a signal."""

import asyncio
import contextlib
import random
import signal
import time

import structlog

from relayd import events
from relayd.config import Config
from relayd.delivery.attempt import AttemptRunner
from relayd.delivery.courier import Courier
from relayd.delivery.dns import Resolver
from relayd.delivery.routing import Router
from relayd.delivery.scheduler import Scheduler
from relayd.events import EventRecorder
from relayd.smtp.handler import SubmissionHandler
from relayd.smtp.server import start_listeners
from relayd.spool import Spool
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


def _warn_unimplemented(config: Config) -> None:
    """Log once for each configured feature this version does not act on yet."""
    if config.dkim_keys:
        log.warning("not_implemented", key="dkim.keys", detail="DKIM signing is not implemented yet; mail leaves unsigned")
    if config.policy.alignment == "reject":
        log.warning("not_implemented", key="policy.alignment", detail="the alignment check is not implemented yet; nothing is rejected for it")


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


async def serve(config: Config) -> int:
    """Run the daemon until SIGTERM or SIGINT; return the exit status."""
    _warn_unimplemented(config)
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
    router = Router(config.routes, config.delivery.port, Resolver(config.dns), rng)
    courier = Courier(config.server.hostname, config.delivery)
    runner = AttemptRunner(
        config, spool, router, courier, random_source=rng.random, recorder=recorder, suppressions=suppressions
    )
    scheduler = Scheduler(runner, config.delivery.max_concurrency)

    # Every pending recipient is scheduled again; due times in the past mean now.
    pending = await spool.pending()
    for queue_id, domain, due in pending:
        scheduler.schedule(queue_id, domain, due)
    log.info("spool_recovered", jobs=len(pending), spool=str(spool.path))

    def on_accepted(queue_id: str, domains: set[str]) -> None:
        for domain in sorted(domains):
            scheduler.schedule(queue_id, domain, 0.0)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    handler = SubmissionHandler(config, spool, on_accepted, suppressions, state, recorder)
    try:
        servers = await start_listeners(config, handler)
    except OSError as exc:
        log.error("listen_failed", error=str(exc))
        state.close()
        spool.close()
        return 1
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
    webhooks_left = await dispatcher.stop(WEBHOOK_SHUTDOWN_GRACE)
    housekeeping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await housekeeping
    state.close()
    spool.close()
    log.info("stopped", attempts_left_spooled=cancelled, webhook_requests_cancelled=webhooks_left)
    return 0
