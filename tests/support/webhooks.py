"""A webhook receiver for tests: an aiohttp server on loopback that checks every signature.

It verifies the Standard Webhooks signature with its own HMAC code (not
relayd's), records every request, and responds 204 to a valid one and 401
to one whose signature or timestamp is wrong. A test can stop() it to
simulate an outage and start() it again on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass

from aiohttp import web

from tests.support.sinks import free_tcp_port

# Standard Webhooks receivers reject timestamps further than this from their clock.
TIMESTAMP_TOLERANCE = 300


def new_secret() -> str:
    """Return a random secret in the "whsec_" + base64 form."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")


@dataclass(frozen=True)
class WebhookRequest:
    webhook_id: str
    timestamp: int
    body: bytes
    valid: bool
    arrival_time: float

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records the webhook requests it gets."""

    def __init__(self, secret: str, host: str = "127.0.0.1"):
        self.host = host
        self.port = free_tcp_port(host)
        self.secret = secret
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        # The status a valid request gets; a test may set 500 to refuse events.
        self.status = 204
        # Seconds to wait before responding, to play a slow endpoint.
        self.delay = 0.0
        self._requests: list[WebhookRequest] = []
        self._lock = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks"

    def start(self) -> WebhookReceiver:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def requests(self) -> list[WebhookRequest]:
        with self._lock:
            return list(self._requests)

    def unique(self) -> dict[str, WebhookRequest]:
        """Return the first valid request per webhook-id, as a receiver that dedupes keeps them."""
        first: dict[str, WebhookRequest] = {}
        for request in self.requests:
            if request.valid:
                first.setdefault(request.webhook_id, request)
        return first

    def wait_until(self, condition, timeout: float = 20.0, description: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"webhook receiver: {description} not met within {timeout}s; got {len(self._requests)} requests")
                self._lock.wait(min(remaining, 0.1))

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        timestamp_text = request.headers.get("webhook-timestamp", "")
        timestamp = int(timestamp_text) if timestamp_text.isdigit() else 0
        valid = self._verify(webhook_id, timestamp_text, body, request.headers.get("webhook-signature", ""))
        valid = valid and abs(time.time() - timestamp) <= TIMESTAMP_TOLERANCE
        with self._lock:
            self._requests.append(WebhookRequest(webhook_id, timestamp, body, valid, time.time()))
            self._lock.notify_all()
        if self.delay:
            await asyncio.sleep(self.delay)
        if not valid:
            return web.Response(status=401, text="invalid signature")
        return web.Response(status=self.status)

    def _verify(self, webhook_id: str, timestamp: str, body: bytes, header: str) -> bool:
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest()).decode()
        # The header is a space-separated list of "version,signature".
        for candidate in header.split():
            version, _, value = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                return True
        return False
