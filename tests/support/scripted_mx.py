"""A destination SMTP server driven by a script: for each stage, a reply or a fault.

Each test gives the reply (single or multi-line) or the fault (no answer,
dropped connection) for every stage of the dialogue, and reads back what
actually reached the server. It speaks just enough SMTP for a client like
relayd's courier; it is not a mail server.
"""

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field

# Stages a script can name. "data" is the reply to the DATA command and
# "dot" the reply after the final dot.
STAGES = ("greeting", "ehlo", "helo", "starttls", "mail", "rcpt", "data", "dot", "rset")
TIMEOUT = "timeout"
DISCONNECT = "disconnect"


def delayed(seconds: float, reply: str) -> str:
    """Return an action that waits `seconds` before sending `reply`, like a slow server."""
    return f"delay:{seconds}:{reply}"


def _reply_of(action: str) -> str:
    """Return the reply an action ends with, without a delay prefix."""
    return action.split(":", 2)[2] if action.startswith("delay:") else action

DEFAULT_REPLIES = {
    "greeting": "220 mx.test ESMTP scripted",
    "helo": "250 mx.test",
    "starttls": "220 2.0.0 Ready to start TLS",
    "mail": "250 2.1.0 Ok",
    "rcpt": "250 2.1.5 Ok",
    "data": "354 End data with <CR><LF>.<CR><LF>",
    "dot": "250 2.0.0 Ok: queued",
    "rset": "250 2.0.0 Ok",
}


@dataclass
class Transaction:
    """What one MAIL ... final dot sequence delivered, as the server saw it."""

    sender: str
    recipients: list[str] = field(default_factory=list)
    content: bytes = b""
    completed: bool = False


@dataclass
class Script:
    """Replies by stage; `rcpt` maps local parts to replies; a list gives one action per use.

    An action is a reply ("250 ok", multi-line with "\\n" between lines),
    TIMEOUT (read the command and never answer) or DISCONNECT (close the
    connection when the command arrives).
    """

    replies: dict = field(default_factory=dict)
    rcpt: dict = field(default_factory=dict)
    extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME", "SIZE 50000000", "ENHANCEDSTATUSCODES")
    tls_context: ssl.SSLContext | None = None
    # Offer STARTTLS, accept it with 220, then send bytes that are not a TLS handshake.
    broken_tls: bool = False


class ScriptedMX:
    """Runs in its own thread and event loop on `host`:`port`."""

    def __init__(self, host: str, port: int, script: Script | None = None):
        self.host = host
        self.port = port
        self.script = script or Script()
        self.transactions: list[Transaction] = []
        self.commands: list[str] = []
        self.connections = 0
        self.open_connections = 0
        self.max_open_connections = 0
        self._uses: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = None

    def start(self) -> "ScriptedMX":
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, self.host, self.port), self._loop
        )
        self._server = future.result(10)
        return self

    def stop(self) -> None:
        async def close():
            self._server.close()
            # End sessions still open, so none is left for a stopped loop.
            sessions = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in sessions:
                task.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def delivered(self) -> list[Transaction]:
        with self._lock:
            return [t for t in self.transactions if t.completed]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Transaction]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.delivered()
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise TimeoutError(f"{len(self.delivered())} of {count} transactions completed at {self.host}")

    def _action(self, stage: str, address: str | None = None) -> str:
        with self._lock:
            local = address.split("@")[0].lower() if address else None
            if stage == "rcpt" and local in self.script.rcpt:
                chosen = self.script.rcpt[local]
                key = f"rcpt:{local}"
            else:
                chosen = self.script.replies.get(stage, DEFAULT_REPLIES.get(stage))
                key = stage
            if isinstance(chosen, list):
                index = self._uses.get(key, 0)
                self._uses[key] = index + 1
                chosen = chosen[min(index, len(chosen) - 1)]
            return chosen

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
            self.open_connections += 1
            self.max_open_connections = max(self.max_open_connections, self.open_connections)
        try:
            await self._dialogue(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            with self._lock:
                self.open_connections -= 1
            writer.close()

    async def _answer(self, writer, reader, action: str) -> bool:
        """Carry out `action`; return False when the session must end."""
        if action == DISCONNECT:
            writer.transport.abort()
            return False
        if action.startswith("delay:"):
            _, seconds, action = action.split(":", 2)
            await asyncio.sleep(float(seconds))
        if action == TIMEOUT:
            # Hold the connection open without answering until the client gives up.
            await reader.read()
            return False
        lines = action.split("\n")
        code = lines[-1][:3]
        text = "".join(f"{code}-{line[4:]}\r\n" for line in lines[:-1]) + lines[-1] + "\r\n"
        writer.write(text.encode())
        await writer.drain()
        return True

    async def _dialogue(self, reader, writer) -> None:
        greeting = self._action("greeting")
        if not await self._answer(writer, reader, greeting) or not greeting.startswith("2"):
            return
        transaction = None
        while True:
            line = await reader.readline()
            if not line:
                return
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            with self._lock:
                self.commands.append(command)

            if verb == "EHLO":
                action = self._action("ehlo") or "250-mx.test\n" + "\n".join(f"250 {e}" for e in self._extensions())
                if not await self._answer(writer, reader, action):
                    return
            elif verb == "HELO":
                if not await self._answer(writer, reader, self._action("helo")):
                    return
            elif verb == "STARTTLS":
                action = self._action("starttls")
                if not await self._answer(writer, reader, action):
                    return
                if action.startswith("220") and self.script.broken_tls:
                    writer.write(b"this is not a TLS record\r\n" * 4)
                    await writer.drain()
                    writer.transport.abort()
                    return
                if action.startswith("220"):
                    await writer.start_tls(self.script.tls_context)
            elif verb == "MAIL":
                action = self._action("mail")
                if _reply_of(action).startswith("250"):
                    transaction = Transaction(sender=_path(command))
                if not await self._answer(writer, reader, action):
                    return
            elif verb == "RCPT":
                address = _path(command)
                action = self._action("rcpt", address)
                if _reply_of(action).startswith("25") and transaction is not None:
                    transaction.recipients.append(address)
                if not await self._answer(writer, reader, action):
                    return
            elif verb == "DATA":
                action = self._action("data")
                if not await self._answer(writer, reader, action):
                    return
                if not _reply_of(action).startswith("354"):
                    continue
                content = await _read_data(reader)
                action = self._action("dot")
                if transaction is not None:
                    transaction.content = content
                    with self._lock:
                        self.transactions.append(transaction)
                    transaction.completed = _reply_of(action).startswith("250")
                    transaction = None
                if not await self._answer(writer, reader, action):
                    return
            elif verb == "RSET":
                transaction = None
                if not await self._answer(writer, reader, self._action("rset")):
                    return
            elif verb == "QUIT":
                await self._answer(writer, reader, "221 2.0.0 Bye")
                return
            else:
                await self._answer(writer, reader, "502 5.5.1 Command not implemented")

    def _extensions(self) -> list[str]:
        extensions = list(self.script.extensions)
        offers_tls = self.script.tls_context is not None or self.script.broken_tls
        if offers_tls and "STARTTLS" not in extensions:
            extensions.append("STARTTLS")
        return extensions


def _path(command: str) -> str:
    start, end = command.find("<"), command.find(">")
    return command[start + 1 : end] if 0 <= start < end else command.split(":", 1)[-1].strip()


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while True:
        line = await reader.readline()
        if not line or line == b".\r\n":
            break
        lines.append(line[1:] if line.startswith(b".") else line)
    return b"".join(lines)
