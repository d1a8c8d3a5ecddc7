"""`relayd serve`: recover the spool, start the listeners and the scheduler, reload on SIGHUP, drain on SIGTERM."""

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field

import structlog

from relayd import metrics, systemd
from relayd.alignment.policy import AlignmentPolicy, build_alignment_policy
from relayd.config import Config
from relayd.delivery.attempt import AttemptRunner
from relayd.delivery.courier import Courier
from relayd.delivery.dns import Resolver
from relayd.delivery.health import DestinationHealth
from relayd.delivery.mta_sts import MtaSts
from relayd.delivery.results import wire_address
from relayd.delivery.routing import Router
from relayd.delivery.scheduler import Scheduler
from relayd.dkim.keys import SigningKey
from relayd.dkim.signer import Signer
from relayd.http.server import Health, HttpServer, create_app
from relayd.reload import Reloader
from relayd.smtp.handler import SubmissionHandler
from relayd.smtp.server import start_listeners
from relayd.smtp.sessions import Sessions
from relayd.spool import NewMessage, Spool, new_queue_id

log = structlog.get_logger("relayd")


def _warn_unimplemented(config: Config) -> None:
    """Log once for each configured feature this version does not act on yet."""
    if config.webhooks:
        log.warning("not_implemented", key="webhooks", detail="webhooks are not implemented yet; no events are sent")


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
    rng: random.Random
    # Alignment policies replaced by a reload. One may be in the middle of
    # a check, so they are closed at shutdown rather than at the reload.
    retired: list[AlignmentPolicy] = field(default_factory=list)

    def apply(self, config: Config, keys: list[SigningKey]) -> None:
        """Put a reloaded config into effect for new sessions and new attempts.

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
        metrics.set_domains(config.http.metrics_domains)
        _warn_unimplemented(config)
        _log_keys(keys)

    def close(self) -> None:
        self.handler.alignment.close()
        for policy in self.retired:
            policy.close()


async def serve(config: Config, keys: list[SigningKey]) -> int:
    """Run the daemon until SIGTERM or SIGINT; return the exit status."""
    _warn_unimplemented(config)
    metrics.set_domains(config.http.metrics_domains)
    signer = Signer(keys)
    spool = Spool(config.server.spool_dir)
    spool.open()

    rng = random.Random()
    resolver = Resolver(config.dns)
    router = Router(config.routes, config.delivery.port, resolver, rng)
    alignment = build_alignment_policy(config, signer, resolver)
    courier = Courier(config.server.hostname, config.delivery)
    destinations = DestinationHealth(config.delivery.pause_after, config.delivery.pause)

    async def inject(sender: str, recipient: str, content: bytes) -> str:
        """Spool a message relayd wrote itself, such as a DSN, and schedule it."""
        domain = wire_address(recipient).rpartition("@")[2].lower()
        queue_id = new_queue_id()
        message = NewMessage(
            sender=sender,
            recipients=((recipient, domain),),
            content=content,
            received_at=time.time(),
            client="relayd",
        )
        await spool.add(queue_id, message)
        scheduler.schedule(queue_id, domain, 0.0)
        return queue_id

    runner = AttemptRunner(
        config,
        spool,
        router,
        courier,
        random_source=rng.random,
        health=destinations,
        inject=inject,
        mta_sts=_mta_sts(config, resolver),
    )
    scheduler = Scheduler(
        runner,
        config.delivery.max_concurrency,
        per_domain=config.delivery.max_per_domain,
        health=destinations,
        shares=config.shares(),
    )
    reloader = Reloader(config.path, config)

    def on_accepted(queue_id: str, domains: set[str], message_class: str, received_at: float) -> None:
        # Due at once; the class's deadline orders it among other due work.
        deadline = received_at + reloader.config.deadline_for(message_class)
        for domain in sorted(domains):
            scheduler.schedule(queue_id, domain, 0.0, message_class, deadline)

    handler = SubmissionHandler(config, spool, signer, on_accepted, alignment)
    reloadable = Reloadable(handler, runner, courier, destinations, rng)
    reloader.subscribe(reloadable.apply)
    sessions = Sessions()
    readiness = Health()
    http = HttpServer(config.http.listen, create_app(readiness, spool, scheduler))

    # Signal handlers go in before the first await, so neither signal can
    # take the default action (exit) while relayd is starting.
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
        spool.close()
        return 1

    # Every pending recipient is scheduled again; due times in the past mean now.
    pending = await spool.pending()
    for job in pending:
        # A message never attempted keeps its class deadline; a retry is due at its next attempt time.
        deadline = job.received_at + config.deadline_for(job.message_class) if not job.attempted else job.due
        scheduler.schedule(job.queue_id, job.domain, job.due, job.message_class, deadline)
    _log_keys(keys)
    log.info("spool_recovered", jobs=len(pending), spool=str(spool.path))

    try:
        servers = await start_listeners(config, handler, sessions)
    except OSError as exc:
        log.error("listen_failed", addresses=[str(a) for a in config.smtp.listen], error=str(exc))
        await http.stop()
        reloadable.close()
        spool.close()
        return 1
    courier.pool.start()
    scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
    readiness.state = Health.READY
    systemd.notify("READY=1", "STATUS=Accepting mail")
    log.info("started", hostname=config.server.hostname)

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
    await http.stop()
    reloadable.close()
    spool.close()
    log.info("stopped", attempts_left_spooled=cancelled, sessions_closed_in_transaction=unfinished)
    return 0


def _reload_handler(reloader: Reloader):
    def reload() -> None:
        systemd.notify("RELOADING=1")
        reloader.reload()
        systemd.notify("READY=1")

    return reload
