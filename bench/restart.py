"""relayd's memory with a large spool, and the time a restart takes until mail is accepted again."""

import asyncio
import json
import time

from bench.environment import Bench
from bench.ports import free_ports
from bench.loadgen import Load, run_load, time_to_accept
from bench.stats import megabytes, refusals

# How long a restarted relayd may take to complete a transaction before the
# scenario gives up and reports it as not ready.
READY_LIMIT = 120.0


def _recovered_jobs(log_path) -> int | None:
    """Return the `jobs` of the last spool_recovered line in relayd's log."""
    jobs = None
    with open(log_path, "rb") as log:
        for line in log:
            if b'"spool_recovered"' in line:
                jobs = json.loads(line).get("jobs")
    return jobs


def _spool_bytes(directory) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def spool_and_restart(bench: Bench, count: int, time_limit: float, settle: float) -> dict:
    """Spool `count` messages for a destination that is down, read relayd's memory, restart it and time it.

    Memory is read `settle` seconds after the last message was accepted,
    and again that long after the restart, so that the attempts started
    for the last messages have finished.
    """
    directory = bench.workdir / "relayd-restart"
    directory.mkdir(parents=True)
    # Nothing listens on the sink port: every attempt is refused, so the
    # messages stay in the spool. Long retry and pause times keep relayd
    # from retrying while the spool fills.
    smtp_port, dead_port = free_ports(2)
    relayd = bench.make_mta("relayd", directory, smtp_port, dead_port, retry_first="1h", pause="1h")
    try:
        relayd.start()
        load = Load("spool", count, 50, 1024, time_limit=time_limit)
        started = time.monotonic()
        submissions = asyncio.run(run_load("127.0.0.1", smtp_port, load))
        fill_seconds = time.monotonic() - started
        time.sleep(settle)
        filled = relayd.memory()
        stop_seconds = relayd.stop()

        restarted = relayd.spawn()
        ready = asyncio.run(time_to_accept("127.0.0.1", smtp_port, restarted, READY_LIMIT))
        time.sleep(settle)
        after_restart = relayd.memory()
        relayd.stop()
    finally:
        relayd.kill()

    accepted = sum(1 for s in submissions if s.accepted)
    return {
        "mta": "relayd",
        "submitted": len(submissions),
        "accepted": accepted,
        **refusals(submissions),
        "accepted_per_s": round(accepted / fill_seconds, 1) if fill_seconds else None,
        "spool_mb": megabytes(_spool_bytes(directory / "spool")),
        "rss_mb_spooled": megabytes(filled["rss"]),
        "peak_rss_mb_while_spooling": megabytes(filled["peak_rss"]),
        "stop_seconds": round(stop_seconds, 2),
        "recovered_jobs": _recovered_jobs(relayd.log_path),
        "restart_to_first_250_s": None if ready is None else round(ready, 2),
        "rss_mb_after_restart": megabytes(after_restart["rss"]),
        "peak_rss_mb_after_restart": megabytes(after_restart["peak_rss"]),
    }
