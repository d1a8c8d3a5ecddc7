"""Run `relayd serve` in a subprocess as a user would, and read its JSON log."""

import http.client
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.sinks import free_tcp_port

ROOT = Path(__file__).resolve().parents[2]


def to_toml(document: dict[str, Any]) -> str:
    """Render a nested dict of strings, numbers, booleans and lists as TOML."""
    lines: list[str] = []

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (int, float)):
            return repr(item)
        if isinstance(item, str):
            return json.dumps(item)
        if isinstance(item, (list, tuple)):
            return "[" + ", ".join(value(v) for v in item) + "]"
        if isinstance(item, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(v)}" for k, v in item.items()) + " }"
        raise TypeError(f"cannot render {item!r} as TOML")

    def table(prefix: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict) or prefix == "routes"}
        nested = {k: v for k, v in body.items() if k not in scalars}
        if prefix:
            lines.append(f"[{prefix}]")
        for key, item in scalars.items():
            lines.append(f"{json.dumps(key)} = {value(item)}")
        lines.append("")
        for key, item in nested.items():
            table(f"{prefix}.{key}" if prefix else key, item)

    table("", document)
    return "\n".join(lines)


def merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, item in override.items():
        if isinstance(item, dict) and isinstance(merged.get(key), dict) and key != "routes":
            merged[key] = merge(merged[key], item)
        else:
            merged[key] = item
    return merged


class Daemon:
    """One relayd process with its own config, spool and log file under `directory`."""

    def __init__(self, directory: Path, config: dict[str, Any] | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.smtp_port = free_tcp_port("127.0.0.1")
        self.http_port = free_tcp_port("127.0.0.1")
        while self.http_port == self.smtp_port:
            self.http_port = free_tcp_port("127.0.0.1")
        defaults = {
            "server": {"hostname": "relay.test", "spool_dir": str(self.directory / "spool")},
            "smtp": {"listen": [f"127.0.0.1:{self.smtp_port}"]},
            "http": {"listen": f"127.0.0.1:{self.http_port}"},
            "delivery": {"tls": "off", "connect_timeout": "2s", "command_timeout": "5s", "data_timeout": "5s"},
            "retry": {"first": "1s", "multiplier": 2.0, "max_interval": "2s", "give_up": "1h"},
            # The alignment check queries DNS for each message, so a test
            # turns it on only with dns.nameservers set to its own dnsmasq.
            "policy": {"alignment": "off"},
        }
        self.config = merge(defaults, config or {})
        self.config_path = self.directory / "relayd.toml"
        self.log_path = self.directory / "relayd.log"
        self.process: subprocess.Popen | None = None
        self._log_file = None
        # Extra environment for the daemon process, such as NOTIFY_SOCKET.
        self.env: dict[str, str] = {}

    def write_config(self) -> None:
        self.config_path.write_text(to_toml(self.config))

    def start(self, timeout: float = 15.0) -> "Daemon":
        self.write_config()
        self._log_file = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relayd", "serve", "--config", str(self.config_path)],
            cwd=ROOT,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relayd exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"relayd did not listen within {timeout}s:\n{self.log_text()}")

    def stop(self, timeout: float = 20.0) -> int:
        """Send SIGTERM and return the exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._close_log()

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str | None = None, **match: Any) -> list[dict]:
        found = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if name is not None and record.get("event") != name:
                continue
            if all(record.get(k) == v for k, v in match.items()):
                found.append(record)
        return found

    def wait_for_event(self, name: str, timeout: float = 15.0, count: int = 1, **match: Any) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(name, **match)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} {name!r} events matching {match} within {timeout}s:\n{self.log_text()[-4000:]}")
            time.sleep(0.05)

    def submit(self, recipients: list[str], content: bytes, sender: str = "app@sender.test") -> str:
        """Send one message and return the queue id from the 250 reply."""
        with self.smtp() as client:
            client.ehlo()
            client.mail(sender)
            for recipient in recipients:
                client.rcpt(recipient)
            code, text = client.data(content)
        if code != 250:
            raise AssertionError(f"DATA answered {code} {text!r}")
        return text.decode().rsplit(" ", 1)[1]

    def smtp(self, source_address: tuple[str, int] | None = None) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.test", source_address=source_address, timeout=30)

    # The HTTP listener: /metrics, /healthz and the queue commands.

    def http_get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET `path` from the daemon's HTTP listener; return the status and the body."""
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def metrics_text(self) -> str:
        status, body = self.http_get("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}: {body[:500]!r}")
        return body.decode()

    def metrics(self) -> "Samples":
        return Samples(self.metrics_text())

    def queue(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `relayd queue ARGS --config <this daemon's config>` and return the finished process."""
        command, *rest = args
        result = subprocess.run(
            [sys.executable, "-m", "relayd", "queue", command, *rest, "--config", str(self.config_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"relayd queue {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def queue_json(self, *args: str) -> Any:
        return json.loads(self.queue(*args, "--json").stdout)


class Samples:
    """Samples of one /metrics scrape, looked up by name and labels."""

    def __init__(self, text: str):
        self.text = text
        self.values: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str) -> float:
        """Return the value of the sample with exactly these labels; fail when there is none."""
        key = (name, frozenset(labels.items()))
        if key not in self.values:
            raise AssertionError(f"no sample {name}{labels} in /metrics")
        return self.values[key]

    def total(self, name: str, **labels: str) -> float:
        """Return the sum of the samples of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(value for (sample, found), value in self.values.items() if sample == name and wanted <= found)
