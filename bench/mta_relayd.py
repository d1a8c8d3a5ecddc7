"""relayd under test: `relayd serve` with a generated config, its spool in a temporary directory."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import procstat
from bench.ports import free_ports

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

CONFIG_TEMPLATE = """\
# Written by the benchmark: everything on loopback, nothing on disk outside {directory}.
[server]
hostname = "relayd-bench.test"
spool_dir = "{directory}/spool"

[smtp]
listen = ["127.0.0.1:{smtp_port}"]

[http]
listen = "127.0.0.1:{http_port}"

[dns]
# Every next hop is a configured IP address, so relayd makes no look-up;
# should one happen, it goes to a loopback port where nothing listens.
nameservers = ["127.0.0.1:9"]
timeout = "1s"

[delivery]
tls = "off"
mta_sts = false
connect_timeout = "5s"
command_timeout = "30s"
data_timeout = "30s"
max_concurrency = 50
# Postfix's default_destination_concurrency_limit, so both MTAs open as
# many connections to the sink.
max_per_domain = 20
pause_after = {pause_after}
pause = "{pause}"

[routes]
"*" = "127.0.0.1:{sink_port}"

[classes]
# The load generator sets X-Relayd-Class on every message.
header = true

[retry]
first = "{retry_first}"
multiplier = 2.0
max_interval = "{retry_first}"
give_up = "1h"

[policy]
alignment = "off"
"""


class Relayd:
    """One `relayd serve` process in its own session, so that its process group is its own."""

    name = "relayd"

    def __init__(self, directory: Path, smtp_port: int, sink_port: int, *, retry_first: str = "1s",
                 pause_after: int = 5, pause: str = "5s", extra_config: str = ""):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.smtp_port = smtp_port
        self.http_port = free_ports(1, exclude={smtp_port, sink_port})[0]
        self.config_path = self.directory / "relayd.toml"
        self.log_path = self.directory / "relayd.log"
        config = CONFIG_TEMPLATE.format(
            directory=self.directory,
            smtp_port=smtp_port,
            http_port=self.http_port,
            sink_port=sink_port,
            retry_first=retry_first,
            pause_after=pause_after,
            pause=pause,
        )
        self.config_path.write_text(config + extra_config)
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        """Start relayd and return the time.monotonic() at which it was started; wait until it listens."""
        started = self.spawn()
        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relayd exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1):
                    return started
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"relayd did not listen on port {self.smtp_port} within {START_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """Return the end of relayd's log, for errors: the working directory may be removed before anyone reads it."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log written)"

    def spawn(self) -> float:
        """Start the process without waiting for it; return the time.monotonic() of the start."""
        with open(self.log_path, "ab") as log:
            started = time.monotonic()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relayd", "serve", "--config", str(self.config_path)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        return started

    def stop(self) -> float:
        """Stop relayd with SIGTERM (SIGKILL after STOP_TIMEOUT); return the seconds it took."""
        if self.process is None:
            return 0.0
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the process group, for clean-up after a failure."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
        self.process = None

    @property
    def pgid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return procstat.group_cpu_seconds(self.pgid)

    def memory(self) -> dict[str, int | None]:
        """Return the current RSS and the peak RSS (VmHWM) of the relayd process, in bytes."""
        pid = self.process.pid
        return {"rss": procstat.status_bytes(pid, "VmRSS"), "peak_rss": procstat.status_bytes(pid, "VmHWM")}

    def version(self) -> str:
        result = subprocess.run([sys.executable, "-m", "relayd", "--version"], capture_output=True, text=True, cwd=ROOT)
        return result.stdout.strip()
