"""The HTTP listener on `http.listen`: /metrics, /healthz and the control API.

One aiohttp application serves all three. /metrics and /healthz are meant to
be scraped from elsewhere; the control API under /v1/ (the queue, and the
suppression list's refresh) serves loopback clients only (see
relayd.http.queue_api).
"""

import sqlite3
import time

import structlog
from aiohttp import web

from relayd import metrics
from relayd.config.units import HostPort
from relayd.delivery.health import DestinationHealth
from relayd.delivery.scheduler import Scheduler
from relayd.http.queue_api import QueueApi, control_guard
from relayd.http.suppression_api import suppression_routes
from relayd.spool import Spool
from relayd.state import OutboxStore, StateError
from relayd.suppression import SuppressionList

log = structlog.get_logger("relayd.http")

# prometheus-client 0.26 names a newer version in CONTENT_TYPE_LATEST, but
# generate_latest() writes the classic text format, which is version 0.0.4
# and which every Prometheus 2.x server parses.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Health:
    """The state /healthz reports: starting until the spool is recovered and the listeners are up, then ready, then draining."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"

    def __init__(self) -> None:
        self.state = self.STARTING

    @property
    def ok(self) -> bool:
        return self.state == self.READY


def create_app(
    health: Health,
    spool: Spool,
    scheduler: Scheduler,
    outbox: OutboxStore | None = None,
    suppressions: SuppressionList | None = None,
    destinations: DestinationHealth | None = None,
) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": health.state}, status=200 if health.ok else 503)

    async def metrics_endpoint(request: web.Request) -> web.Response:
        # The queue gauges are read from the spool at scrape time: one
        # grouped count on a reader thread, never on the event loop.
        try:
            summary = await spool.summary()
        except sqlite3.Error as exc:
            log.warning("metrics_queue_read_failed", error=str(exc), detail="the queue gauges keep their previous values")
        else:
            metrics.set_queue(summary.pending, summary.messages, time.time())
        if outbox is not None:
            try:
                metrics.set_webhook_outbox(await outbox.count_events())
            except StateError as exc:
                log.warning("metrics_outbox_read_failed", error=str(exc), detail="the outbox gauge keeps its previous value")
        return web.Response(body=metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app = web.Application(middlewares=[control_guard])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_routes(QueueApi(spool, scheduler, health=destinations).routes())
    if suppressions is not None:
        app.router.add_routes(suppression_routes(suppressions))
    return app


class HttpServer:
    """Runs the application on one address; start() raises OSError when the address cannot be bound."""

    def __init__(self, listen: HostPort, app: web.Application):
        self.listen = listen
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.listen.host, self.listen.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        log.info("http_listening", address=str(self.listen))

    async def stop(self) -> None:
        await self._runner.cleanup()

