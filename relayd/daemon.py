"""`relayd serve`: recover the spool, start the listeners and the scheduler, reload on SIGHUP, drain on SIGTERM."""

import asyncio
import contextlib
import random
import signal
import time
from dataclasses import dataclass, field

import structlog

from relayd import events, metrics, systemd
from relayd.alignment.policy import AlignmentPolicy, build_alignment_policy
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
from relayd.http.server import Health, HttpServer, create_app
from relayd.reload import Reloader
from relayd.smtp.handler import SubmissionHandler
from relayd.smtp.server import start_listeners
from relayd.smtp.sessions import Sessions
from relayd.spool import NewMessage, Spool, new_queue_id
from relayd.state import SqliteStateStore, StateError, StateStore, state_path
from relayd.suppression import SuppressionList
from relayd.webhooks import WebhookDispatcher

log = structlog.get_logger("relayd")

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


def _log_keys(keys: list[SigningKey]) -> None:
    for key in keys:
        log.info("dkim_key_loaded", domain=key.domain, selector=key.selector, algorithm=key.algorithm, active=key.active)


def _mta_sts(config: Config, resolver: Resolver, current: MtaSts | None = None, current_ca_file: str = "") -> MtaSts | None:
    """Return the MTA-STS client for `config`, keeping `current` and its policy cache when the CA file is unchanged."""
    if not config.delivery.mta_sts:
        return None
    if current is not None and current_ca_file == config.delivery.ca_file:
        current.resolver = resolver
        return current
    return MtaSts(resolver, config.delivery.ca_file or None)


@dataclass
class Reloadable:
    """The objects a SIGHUP reload replaces or updates."""

    handler: SubmissionHandler
    runner: AttemptRunner
    courier: Courier
    destinations: DestinationHealth
    recorder: EventRecorder
    dispatcher: WebhookDispatcher
    suppressions: SuppressionList
    rng: random.Random
    # Alignment policies replaced by a reload. One may be in the middle of
    # a check, so they are closed at shutdown rather than at the reload.
    retired: list[AlignmentPolicy] = field(default_factory=list)

    def apply(self, config: Config, keys: list[SigningKey]) -> None:
        """Put a reloaded config into effect for new sessions, attempts and events.

        Everything is built first and assigned after, with no await in
        between, so a failure while building changes nothing.
        """
        signer = Signer(keys)
        resolver = Resolver(config.dns)
        alignment = build_alignment_policy(config, signer, resolver)
        router = Router(config.routes, config.delivery.port, resolver, self.rng)
        mta_sts = _mta_sts(config, resolver, self.runner.mta_sts, self.runner.config.delivery.ca_file)

        self.retired.append(self.handler.alignment)
        self.handler.config = config
        self.handler.signer = signer
        self.handler.alignment = alignment
        self.runner.config = config
        self.runner.router = router
        self.runner.mta_sts = mta_sts
        self.courier.hostname = config.server.hostname
        self.courier.config = config.delivery
        self.destinations.pause_after = config.delivery.pause_after
        self.destinations.pause = config.delivery.pause
        self.suppressions.config = config.suppression
        self.recorder.webhooks = config.webhooks
        self.dispatcher.reload(config.webhooks)
        metrics.set_domains(config.http.metrics_domains)
        _log_keys(keys)

    def close(self) -> None:
        self.handler.alignment.close()
        for policy in self.retired:
            policy.close()


async def serve(config: Config, keys: list[SigningKey]) -> int:
    """Run the daemon until SIGTERM or SIGINT; return the exit status."""
    metrics.set_domains(config.http.metrics_domains)
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

    rng = random.Random()
    resolver = Resolver(config.dns)
    router = Router(config.routes, config.delivery.port, resolver, rng)
    alignment = build_alignment_policy(config, signer, resolver)
    courier = Courier(config.server.hostname, config.delivery)
    health = DestinationHealth(config.delivery.pause_after, config.delivery.pause)
    runner = AttemptRunner(
        config,
        spool,
        router,
        courier,
        random_source=rng.random,
        health=health,
        mta_sts=_mta_sts(config, resolver),
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

    reloader = Reloader(config.path, config)

    def on_accepted(queue_id: str, domains: set[str], message_class: str, received_at: float) -> None:
        # Due at once; the class's deadline orders it among other due work.
        deadline = received_at + reloader.config.deadline_for(message_class)
        for domain in sorted(domains):
            scheduler.schedule(queue_id, domain, 0.0, message_class, deadline)

    handler = SubmissionHandler(config, spool, signer, on_accepted, suppressions, state, recorder, alignment)
    reloadable = Reloadable(handler, runner, courier, health, recorder, dispatcher, suppressions, rng)
    reloader.subscribe(reloadable.apply)
    sessions = Sessions()
    readiness = Health()
    http = HttpServer(config.http.listen, create_app(readiness, spool, scheduler, state, suppressions, health))

    # The signal handlers go in before the first await, so neither signal
    # can take its default action (exit) while relayd is starting.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_handler(reloader))

    try:
        await http.start()
    except OSError as exc:
        log.error("listen_failed", addresses=[str(config.http.listen)], error=str(exc))
        reloadable.close()
        state.close()
        spool.close()
        return 1

    await _recover_state(spool, state, recorder)
    # Every pending recipient is scheduled again; due times in the past mean now.
    pending = await spool.pending()
    for job in pending:
        # A message never attempted keeps its class deadline; a retry is due at its next attempt time.
        deadline = job.received_at + config.deadline_for(job.message_class) if not job.attempted else job.due
        scheduler.schedule(job.queue_id, job.domain, job.due, job.message_class, deadline)
    _log_keys(keys)
    log.info("spool_recovered", jobs=len(pending), spool=str(spool.path))
    try:
        await suppressions.refresh()
    except StateError as exc:
        # Until a refresh succeeds, each RCPT is looked up in the store.
        log.error("suppression_refresh_failed", error=str(exc))

    try:
        servers = await start_listeners(config, handler, sessions)
    except OSError as exc:
        log.error("listen_failed", addresses=[str(a) for a in config.smtp.listen], error=str(exc))
        await http.stop()
        reloadable.close()
        state.close()
        spool.close()
        return 1
    courier.pool.start()
    await dispatcher.start()
    housekeeping = asyncio.create_task(_housekeeping(config, state), name="housekeeping")
    refresher = asyncio.create_task(suppressions.keep_refreshed(), name="suppression-refresh")
    scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
    readiness.state = Health.READY
    systemd.notify("READY=1", "STATUS=Accepting mail")
    log.info("started", hostname=config.server.hostname, webhooks=len(config.webhooks))

    await stop.wait()
    grace = reloader.config.server.shutdown_grace
    readiness.state = Health.DRAINING
    systemd.notify("STOPPING=1", f"STATUS=Draining for up to {grace:g}s")
    log.info("stopping", grace=grace)

    # New sessions and new transactions get 421 from here on, while the
    # attempts and the transactions in progress get `grace` to finish.
    scheduler_task.cancel()
    cancelled, unfinished = await asyncio.gather(scheduler.drain(grace), sessions.drain(grace))
    for server in servers:
        server.close()
    await courier.pool.close()
    webhooks_left = await dispatcher.stop(WEBHOOK_SHUTDOWN_GRACE)
    for task in (housekeeping, refresher):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await http.stop()
    reloadable.close()
    state.close()
    spool.close()
    log.info(
        "stopped",
        attempts_left_spooled=cancelled,
        sessions_closed_in_transaction=unfinished,
        webhook_requests_cancelled=webhooks_left,
    )
    return 0


def _reload_handler(reloader: Reloader):
    def reload() -> None:
        systemd.notify("RELOADING=1")
        reloader.reload()
        systemd.notify("READY=1")

    return reload
