"""`relayd serve`: recover the spool, start the listeners and the scheduler, stop on a signal."""

import asyncio
import random
import signal
import time

import structlog

from relayd.alignment.policy import build_alignment_policy
from relayd.config import Config
from relayd.delivery.attempt import AttemptRunner
from relayd.delivery.courier import Courier
from relayd.delivery.dns import Resolver
from relayd.delivery.health import DestinationHealth
from relayd.delivery.mta_sts import MtaSts
from relayd.delivery.routing import Router
from relayd.delivery.results import wire_address
from relayd.delivery.scheduler import Scheduler
from relayd.dkim.keys import SigningKey
from relayd.dkim.signer import Signer
from relayd.smtp.server import start_listeners
from relayd.spool import NewMessage, Spool, new_queue_id

log = structlog.get_logger("relayd")

# How long SIGTERM waits for attempts in progress before leaving them spooled.
SHUTDOWN_GRACE = 10.0


def _warn_unimplemented(config: Config) -> None:
    """Log once for each configured feature this version does not act on yet."""
    if config.webhooks:
        log.warning("not_implemented", key="webhooks", detail="webhooks are not implemented yet; no events are sent")


async def serve(config: Config, keys: list[SigningKey]) -> int:
    """Run the daemon until SIGTERM or SIGINT; return the exit status."""
    _warn_unimplemented(config)
    signer = Signer(keys)
    spool = Spool(config.server.spool_dir)
    spool.open()

    rng = random.Random()
    resolver = Resolver(config.dns)
    router = Router(config.routes, config.delivery.port, resolver, rng)
    alignment = build_alignment_policy(config, signer, resolver)
    courier = Courier(config.server.hostname, config.delivery)
    health = DestinationHealth(config.delivery.pause_after, config.delivery.pause)
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

    mta_sts = MtaSts(resolver, config.delivery.ca_file or None) if config.delivery.mta_sts else None
    runner = AttemptRunner(
        config, spool, router, courier, random_source=rng.random, health=health, inject=inject, mta_sts=mta_sts
    )
    scheduler = Scheduler(
        runner,
        config.delivery.max_concurrency,
        per_domain=config.delivery.max_per_domain,
        health=health,
        shares=config.shares(),
    )

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

    try:
        servers = await start_listeners(config, spool, signer, on_accepted, alignment)
    except OSError as exc:
        log.error("listen_failed", addresses=[str(a) for a in config.smtp.listen], error=str(exc))
        spool.close()
        return 1
    courier.pool.start()
    scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
    log.info("started", hostname=config.server.hostname)

    await stop.wait()
    log.info("stopping")
    for server in servers:
        server.close()
    scheduler_task.cancel()
    cancelled = await scheduler.drain(SHUTDOWN_GRACE)
    await courier.pool.close()
    alignment.close()
    spool.close()
    log.info("stopped", attempts_left_spooled=cancelled)
    return 0
