"""CPU time and memory of the processes of one MTA, read from /proc (Linux only).

CPU time is utime + stime + cutime + cstime from /proc/PID/stat (proc(5)
fields 14 to 17), summed over every process of the MTA's process group. A
child that has exited and been reaped counts in its parent's cutime and
cstime, so the sum covers short-lived Postfix processes too. The benchmark
reads the sum before and after a run and reports the difference.
"""

import os
import threading
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessStat:
    """The fields of /proc/PID/stat the benchmark uses; CPU in seconds, RSS in bytes."""

    pid: int
    command: str
    state: str
    pgid: int
    cpu_seconds: float
    rss_bytes: int


def read_stat(pid: int) -> ProcessStat | None:
    """Return the stat of `pid`, or None when the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command is in parentheses and may itself contain spaces and ")".
    command = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is proc(5) field 3 (state), so field N is fields[N - 3].
    ticks = sum(int(value) for value in fields[11:15])
    return ProcessStat(
        pid=pid,
        command=command,
        state=fields[0],
        pgid=int(fields[2]),
        cpu_seconds=ticks / CLOCK_TICKS,
        rss_bytes=int(fields[21]) * PAGE_SIZE,
    )


def group_members(pgid: int) -> list[ProcessStat]:
    """Return every process whose process group is `pgid`, zombies included."""
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if stat is not None and stat.pgid == pgid:
            members.append(stat)
    return members


def group_cpu_seconds(pgid: int) -> float:
    """Return the CPU seconds used so far by process group `pgid` and its reaped children.

    NOTE: a child reaped between the reading of its own stat and of its
    parent's is counted twice or missed, depending on the order. Each such
    race misstates the sum by one short-lived process's CPU time at most.
    """
    return sum(member.cpu_seconds for member in group_members(pgid))


def status_bytes(pid: int, key: str) -> int | None:
    """Return a size field of /proc/PID/status (VmRSS, VmHWM) in bytes, or None."""
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0]) * 1024
    return None


def pss_bytes(pid: int) -> int:
    """Return the proportional set size of `pid`: shared pages divided among their users.

    Summed over several processes, PSS does not count shared libraries and
    shared memory more than once, as a sum of RSS does.
    """
    try:
        lines = (PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in lines:
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


class MemorySampler:
    """Samples the summed RSS and PSS of a process group every `interval` seconds in a thread.

    A single-process MTA also reports VmHWM, the kernel's exact peak. For a
    group, the peak of the samples is what is reported, so a peak shorter
    than `interval` can be missed.
    """

    def __init__(self, pgid: int, interval: float = 0.5):
        self.pgid = pgid
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        members = [m for m in group_members(self.pgid) if m.state != "Z"]
        self.peak_rss = max(self.peak_rss, sum(m.rss_bytes for m in members))
        self.peak_pss = max(self.peak_pss, sum(pss_bytes(m.pid) for m in members))
        self.peak_processes = max(self.peak_processes, len(members))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
