"""Sampling relayd with py-spy under load, and summarising where its CPU time goes.

py-spy reads the daemon's memory from outside (ptrace), so relayd runs
unchanged. With --nonblocking it does not pause the daemon to sample, at
the price of an occasional torn stack. Without --idle it keeps only the
samples of threads that are running: on a CPU, or inside a system call such
as send() or fsync(). With --gil it keeps only the thread holding the GIL,
which shows how busy the interpreter itself is.
"""

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

from bench.environment import Bench
from bench.loadgen import Load, run_load

SAMPLES_PER_SECOND = 200

# Parts of relayd, each named by the function (and module, as py-spy prints
# it) under which its work runs; functions defined inside it count too. A
# sample counts for every part on its stack, so the shares overlap.
COMPONENTS = (
    ("inbound SMTP sessions (aiosmtpd and relayd's handler)", "RelaySMTP._handle_client (relayd/smtp/server.py)"),
    ("  end of DATA: checks, preparation, spooling", "SubmissionHandler.handle_DATA (relayd/smtp/handler.py)"),
    ("    content check (bare CR/LF, long lines)", "check_content (relayd/smtp/content.py)"),
    ("    preparation (Received, Message-ID, Date)", "prepare (relayd/prepare.py)"),
    ("delivery attempts", "AttemptRunner.__call__ (relayd/delivery/attempt.py)"),
    ("  outbound SMTP (courier, aiosmtplib)", "Courier.deliver (relayd/delivery/courier.py)"),
    ("  RSET before reusing a session", "SessionPool.take (relayd/delivery/pool.py)"),
    ("scheduler loop", "Scheduler.run (relayd/delivery/scheduler.py)"),
    ("events (webhook outbox)", "EventRecorder.record (relayd/events.py)"),
    ("structured logging (structlog, JSON)", "BoundLoggerBase._proxy_to_logger (structlog/_base.py)"),
    ("spool writer thread (SQLite, fsync)", "GroupCommitWriter._run (relayd/spool/writer.py)"),
    ("SQLite reads (spool and state reader threads)", "Database._run_read (relayd/spool/database.py)"),
    ("  suppression look-ups", "SqliteStateStore.find_suppression (relayd/state/sqlite.py)"),
)


def py_spy() -> str | None:
    """Return the py-spy executable beside this interpreter or on PATH, or None."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recording(pid: int, output: Path, gil_only: bool = False) -> Iterator[None]:
    """Sample `pid` into `output` (py-spy's collapsed-stack format) while the block runs.

    With `gil_only`, only the thread holding the GIL is sampled: the share
    of samples then shows how busy the interpreter itself is.
    """
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed: run `make bench`, which installs relayd's bench extra")
    options = ["--gil"] if gil_only else []
    process = subprocess.Popen(
        [executable, "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_SECOND), "--nonblocking",
         "--threads", "--nolineno", "--format", "raw", "--output", str(output), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        # py-spy writes its output when interrupted, as after Ctrl-C.
        process.send_signal(signal.SIGINT)
        try:
            _, errors = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
    if not output.exists():
        raise RuntimeError(f"py-spy wrote no profile: {errors.decode(errors='replace').strip()[-500:]}")


def _frame_name(frame: str) -> str:
    """Return "function (module path)" for a frame, shortening site-packages paths to the package."""
    name, _, location = frame.partition(" (")
    location = location.rstrip(")")
    if "site-packages/" in location:
        location = location.split("site-packages/", 1)[1]
    return f"{name} ({location})"


def _within(name: str, component: str) -> bool:
    """Tell whether frame `name` is the component's function or a function defined inside it."""
    function, _, module = component.partition(" (")
    own_function, _, own_module = name.partition(" (")
    return own_module == module and (own_function == function or own_function.startswith(function + "."))


def summarize(path: Path, seconds: float, top: int = 20) -> dict:
    """Summarise a recording of `seconds` seconds.

    Returns how busy each thread was, in percent of the recording's sample
    slots, so 100 is one core all the time. The share of each of relayd's
    COMPONENTS and the top functions by self and by inclusive samples are
    in percent of all samples.
    """
    threads: Counter[str] = Counter()
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    components: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        total += count
        # "thread (0x7f...)" or "thread (0x7f...): name"; the name is what is worth keeping.
        threads[thread.partition(": ")[2] or thread] += count
        if frames:
            names = [_frame_name(frame) for frame in frames]
            self_samples[names[-1]] += count
            for name in set(names):
                inclusive[name] += count
            for label, frame in COMPONENTS:
                if any(_within(name, frame) for name in names):
                    components[label] += count

    def percentages(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * value / max(1, total), 1)) for name, value in counter.most_common(top)]

    slots = SAMPLES_PER_SECOND * seconds
    return {
        "samples": total,
        "seconds": round(seconds, 1),
        "busy_percent": {name: round(100 * value / slots, 1) for name, value in threads.most_common()},
        "threads": percentages(threads),
        "components": [(label, round(100 * components[label] / max(1, total), 1)) for label, _ in COMPONENTS],
        "self": percentages(self_samples),
        "inclusive": percentages(inclusive),
    }


def profile_relayd(bench: Bench, size: int, count: int) -> dict:
    """Profile relayd under a 50-session load of `count` messages of `size` octets, twice.

    The first recording samples every thread that is running; the second
    samples only the thread that holds the GIL.
    """
    result: dict = {"sessions": 50, "size": size, "messages": count}
    for mode in ("running", "gil"):
        label = f"profile-{size}-{mode}"
        with bench.running("relayd", label) as (mta, sink):
            output = bench.workdir / f"{label}.txt"
            started = time.monotonic()
            with recording(mta.pgid, output, gil_only=mode == "gil"):
                submissions = asyncio.run(run_load("127.0.0.1", mta.smtp_port, Load(label, count, 50, size)))
                sink.wait_for({s.bench_id for s in submissions if s.accepted}, 120)
            result[mode] = summarize(output, time.monotonic() - started)
    return result
