"""The HTTP client that sends webhook requests, with aiohttp.

aiohttp and OSError exceptions end here: a request that gets no HTTP
response raises WebhookError, and any response becomes its status code.
"""

import asyncio
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp

USER_AGENT = "relayd-webhooks/0.1"

# Enough of a response body to keep the connection reusable; relayd ignores
# the body itself.
MAX_RESPONSE_BODY = 64 * 1024


class WebhookError(Exception):
    """A request that got no HTTP response: refused, reset, timed out or failed in TLS."""


class Transport(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, float | None]:
        """Send one request; return the status code and the Retry-After seconds, if any; raise WebhookError."""

    async def close(self) -> None: ...


class HttpTransport:
    """One aiohttp session, with at most `max_connections` connections open at once."""

    def __init__(self, max_connections: int):
        self._max_connections = max_connections
        self._session: "aiohttp.ClientSession | None" = None

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, float | None]:
        # Imported on first use: aiohttp is about a third of the time that
        # importing relayd.daemon takes (python -X importtime), and a relay
        # without webhooks need not pay it.
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector, headers={"user-agent": USER_AGENT})
        try:
            # Standard Webhooks: a redirect is a failure, and the URL should
            # be fixed instead, so redirects are not followed.
            async with self._session.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
            ) as response:
                await response.content.read(MAX_RESPONSE_BODY)
                return response.status, _retry_after(response.headers.get("retry-after"))
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise WebhookError(f"timed out after {timeout:g}s without a response") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise WebhookError(f"request failed: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def redact_url(url: str) -> str:
    """Return `url` without user info and query, the parts that may carry a token, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _retry_after(value: str | None) -> float | None:
    """Return the seconds of a Retry-After header (RFC 9110 10.2.3); the HTTP-date form is ignored."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())
