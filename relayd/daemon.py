"""`relayd serve`: recover the spool, start the listeners and the scheduler, reload on SIGHUP, drain on SIGTERM."""

import asyncio
import random
import signal
from functools import partial

import structlog

from relayd import metrics, systemd
from relayd.config import Config
from relayd.delivery.attempt import AttemptRunner
from relayd.delivery.courier import Courier
from relayd.delivery.dns import Resolver
from relayd.delivery.routing import Router
from relayd.delivery.scheduler import Scheduler
from relayd.dkim.keys import SigningKey
from relayd.dkim.signer import Signer
from relayd.http.server import Health, HttpServer, create_app
from relayd.reload import Reloader
from relayd.smtp.handler import SubmissionHandler
from relayd.smtp.server import start_listeners
from relayd.smtp.sessions import Sessions
from relayd.spool import Spool

log = structlog.get_logger("relayd")


def _warn_unimplemented(config: Config) -> None:
    """Log once for each configured feature this version does not act on yet."""
    if config.webhooks:
        log.warning("not_implemented", key="webhooks", detail="webhooks are not implemented yet; no events are sent")
    if config.policy.alignment == "reject":
        log.warning("not_implemented", key="policy.alignment", detail="the alignment check is not implemented yet; nothing is rejected for it")


def _log_keys(keys: list[SigningKey]) -> None:
    for key in keys:
        log.info("dkim_key_loaded", domain=key.domain, selector=key.selector, algorithm=key.algorithm, active=key.active)


def _apply(
    config: Config, keys: list[SigningKey], *, handler: SubmissionHandler, runner: AttemptRunner, rng: random.Random
) -> None:
    """Put a reloaded config into effect: routes, DNS, delivery settings, DKIM keys, policy and inbound limits.

    Sessions and attempts in progress keep the objects they already hold;
    each new session and attempt reads the new ones.
    """
    _warn_unimplemented(config)
    _log_keys(keys)
    metrics.set_domains(config.http.metrics_domains)
    handler.config = config
    handler.signer = Signer(keys)
    runner.config = config
    runner.router = Router(config.routes, config.delivery.port, Resolver(config.dns), rng)
    runner.courier = Courier(config.server.hostname, config.delivery)


async def serve(config: Config, keys: list[SigningKey]) -> int:
    """Run the daemon until SIGTERM or SIGINT; return the exit status."""
    _warn_unimplemented(config)
    metrics.set_domains(config.http.metrics_domains)
    spool = Spool(config.server.spool_dir)
    spool.open()

    rng = random.Random()
    router = Router(config.routes, config.delivery.port, Resolver(config.dns), rng)
    courier = Courier(config.server.hostname, config.delivery)
    runner = AttemptRunner(config, spool, router, courier, random_source=rng.random)
    scheduler = Scheduler(runner, config.delivery.max_concurrency)

    def on_accepted(queue_id: str, domains: set[str]) -> None:
        for domain in sorted(domains):
            scheduler.schedule(queue_id, domain, 0.0)

    handler = SubmissionHandler(config, spool, Signer(keys), on_accepted)
    sessions = Sessions()
    health = Health()
    http = HttpServer(config.http.listen, create_app(health, spool, scheduler))

    # Signal handlers go in before the first await, so neither signal can
    # take the default action (exit) while relayd is starting.
    reloader = Reloader(config.path, config)
    reloader.subscribe(partial(_apply, handler=handler, runner=runner, rng=rng))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_handler(reloader))

    try:
        await http.start()
    except OSError as exc:
        log.error("listen_failed", addresses=[str(config.http.listen)], error=str(exc))
        spool.close()
        return 1

    # Every pending recipient is scheduled again; due times in the past mean now.
    pending = await spool.pending()
    for queue_id, domain, due in pending:
        scheduler.schedule(queue_id, domain, due)
    _log_keys(keys)
    log.info("spool_recovered", jobs=len(pending), spool=str(spool.path))

    try:
        servers = await start_listeners(config, handler, sessions)
    except OSError as exc:
        log.error("listen_failed", addresses=[str(a) for a in config.smtp.listen], error=str(exc))
        await http.stop()
        spool.close()
        return 1
    scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
    health.state = Health.READY
    systemd.notify("READY=1", "STATUS=Accepting mail")
    log.info("started", hostname=config.server.hostname)

    await stop.wait()
    grace = reloader.config.server.shutdown_grace
    health.state = Health.DRAINING
    systemd.notify("STOPPING=1", f"STATUS=Draining for up to {grace:g}s")
    log.info("stopping", grace=grace)

    # New sessions and new transactions get 421 from here on, while the
    # attempts and the transactions in progress get `grace` to finish.
    scheduler_task.cancel()
    cancelled, unfinished = await asyncio.gather(scheduler.drain(grace), sessions.drain(grace))
    for server in servers:
        server.close()
    await http.stop()
    spool.close()
    log.info("stopped", attempts_left_spooled=cancelled, sessions_closed_in_transaction=unfinished)
    return 0


def _reload_handler(reloader: Reloader):
    def reload() -> None:
        systemd.notify("RELOADING=1")
        reloader.reload()
        systemd.notify("READY=1")

    return reload
