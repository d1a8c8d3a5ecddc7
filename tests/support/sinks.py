"""Destination SMTP servers for tests, each listening on a loopback address.

RecordingSink is an aiosmtpd server that records every accepted transaction
and whose replies a test can script. PostfixSink runs Postfix's smtp-sink and
reads back its dump files, for a second, independent SMTP implementation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

SMTP_SINK = "/usr/sbin/smtp-sink"
DATA_SIZE_LIMIT = 64 * 1024 * 1024
START_TIMEOUT = 10.0


def free_tcp_port(*hosts: str) -> int:
    """Return a TCP port that is free on every one of `hosts` right now.

    Another process can still take it before the caller binds it.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
            if all(_tcp_port_is_free(host, port) for host in hosts[1:]):
                return port
    raise RuntimeError(f"no TCP port free on all of {hosts} found")


def _tcp_port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _reply_code(reply: str) -> int:
    code = reply[:3]
    if len(reply) < 3 or not code.isdigit() or reply[3:4] not in ("", " ", "-"):
        raise ValueError(f"invalid SMTP reply {reply!r}: must start with a 3-digit code")
    return int(code)


def _is_positive(reply: str) -> bool:
    return 200 <= _reply_code(reply) < 300


@dataclass(frozen=True)
class SmtpScript:
    """Reply overrides for a RecordingSink. None means the normal reply.

    greeting: sent instead of the 220 greeting, then the server closes the connection.
    mail: reply to every MAIL command.
    rcpt: reply per recipient address, matched case-insensitively.
    rcpt_default: reply to every recipient not in `rcpt`.
    data: reply after the end of DATA. The message is recorded only if it is 2xx.
    data_delay: seconds to wait before that reply, as a slow destination does.
    """

    greeting: str | None = None
    mail: str | None = None
    rcpt: Mapping[str, str] = field(default_factory=dict)
    rcpt_default: str | None = None
    data: str | None = None
    data_delay: float = 0.0

    def __post_init__(self) -> None:
        replies = [self.greeting, self.mail, self.rcpt_default, self.data, *self.rcpt.values()]
        for reply in replies:
            if reply is not None:
                _reply_code(reply)
        object.__setattr__(self, "rcpt", {address.lower(): reply for address, reply in self.rcpt.items()})

    def rcpt_reply(self, address: str) -> str | None:
        return self.rcpt.get(address.lower(), self.rcpt_default)


@dataclass(frozen=True)
class ReceivedMessage:
    """One transaction that a sink accepted at the end of DATA."""

    # "<>" for the null reverse-path, as aiosmtpd 1.4.6 reports it.
    mail_from: str
    rcpt_tos: tuple[str, ...]
    # The message as received after dot-unstuffing, CRLF line endings included.
    content: bytes
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()
    helo: str | None = None
    # (address, port) from aiosmtpd, or (address, None) from smtp-sink, which records no port.
    peer: tuple | None = None
    # time.time() when the sink accepted the message.
    arrival_time: float = 0.0


@dataclass(frozen=True)
class SmtpEvent:
    """A MAIL, RCPT or DATA command that a RecordingSink replied to."""

    time: float
    command: str
    # The address for MAIL and RCPT, None for DATA.
    address: str | None
    reply: str


class _RecordingHandler:
    """aiosmtpd handler that applies the sink's script and records the results."""

    def __init__(self, sink: RecordingSink) -> None:
        self._sink = sink

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]) -> str:
        reply = self._sink.script.mail or "250 2.1.0 OK"
        if _is_positive(reply):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        self._sink._record_event("MAIL", address, reply)
        return reply

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        reply = self._sink.script.rcpt_reply(address) or "250 2.1.5 OK"
        if _is_positive(reply):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        self._sink._record_event("RCPT", address, reply)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink.script.data_delay:
            await asyncio.sleep(self._sink.script.data_delay)
        reply = self._sink.script.data or "250 2.0.0 OK"
        if _is_positive(reply):
            message = ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=bytes(envelope.original_content),
                mail_options=tuple(envelope.mail_options),
                rcpt_options=tuple(envelope.rcpt_options),
                helo=session.host_name,
                peer=session.peer,
                arrival_time=time.time(),
            )
            self._sink._record_message(message)
        self._sink._record_event("DATA", None, reply)
        return reply


class _ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP with a scriptable greeting."""

    def __init__(self, handler: _RecordingHandler, sink: RecordingSink, **kwargs) -> None:
        super().__init__(handler, **kwargs)
        self._sink = sink

    # NOTE: overrides a private aiosmtpd method (checked against 1.4.6), because
    # the 220 greeting is sent from inside it and no hook can replace it.
    async def _handle_client(self) -> None:
        greeting = self._sink.script.greeting
        if greeting is None:
            await super()._handle_client()
            return
        await self.push(greeting)
        self.transport.close()


class RecordingSink:
    """An aiosmtpd ESMTP server on `host`:`port` that records what it accepts.

    It announces 8BITMIME, SMTPUTF8 and SIZE 64 MiB, and keeps the message
    bytes undecoded. Replies follow `script`, which a test may replace at any
    time, and the new script applies from the next command on. A test can
    stop() and start() the sink again to simulate an outage, and the records
    stay.
    NOTE: aiosmtpd 1.4.6 replies 555 to any RCPT parameter (such as DSN's
    NOTIFY) and to MAIL parameters other than SIZE, BODY and SMTPUTF8.
    """

    def __init__(self, host: str, port: int, script: SmtpScript | None = None, hostname: str | None = None) -> None:
        self.host = host
        self.port = port
        # An explicit name, because aiosmtpd otherwise calls socket.getfqdn(),
        # which can send a DNS query to the system resolver.
        self.hostname = hostname or f"sink-{host}.test"
        self._script = script or SmtpScript()
        self._lock = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._events: list[SmtpEvent] = []
        self._controller: Controller | None = None

    @property
    def script(self) -> SmtpScript:
        return self._script

    @script.setter
    def script(self, script: SmtpScript) -> None:
        self._script = script

    def update_script(self, **changes) -> SmtpScript:
        """Replace some fields of the current script and return the new script."""
        self._script = dataclasses.replace(self._script, **changes)
        return self._script

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the accepted messages, in arrival order."""
        with self._lock:
            return list(self._messages)

    @property
    def events(self) -> list[SmtpEvent]:
        """A snapshot of the MAIL, RCPT and DATA replies sent, in order."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._events.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until at least `count` messages have arrived, and return them.

        Raises TimeoutError after `timeout` seconds.
        """
        with self._lock:
            arrived = self._lock.wait_for(lambda: len(self._messages) >= count, timeout)
            if not arrived:
                raise TimeoutError(
                    f"{self.host}:{self.port} received {len(self._messages)} of {count} messages in {timeout} s"
                )
            return list(self._messages)

    def start(self) -> RecordingSink:
        if self._controller is not None:
            raise RuntimeError(f"RecordingSink {self.host}:{self.port} is already running")
        controller = _SinkController(self)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> RecordingSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record_message(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()

    def _record_event(self, command: str, address: str | None, reply: str) -> None:
        with self._lock:
            self._events.append(SmtpEvent(time.time(), command, address, reply))


class _SinkController(Controller):
    def __init__(self, sink: RecordingSink) -> None:
        super().__init__(
            _RecordingHandler(sink),
            hostname=sink.host,
            port=sink.port,
            ready_timeout=START_TIMEOUT,
        )
        self._sink = sink

    def factory(self) -> SMTP:
        return _ScriptedSMTP(
            self.handler,
            self._sink,
            hostname=self._sink.hostname,
            decode_data=False,
            enable_SMTPUTF8=True,
            data_size_limit=DATA_SIZE_LIMIT,
        )


def _terminate(process: subprocess.Popen) -> None:
    """Stop `process` with SIGTERM, then SIGKILL if it has not exited within 5 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _split_path_args(text: str) -> tuple[str, list[str]]:
    """Split smtp-sink's "<address> PARAM ..." record into the address and the parameters."""
    if text.startswith("<>"):
        return "<>", text[2:].split()
    if text.startswith("<") and ">" in text:
        end = text.index(">")
        return text[1:end], text[end + 1 :].split()
    address, _, rest = text.partition(" ")
    return address, rest.split()


def parse_smtp_sink_dump(dump: bytes) -> ReceivedMessage:
    """Parse one smtp-sink -d dump file (Postfix 3.7) into a ReceivedMessage.

    smtp-sink writes X-Client-Addr, X-Client-Proto, X-Helo-Args (if the client
    sent HELO or EHLO), X-Mail-Args, one X-Rcpt-Args per accepted RCPT and a
    three-line Received header, then the message after dot-unstuffing with
    each line ending in a bare LF, then one empty line. This function drops
    that empty line, turns every LF back into CRLF and reports a null
    reverse-path as "<>", as RecordingSink does. NOTE: that gives the
    received bytes only for messages with CRLF line endings throughout,
    because smtp-sink also ends a line at a bare LF and drops a bare CR.
    """
    headers: dict[str, list[str]] = {}
    position = 0
    received_lines = 0
    while received_lines < 3:
        end = dump.index(b"\n", position)
        line = dump[position:end].decode("utf-8", errors="surrogateescape")
        position = end + 1
        if received_lines or line.startswith("Received:"):
            received_lines += 1
            continue
        name, _, value = line.partition(": ")
        headers.setdefault(name, []).append(value)

    mail_from, mail_options = _split_path_args(headers["X-Mail-Args"][0])
    rcpt_tos: list[str] = []
    rcpt_options: list[str] = []
    for record in headers.get("X-Rcpt-Args", []):
        address, options = _split_path_args(record)
        rcpt_tos.append(address)
        rcpt_options.extend(options)

    body = dump[position:]
    if not body.endswith(b"\n"):
        raise ValueError("incomplete smtp-sink dump: missing the final empty line")
    return ReceivedMessage(
        mail_from=mail_from,
        rcpt_tos=tuple(rcpt_tos),
        content=body[:-1].replace(b"\n", b"\r\n"),
        mail_options=tuple(mail_options),
        rcpt_options=tuple(rcpt_options),
        helo=headers.get("X-Helo-Args", [None])[0],
        peer=(headers["X-Client-Addr"][0], None),
    )


def _validate_commands(commands: tuple[str, ...] | list[str]) -> list[str]:
    for command in commands:
        if not command or any(character in command for character in " ,\t\r\n"):
            raise ValueError(f"invalid smtp-sink command name {command!r}: use names such as MAIL, RCPT, DATA or '.'")
    return list(commands)


def _has_listening_socket(pid: int) -> bool:
    """Return whether process `pid` has a TCP socket in the LISTEN state (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                columns = row.split()
                # Column 3 is the state, where 0A is LISTEN, and column 9 is the inode.
                if columns[3] == "0A" and columns[9] in inodes:
                    return True
    return False


class PostfixSink:
    """Postfix's smtp-sink on `host`:`port`, dumping each accepted message into `dump_dir`.

    The reject options take smtp-sink command names (CONNECT, HELO, EHLO, MAIL,
    RCPT, DATA, ".", RSET, NOOP, QUIT, ...) and apply to every use of them.
    hard_reject replies 500 5.3.0 (-f) and soft_reject 450 4.3.0 (-r), unless
    hard_reject_reply or soft_reject_reply set another reply (-B, -b). Both
    also turn off PIPELINING. disconnect closes the connection without a
    reply (-q), and disconnect_421 replies 421 and then closes it (-Q).
    """

    DUMP_PREFIX = "msg-"

    def __init__(
        self,
        host: str,
        port: int,
        dump_dir: str | Path,
        *,
        hard_reject: tuple[str, ...] = (),
        soft_reject: tuple[str, ...] = (),
        disconnect: tuple[str, ...] = (),
        disconnect_421: tuple[str, ...] = (),
        hard_reject_reply: str | None = None,
        soft_reject_reply: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.port = port
        # Absolute, so dump paths compare equal to the targets of /proc/PID/fd links.
        self.dump_dir = Path(dump_dir).resolve()
        self.log_path = self.dump_dir / "smtp-sink.log"
        self._options = self._build_options(
            hard_reject, soft_reject, disconnect, disconnect_421, hard_reject_reply, soft_reject_reply
        ) + list(extra_args)
        self._process: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None

    @staticmethod
    def _build_options(hard_reject, soft_reject, disconnect, disconnect_421, hard_reject_reply, soft_reject_reply) -> list[str]:
        options: list[str] = []
        for flag, commands in (("-f", hard_reject), ("-r", soft_reject), ("-q", disconnect), ("-Q", disconnect_421)):
            if commands:
                options += [flag, ",".join(_validate_commands(commands))]
        if hard_reject_reply is not None:
            _reply_code(hard_reject_reply)
            options += ["-B", hard_reject_reply]
        if soft_reject_reply is not None:
            _reply_code(soft_reject_reply)
            options += ["-b", soft_reject_reply]
        return options

    def command(self) -> list[str]:
        """Return the smtp-sink command line that start() runs."""
        template = str(self.dump_dir / self.DUMP_PREFIX).replace("%", "%%") + "%Y%m%d%H%M%S."
        privileges = ["-u", "root"] if os.geteuid() == 0 else []
        return [SMTP_SINK, *privileges, *self._options, "-d", template, f"{self.host}:{self.port}", "100"]

    def start(self) -> PostfixSink:
        if self._process is not None:
            raise RuntimeError(f"PostfixSink {self.host}:{self.port} is already running")
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._process = process
        self._finalizer = weakref.finalize(self, _terminate, process)
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._process = None

    def __enter__(self) -> PostfixSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_until_listening(self) -> None:
        # Checked in /proc rather than by connecting, because a connect can reach
        # another listener on the same port, and smtp-sink would count a session.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"smtp-sink exited with status {self._process.returncode}: {self.read_log()}")
            if _has_listening_socket(self._process.pid):
                return
            time.sleep(0.05)
        raise TimeoutError(f"smtp-sink did not listen on {self.host}:{self.port} within {START_TIMEOUT} s")

    def read_log(self) -> str:
        """Return smtp-sink's standard output and standard error."""
        try:
            return self.log_path.read_text(errors="replace").strip()
        except FileNotFoundError:
            return ""

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Parse the dumps of all completed transactions, in order of modification time.

        arrival_time is the dump file's modification time. NOTE: after stop(),
        a transaction that was in progress when smtp-sink ended is no longer
        told apart, so it may be listed with truncated content.
        """
        paths = list(self.dump_dir.glob(self.DUMP_PREFIX + "*"))
        # The directory is listed before the open files are read, so a
        # transaction that ends in between counts as complete, which it is.
        in_progress = self._open_paths()
        dumps = []
        for path in paths:
            if path in in_progress:
                continue
            try:
                modified_ns = path.stat().st_mtime_ns
                dump = path.read_bytes()
            except FileNotFoundError:
                continue
            dumps.append((modified_ns, path.name, dump))
        dumps.sort()
        return [
            dataclasses.replace(parse_smtp_sink_dump(dump), arrival_time=modified_ns / 1e9)
            for modified_ns, _, dump in dumps
        ]

    def _open_paths(self) -> set[Path]:
        """Return the dump files that smtp-sink still has open, which are transactions in progress.

        smtp-sink creates the file at the first accepted RCPT, appends while
        DATA arrives, closes it at the final "." and deletes it if the
        transaction is aborted (checked against Postfix 3.7).
        """
        if self._process is None:
            return set()
        fd_dir = Path(f"/proc/{self._process.pid}/fd")
        paths = set()
        for fd in fd_dir.iterdir():
            try:
                paths.add(Path(os.readlink(fd)))
            except OSError:
                continue
        return paths

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Poll until at least `count` messages are dumped, and return them.

        Raises TimeoutError after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages
            if len(messages) >= count:
                return messages
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.host}:{self.port} received {len(messages)} of {count} messages in {timeout} s"
                )
            time.sleep(0.05)
