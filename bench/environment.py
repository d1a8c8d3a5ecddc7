"""Starting and always stopping one MTA and its sink for one scenario."""

import contextlib
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bench.mta_postfix import Postfix
from bench.mta_relayd import Relayd
from bench.ports import free_ports
from bench.sink import SinkProcess

MTAS = ("relayd", "postfix")


def own_cpu_seconds() -> float:
    """Return the CPU seconds this process (the load generator) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Bench:
    """The working directory of a benchmark run, and the TOML it appends to relayd's config."""

    workdir: Path
    relayd_extra_config: str = ""

    def make_mta(self, name: str, directory: Path, smtp_port: int, sink_port: int, **relayd_options):
        if name == "relayd":
            return Relayd(directory, smtp_port, sink_port, extra_config=self.relayd_extra_config, **relayd_options)
        return Postfix(directory, smtp_port, sink_port)

    @contextlib.contextmanager
    def running(self, name: str, label: str, sink_delay: float = 0.0) -> Iterator[tuple[Relayd | Postfix, SinkProcess]]:
        """Start a sink and the MTA `name` relaying to it; stop both on exit, also after an error."""
        directory = self.workdir / f"{name}-{label}"
        directory.mkdir(parents=True)
        directory.chmod(0o755)
        smtp_port, sink_port = free_ports(2)
        sink = SinkProcess(directory, sink_port, sink_delay)
        mta = self.make_mta(name, directory / name, smtp_port, sink_port)
        try:
            sink.start()
            mta.start()
            yield mta, sink
        finally:
            try:
                mta.stop()
            finally:
                mta.kill()
                sink.stop()
