"""The load generator: an SMTP client that submits numbered messages and times each one.

It speaks SMTP on asyncio streams rather than through aiosmtplib for two
reasons. The accept latency runs from the moment the final dot is written,
which aiosmtplib's data() does not expose. And a lean client leaves more of
a small machine's CPU to the MTA under test.

Every message carries `X-Bench-Id`, which the sink records on arrival, and
`X-Relayd-Class`, the header relayd's class rules read.
"""

import asyncio
import itertools
import time
from dataclasses import dataclass
from functools import lru_cache

SENDER = "bench@sender.test"
DOMAIN = "dest.test"
ID_HEADER = "X-Bench-Id"
CLASS_HEADER = "X-Relayd-Class"

# A reply not received within this many seconds fails the message and
# closes its session; a later message opens a new one.
REPLY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Submission:
    """One message's submission. Times are time.monotonic(), which all processes of the host share."""

    bench_id: str
    message_class: str
    # When MAIL FROM was written: the start of the end-to-end latency.
    submitted: float
    # When the final dot was written and when its reply arrived: the accept latency.
    dot_sent: float
    replied: float
    code: int
    reply: str

    @property
    def accepted(self) -> bool:
        return self.code == 250

    @property
    def accept_latency(self) -> float:
        return self.replied - self.dot_sent


class SmtpError(Exception):
    """The server replied with an unexpected code, or the connection failed."""

    def __init__(self, code: int, text: str):
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


@lru_cache(maxsize=8)
def _body(size: int) -> bytes:
    """Return a body of `size` octets in 78-octet lines, none starting with a dot."""
    line = b"The quick brown fox jumps over the lazy dog; relayd benchmark filler text.\r\n"
    count = max(1, size // len(line))
    return line * count


def build_message(bench_id: str, message_class: str, size: int) -> bytes:
    """Return a message of about `size` octets with the benchmark headers, ready for DATA (dot-stuffed)."""
    header = (
        f"From: Benchmark <{SENDER}>\r\n"
        f"To: <user@{DOMAIN}>\r\n"
        f"Subject: relayd benchmark {bench_id}\r\n"
        f"Message-ID: <{bench_id}@bench.test>\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        f"{ID_HEADER}: {bench_id}\r\n"
        f"{CLASS_HEADER}: {message_class}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode("ascii")
    return header + _body(max(0, size - len(header)))


class SmtpClient:
    """One SMTP session to the MTA under test."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.pipelining = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Connect, read the 220 greeting and send EHLO; raise SmtpError or OSError."""
        async with asyncio.timeout(REPLY_TIMEOUT):
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            await self._expect(220)
            self._writer.write(b"EHLO loadgen.bench.test\r\n")
            lines = await self._expect(250)
        self.pipelining = any(line[4:].upper().startswith("PIPELINING") for line in lines)

    async def send(self, bench_id: str, message_class: str, recipient: str, content: bytes) -> Submission:
        """Run one transaction; a refusal is recorded in the returned Submission, a broken connection raises."""
        commands = [b"MAIL FROM:<%s>\r\n" % SENDER.encode(), b"RCPT TO:<%s>\r\n" % recipient.encode(), b"DATA\r\n"]
        expected = (250, 250, 354)
        submitted = time.monotonic()
        async with asyncio.timeout(REPLY_TIMEOUT):
            failure = await self._envelope(commands, expected)
            if failure is not None:
                now = time.monotonic()
                return Submission(bench_id, message_class, submitted, now, now, failure.code, failure.text)
            self._writer.write(content)
            self._writer.write(b".\r\n")
            dot_sent = time.monotonic()
            code, text = await self._reply()
        return Submission(bench_id, message_class, submitted, dot_sent, time.monotonic(), code, text)

    async def _envelope(self, commands: list[bytes], expected: tuple[int, ...]) -> SmtpError | None:
        """Send MAIL, RCPT and DATA (in one write under PIPELINING); return the first refusal, after RSET."""
        if self.pipelining:
            self._writer.write(b"".join(commands))
            replies = [await self._reply() for _ in commands]
        else:
            replies = []
            for command, code in zip(commands, expected):
                self._writer.write(command)
                replies.append(await self._reply())
                if replies[-1][0] != code:
                    break
        for (code, text), wanted in zip(replies, expected):
            if code != wanted:
                self._writer.write(b"RSET\r\n")
                await self._reply()
                return SmtpError(code, text)
        return None

    async def close(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.write(b"QUIT\r\n")
            async with asyncio.timeout(5):
                await self._reply()
        except (OSError, SmtpError, TimeoutError):
            pass
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass
        self._writer = None

    async def _expect(self, code: int) -> list[str]:
        lines = await self._lines()
        if int(lines[-1][:3]) != code:
            raise SmtpError(int(lines[-1][:3]), lines[-1][4:])
        return lines

    async def _reply(self) -> tuple[int, str]:
        lines = await self._lines()
        return int(lines[-1][:3]), lines[-1][4:]

    async def _lines(self) -> list[str]:
        """Read one reply: lines "NNN-text" up to the last one, "NNN text" (RFC 5321 4.2.1)."""
        lines = []
        while True:
            raw = await self._reader.readline()
            if not raw:
                raise SmtpError(0, "connection closed by the server")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if line[3:4] != "-":
                return lines


@dataclass
class Load:
    """A load to submit: `count` messages of `size` octets over `sessions` sessions.

    With `rate` set, message n is due at start + n / rate (an open loop: the
    schedule does not wait for replies). Without it, every session sends its
    next message as soon as the reply to the previous one arrives (a closed loop).
    No message starts after `time_limit` seconds.
    """

    prefix: str
    count: int
    sessions: int
    size: int = 1024
    message_class: str = "transactional"
    rate: float | None = None
    time_limit: float = 300.0


async def run_load(host: str, port: int, load: Load) -> list[Submission]:
    """Submit `load` to host:port and return one Submission per message started."""
    numbers = itertools.count()
    results: list[Submission] = []
    start = time.monotonic()
    stop_at = start + load.time_limit

    async def session() -> None:
        client: SmtpClient | None = None
        try:
            for index in numbers:
                if index >= load.count or time.monotonic() >= stop_at:
                    return
                if load.rate is not None:
                    await asyncio.sleep(max(0.0, start + index / load.rate - time.monotonic()))
                bench_id = f"{load.prefix}-{index}"
                content = build_message(bench_id, load.message_class, load.size)
                try:
                    if client is None:
                        client = SmtpClient(host, port)
                        await client.connect()
                    results.append(await client.send(bench_id, load.message_class, f"u{index}@{DOMAIN}", content))
                except (OSError, SmtpError, TimeoutError) as exc:
                    # The session is unusable: the message counts as refused, and
                    # the next one opens a new session.
                    now = time.monotonic()
                    code = exc.code if isinstance(exc, SmtpError) else 0
                    results.append(Submission(bench_id, load.message_class, now, now, now, code, str(exc) or type(exc).__name__))
                    if client is not None:
                        await client.close()
                    client = None
                    await asyncio.sleep(0.05)
        finally:
            if client is not None:
                await client.close()

    await asyncio.gather(*(session() for _ in range(load.sessions)))
    return results


async def time_to_accept(host: str, port: int, started: float, limit: float) -> float | None:
    """Return the seconds from `started` until host:port completes a transaction with 250, or None after `limit`.

    Connection failures and refusals are retried every 10 ms, as a client
    waiting for a restarting relay would.
    """
    content = build_message("restart-probe", "transactional", 1024)
    while time.monotonic() - started < limit:
        client = SmtpClient(host, port)
        try:
            await client.connect()
            result = await client.send("restart-probe", "transactional", f"probe@{DOMAIN}", content)
            if result.accepted:
                return time.monotonic() - started
        except (OSError, SmtpError, TimeoutError):
            pass
        finally:
            await client.close()
        await asyncio.sleep(0.01)
    return None
