"""The destination of the benchmark: an aiosmtpd server in its own process that records arrivals.

It runs apart from the load generator so that each has its own CPU
accounting. For every message it accepts it appends "bench-id time size" to
the output file. The time is time.monotonic() when the 250 reply to the
final dot is sent. With `--delay` it waits that long before that reply, as
a slow receiving server does.

Run as `python -m bench.sink --port PORT --output FILE [--delay SECONDS]`;
it prints "ready" once it listens and stops on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP

ID_PATTERN = re.compile(rb"\r\nX-Bench-Id: ([^\r\n]+)\r\n")
# The id header is written among the first fields; the MTAs put only a few
# trace fields above it.
HEADER_SCAN = 16384
FLUSH_INTERVAL = 0.1
START_TIMEOUT = 10.0


class ArrivalRecorder:
    """aiosmtpd handler that accepts every message and records when it arrived."""

    def __init__(self, output, delay: float):
        self.output = output
        self.delay = delay
        self.pending: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        content = envelope.original_content or b""
        if self.delay:
            await asyncio.sleep(self.delay)
        found = ID_PATTERN.search(content, 0, HEADER_SCAN)
        bench_id = found.group(1).decode("ascii", "replace") if found else "-"
        self.pending.append(f"{bench_id} {time.monotonic():.6f} {len(content)}\n")
        return "250 2.0.0 Ok: recorded"

    def flush(self) -> None:
        if self.pending:
            self.output.write("".join(self.pending))
            self.output.flush()
            self.pending.clear()


async def serve(host: str, port: int, output_path: Path, delay: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    with open(output_path, "a", encoding="ascii") as output:
        recorder = ArrivalRecorder(output, delay)
        # An explicit hostname: aiosmtpd would otherwise call socket.getfqdn(),
        # which can query DNS.
        server = await loop.create_server(
            lambda: SMTP(recorder, hostname="sink.bench.test", decode_data=False, data_size_limit=64 * 1024 * 1024),
            host=host,
            port=port,
            reuse_address=True,
        )
        print("ready", flush=True)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL)
            except TimeoutError:
                pass
            recorder.flush()
        server.close()
        recorder.flush()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description="Benchmark sink that records arrival times.")
    parser.add_argument("--host", default="127.0.0.1", help="listening address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="listening TCP port")
    parser.add_argument("--output", type=Path, required=True, help="file to append arrival records to")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before replying to the final dot")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.output, args.delay))


class SinkProcess:
    """Runs the sink in a child process and reads its arrival records back."""

    def __init__(self, directory: Path, port: int, delay: float = 0.0):
        self.port = port
        self.delay = delay
        self.output = Path(directory) / f"arrivals-{port}.txt"
        self.output.touch()
        self.process: subprocess.Popen | None = None
        self._offset = 0
        self._arrivals: dict[str, float] = {}
        # Messages that arrived more than once: none should.
        self.duplicates = 0

    def start(self) -> "SinkProcess":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.sink", "--port", str(self.port), "--output", str(self.output), "--delay", str(self.delay)],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        line = _read_line(self.process, START_TIMEOUT)
        if line != "ready":
            self.stop()
            raise RuntimeError(f"the sink on port {self.port} did not start (output {line!r})")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.process = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def arrivals(self) -> dict[str, float]:
        """Return bench id → arrival time for every message recorded so far."""
        with open(self.output, "rb") as records:
            records.seek(self._offset)
            data = records.read()
        # A record is complete only with its newline; the rest is read next time.
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode("ascii").splitlines():
            bench_id, arrived, _ = line.split(" ")
            if bench_id in self._arrivals:
                self.duplicates += 1
            else:
                self._arrivals[bench_id] = float(arrived)
        return self._arrivals

    def wait_for(self, bench_ids: set[str], timeout: float) -> dict[str, float]:
        """Poll until every id in `bench_ids` has arrived or `timeout` seconds pass; return all arrivals."""
        deadline = time.monotonic() + timeout
        while True:
            arrived = self.arrivals()
            if bench_ids.issubset(arrived) or time.monotonic() >= deadline:
                return arrived
            time.sleep(0.05)


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """Return the first line `process` prints, or "" when it prints none within `timeout` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().decode("ascii", "replace").strip()


if __name__ == "__main__":
    main()
