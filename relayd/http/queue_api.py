"""The queue control API that `relayd queue` calls: list, show, stats, retry and delete.

It can read envelopes and delete mail, so it is private to the host:
- it serves loopback clients only, whatever address `http.listen` binds;
- the Host header must be an IP address or "localhost", so a web page
  cannot reach it through DNS rebinding;
- requests that change the queue must send a JSON body, which a browser
  cannot do across origins without a CORS preflight that this API never
  grants.
"""

import ipaddress
import json
import time
from typing import Callable

import structlog
from aiohttp import web

from relayd import maillog
from relayd.delivery.health import DestinationHealth
from relayd.delivery.scheduler import Scheduler
from relayd.spool import PENDING_STATES, Spool
from relayd.spool.admin import QueuedMessage

log = structlog.get_logger("relayd.http")

PREFIX = "/v1/queue"
# Every path of the control API, the queue's and the suppression list's.
CONTROL_PREFIX = "/v1/"
# new_queue_id() writes 19 upper-case hexadecimal digits.
QUEUE_ID = "[0-9A-F]{13,40}"
MAX_LIMIT = 10_000


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_local_host_header(host: str | None) -> bool:
    """Return True when a Host header names an IP address or localhost, with or without a port."""
    if not host:
        return False
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    if name.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@web.middleware
async def control_guard(request: web.Request, handler):
    if not request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    if not is_loopback(request.remote):
        return json_error(403, "the control API answers loopback clients only")
    if not is_local_host_header(request.host):
        return json_error(403, "the Host header must be an IP address or localhost")
    if request.method != "GET" and request.content_type != "application/json":
        return json_error(415, "send a JSON body (Content-Type: application/json)")
    return await handler(request)


def message_json(queued: QueuedMessage, now: float) -> dict:
    message = queued.message
    return {
        "queue_id": message.queue_id,
        "sender": message.sender,
        "received_at": message.received_at,
        "age": round(now - message.received_at, 3),
        "size": message.size,
        "class": message.message_class,
        "client": message.client,
        "smtputf8": message.smtputf8,
        "body_8bit": message.body_8bit,
        "recipients": [
            {
                "address": r.address,
                "domain": r.domain,
                "state": r.state,
                "attempts": r.attempts,
                "next_attempt": r.next_attempt,
                "last_reply": r.last_reply,
                "last_host": r.last_host,
            }
            for r in queued.recipients
        ],
    }


class QueueApi:
    """Handlers that read the spool and change it together with the schedule."""

    def __init__(
        self,
        spool: Spool,
        scheduler: Scheduler,
        clock: Callable[[], float] = time.time,
        health: DestinationHealth | None = None,
    ):
        self.spool = spool
        self.scheduler = scheduler
        self.clock = clock
        self.health = health

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(PREFIX, self.list),
            web.get(f"{PREFIX}/stats", self.stats),
            web.post(f"{PREFIX}/retry", self.retry),
            web.get(f"{PREFIX}/{{queue_id:{QUEUE_ID}}}", self.show),
            web.post(f"{PREFIX}/{{queue_id:{QUEUE_ID}}}/retry", self.retry),
            web.delete(f"{PREFIX}/{{queue_id:{QUEUE_ID}}}", self.delete),
        ]

    async def list(self, request: web.Request) -> web.Response:
        state = request.query.get("state") or None
        if state is not None and state not in PENDING_STATES:
            return json_error(400, f"invalid state {state!r}; expected one of: {', '.join(PENDING_STATES)}")
        domain = (request.query.get("domain") or "").strip().lower() or None
        try:
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_LIMIT:
            return json_error(400, f"invalid limit; expected an integer from 1 to {MAX_LIMIT}")

        messages, total = await self.spool.list_messages(state=state, domain=domain, limit=limit)
        now = self.clock()
        return web.json_response({"total": total, "messages": [message_json(m, now) for m in messages]})

    async def show(self, request: web.Request) -> web.Response:
        queue_id = request.match_info["queue_id"]
        queued = await self.spool.message(queue_id)
        if queued is None:
            return json_error(404, f"no message {queue_id} in the queue")
        return web.json_response(message_json(queued, self.clock()))

    async def stats(self, request: web.Request) -> web.Response:
        summary = await self.spool.summary()
        now = self.clock()
        classes: dict[str, dict] = {}
        for message_class, (count, oldest) in summary.messages.items():
            classes[message_class] = {"messages": count, "oldest_age": round(now - oldest, 3), **dict.fromkeys(PENDING_STATES, 0)}
        for (state, message_class), count in summary.pending.items():
            classes.setdefault(message_class, {"messages": 0, "oldest_age": 0.0, **dict.fromkeys(PENDING_STATES, 0)})[state] = count
        return web.json_response(
            {
                "messages": sum(c["messages"] for c in classes.values()),
                "recipients": {state: sum(c[state] for c in classes.values()) for state in PENDING_STATES},
                "oldest_age": max((c["oldest_age"] for c in classes.values()), default=0.0),
                "scheduled": len(self.scheduler),
                "classes": classes,
            }
        )

    async def retry(self, request: web.Request) -> web.Response:
        """Make deferred recipients due now, in the spool (which survives a restart) and in the schedule."""
        queue_id = request.match_info.get("queue_id")
        if queue_id is not None and await self.spool.message(queue_id) is None:
            return json_error(404, f"no message {queue_id} in the queue")

        now = self.clock()
        pairs = await self.spool.bring_forward(queue_id, now)
        self.scheduler.bring_forward(queue_id)
        # A job the schedule does not hold (it was running, say) is added;
        # schedule() ignores those it already has.
        for pair_queue_id, domain in pairs:
            self.scheduler.schedule(pair_queue_id, domain, now)

        messages = len({pair[0] for pair in pairs})
        domains = sorted({pair[1] for pair in pairs})
        # A paused destination keeps its pause: retrying a host that keeps
        # failing would only fail again, and the reply names such domains.
        paused = [
            {"domain": domain, "until": until}
            for domain in domains
            if self.health is not None and (until := self.health.paused_until(domain)) is not None
        ]
        log.info("queue_retry", queue_id=queue_id or "all", messages=messages, domains=len(domains), paused=len(paused))
        return web.json_response({"queue_id": queue_id, "messages": messages, "domains": len(domains), "paused": paused})

    async def delete(self, request: web.Request) -> web.Response:
        queue_id = request.match_info["queue_id"]
        deleted = await self.spool.delete(queue_id)
        if deleted is None:
            return json_error(404, f"no message {queue_id} in the queue")
        self.scheduler.remove(queue_id)
        pending = [r.address for r in deleted.recipients if r.state in PENDING_STATES]
        maillog.deleted(queue_id=queue_id, sender=deleted.message.sender, recipients=pending)
        return web.json_response({"queue_id": queue_id, "recipients": pending})
