"""The measured scenarios, each on a fresh MTA and sink: throughput, latency at a steady rate, and lanes."""

import asyncio
import math
import time

from bench import procstat
from bench.environment import Bench, own_cpu_seconds
from bench.loadgen import Load, run_load
from bench.sink import SinkProcess
from bench.stats import latency_summary, megabytes, rate, refusals

def _drain(mta, sink: SinkProcess, accepted: set[str], timeout: float) -> dict[str, float]:
    """Wait until every accepted message arrived (and Postfix's queue is empty); return the arrivals."""
    deadline = time.monotonic() + timeout
    arrivals = sink.wait_for(accepted, timeout)
    queue_length = getattr(mta, "queue_length", None)
    while queue_length is not None and queue_length() and time.monotonic() < deadline:
        time.sleep(0.1)
    return arrivals


def throughput(bench: Bench, mta_name: str, sessions: int, size: int, count: int, time_limit: float,
               repeat: int = 1) -> dict:
    """Submit `count` messages over `sessions` sessions as fast as they are accepted; measure rates, CPU and memory."""
    label = f"throughput-{sessions}-{size}-{repeat}"
    with bench.running(mta_name, label) as (mta, sink):
        cpu_before = mta.cpu_seconds()
        harness_before = own_cpu_seconds()
        with procstat.MemorySampler(mta.pgid) as memory:
            load = Load(label, count, sessions, size, time_limit=time_limit)
            submissions = asyncio.run(run_load("127.0.0.1", mta.smtp_port, load))
            accepted = {s.bench_id: s for s in submissions if s.accepted}
            arrivals = _drain(mta, sink, set(accepted), timeout=time_limit)
        cpu = mta.cpu_seconds() - cpu_before
        generator_cpu = own_cpu_seconds() - harness_before
        sink_cpu = procstat.read_stat(sink.pid).cpu_seconds
        peak_rss = mta.memory()["peak_rss"] or memory.peak_rss
        left = mta.queue_length() if hasattr(mta, "queue_length") else None

    first = min(s.submitted for s in submissions)
    delivered = [arrivals[i] for i in accepted if i in arrivals]
    per_thousand = 1000 / max(1, len(accepted))
    return {
        "mta": mta_name,
        "sessions": sessions,
        "size": size,
        "repeat": repeat,
        "submitted": len(submissions),
        "accepted": len(accepted),
        "delivered": len(delivered),
        "duplicates": sink.duplicates,
        "left_in_queue": left,
        **refusals(submissions),
        "accepted_per_s": rate(len(accepted), first, max(s.replied for s in accepted.values()) if accepted else first),
        "delivered_per_s": rate(len(delivered), first, max(delivered) if delivered else first),
        "accept_latency": latency_summary([s.accept_latency for s in accepted.values()]),
        "cpu_seconds": round(cpu, 2),
        "cpu_s_per_1000": round(cpu * per_thousand, 3),
        "peak_rss_mb": megabytes(peak_rss),
        "peak_pss_mb": megabytes(memory.peak_pss),
        "peak_processes": memory.peak_processes,
        "generator_cpu_s_per_1000": round(generator_cpu * per_thousand, 3),
        "sink_cpu_s_per_1000": round(sink_cpu * per_thousand, 3),
    }


def latency(bench: Bench, mta_name: str, messages_per_second: float, seconds: float, sessions: int = 10) -> dict:
    """Submit at a steady rate (an open loop) and measure accept and end-to-end latency."""
    label = f"latency-{messages_per_second:g}"
    count = int(messages_per_second * seconds)
    with bench.running(mta_name, label) as (mta, sink):
        load = Load(label, count, sessions, 1024, rate=messages_per_second, time_limit=seconds * 2)
        submissions = asyncio.run(run_load("127.0.0.1", mta.smtp_port, load))
        accepted = {s.bench_id: s for s in submissions if s.accepted}
        arrivals = _drain(mta, sink, set(accepted), timeout=60)

    end_to_end = [arrivals.get(i, math.inf) - s.submitted for i, s in accepted.items()]
    starts = [s.submitted for s in submissions]
    return {
        "mta": mta_name,
        "target_per_s": messages_per_second,
        "achieved_per_s": rate(len(submissions) - 1, min(starts), max(starts)),
        "submitted": len(submissions),
        "accepted": len(accepted),
        **refusals(submissions),
        "accept_latency": latency_summary([s.accept_latency for s in accepted.values()]),
        "end_to_end": latency_summary(end_to_end),
    }


def lanes(bench: Bench, mta_name: str, backlog: int, auth: int, sink_delay: float, auth_rate: float,
          wait: float, backlog_time_limit: float) -> dict:
    """Queue `backlog` notification messages to a slow destination, then `auth` messages; time the auth messages.

    Auth messages that have not arrived `wait` seconds after the last of
    them was accepted count as never arrived.
    """
    with bench.running(mta_name, "lanes", sink_delay=sink_delay) as (mta, sink):
        started = time.monotonic()
        notifications = asyncio.run(
            run_load(
                "127.0.0.1",
                mta.smtp_port,
                Load("notification", backlog, 50, 1024, message_class="notification", time_limit=backlog_time_limit),
            )
        )
        backlog_seconds = time.monotonic() - started
        queued = sum(1 for s in notifications if s.accepted)
        backlog_left = queued - sum(1 for i in sink.arrivals() if i.startswith("notification-"))

        auth_load = Load("auth", auth, 10, 1024, message_class="auth", rate=auth_rate, time_limit=wait)
        submissions = asyncio.run(run_load("127.0.0.1", mta.smtp_port, auth_load))
        accepted = {s.bench_id: s for s in submissions if s.accepted}
        arrivals = sink.wait_for(set(accepted), wait)
        notifications_delivered = sum(1 for i in arrivals if i.startswith("notification-"))

    end_to_end = [arrivals.get(i, math.inf) - s.submitted for i, s in accepted.items()]
    return {
        "mta": mta_name,
        "sink_delay_s": sink_delay,
        "backlog_submitted": len(notifications),
        "backlog_accepted": queued,
        "backlog_submit_seconds": round(backlog_seconds, 1),
        "backlog_left_when_auth_started": backlog_left,
        "notifications_delivered_by_end": notifications_delivered,
        "auth_submitted": len(submissions),
        "auth_accepted": len(accepted),
        **refusals(submissions + notifications),
        "auth_wait_s": wait,
        "auth_end_to_end": latency_summary(end_to_end),
    }
