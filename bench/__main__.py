"""`python -m bench`: run every scenario against relayd and Postfix, print the summary, write the JSON result."""

import argparse
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import mta_postfix, report, restart, scenarios
from bench.environment import Bench
from bench.profiling import profile_relayd


@dataclass(frozen=True)
class Scale:
    """Counts and time limits of one benchmark mode. Sizes are in octets, times in seconds."""

    # (sessions, message size, messages, repeats) for each throughput
    # configuration. The MTAs take turns, so that a change in the machine's
    # load during the run affects both alike.
    throughput_runs: tuple[tuple[int, int, int, int], ...]
    throughput_time_limit: float
    steady_rate: float
    steady_seconds: float
    lane_backlog: int
    lane_auth: int
    lane_auth_rate: float
    # How long the slow destination waits before replying to the final dot.
    lane_sink_delay: float
    lane_wait: float
    lane_backlog_time_limit: float
    spool_count: int
    spool_time_limit: float
    spool_settle: float
    # (message size, messages) for each profiled relayd run; empty: no profile.
    profile_runs: tuple[tuple[int, int], ...]


FULL = Scale(
    # The target configuration (50 sessions, 1 KB) runs three times, and the
    # target is checked on the medians.
    throughput_runs=((10, 1024, 5000, 1), (50, 1024, 10000, 3), (10, 51200, 1500, 1), (50, 51200, 1500, 1)),
    throughput_time_limit=120,
    steady_rate=100,
    steady_seconds=30,
    lane_backlog=50000,
    lane_auth=200,
    lane_auth_rate=20,
    lane_sink_delay=0.1,
    lane_wait=60,
    lane_backlog_time_limit=300,
    spool_count=100000,
    spool_time_limit=400,
    spool_settle=3,
    profile_runs=((1024, 6000), (51200, 800)),
)

# A few seconds per MTA: enough to run every code path, too little for the
# figures to mean anything.
SHORT = Scale(
    throughput_runs=((10, 1024, 200, 1),),
    throughput_time_limit=20,
    steady_rate=50,
    steady_seconds=1,
    lane_backlog=200,
    lane_auth=10,
    lane_auth_rate=20,
    lane_sink_delay=0.01,
    lane_wait=10,
    lane_backlog_time_limit=20,
    spool_count=300,
    spool_time_limit=20,
    spool_settle=0.5,
    profile_runs=(),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark relayd against Postfix on loopback.")
    parser.add_argument("--short", action="store_true", help="small counts, a few seconds per MTA (the CI mode)")
    parser.add_argument("--output-dir", type=Path, default=Path("var/bench"), help="where the JSON result goes (default var/bench)")
    parser.add_argument("--mta", action="append", choices=["relayd", "postfix"],
                        help="MTA to measure; repeat for both (default: both, relayd alone where Postfix cannot run)")
    parser.add_argument("--relayd-config", type=Path,
                        help="TOML appended to relayd's generated config, such as class rules")
    parser.add_argument("--keep", action="store_true", help="keep the working directory with logs and spools")
    return parser


def _choose_mtas(requested: list[str] | None, notes: list[str]) -> list[str]:
    reason = mta_postfix.unavailable_reason()
    selected = requested or ["relayd", "postfix"]
    if "postfix" in selected and reason is not None:
        message = f"Postfix is not measured: {reason}. relayd's figures have no comparison."
        print(f"bench: {message}", file=sys.stderr)
        notes.append(message)
        selected = [name for name in selected if name != "postfix"]
    return selected


def run(scale: Scale, mode: str, mtas: list[str], bench: Bench, notes: list[str]) -> dict:
    """Run every scenario for each MTA in turn; return the results by scenario."""
    results: dict = {"throughput": [], "latency": [], "lanes": [], "restart": None, "profile": []}
    for sessions, size, count, repeats in scale.throughput_runs:
        for repeat in range(1, repeats + 1):
            for mta in mtas:
                _progress(f"{mta}: throughput, {sessions} sessions, {size} octets, {count} messages, run {repeat}")
                results["throughput"].append(
                    scenarios.throughput(bench, mta, sessions, size, count, scale.throughput_time_limit, repeat)
                )
    for mta in mtas:
        _progress(f"{mta}: latency at {scale.steady_rate:g} messages/s for {scale.steady_seconds:g} s")
        results["latency"].append(scenarios.latency(bench, mta, scale.steady_rate, scale.steady_seconds))
        _progress(f"{mta}: lanes, {scale.lane_backlog} notification then {scale.lane_auth} auth messages")
        results["lanes"].append(
            scenarios.lanes(bench, mta, scale.lane_backlog, scale.lane_auth, scale.lane_sink_delay,
                            scale.lane_auth_rate, scale.lane_wait, scale.lane_backlog_time_limit)
        )
    if "relayd" in mtas:
        _progress(f"relayd: {scale.spool_count} messages spooled, then a restart")
        results["restart"] = restart.spool_and_restart(bench, scale.spool_count, scale.spool_time_limit, scale.spool_settle)
        for size, count in scale.profile_runs:
            _progress(f"relayd: profile, 50 sessions, {size} octets, {count} messages")
            results["profile"].append(profile_relayd(bench, size, count))
    return results


def _progress(text: str) -> None:
    print(f"bench: {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _stop_on_signal(signum, frame) -> None:
    # SystemExit unwinds through every scenario's clean-up, which stops the
    # MTAs and sinks this run started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scale, mode = (SHORT, "short") if args.short else (FULL, "full")
    notes: list[str] = []
    mtas = _choose_mtas(args.mta, notes)
    extra = args.relayd_config.read_text() if args.relayd_config else ""
    signal.signal(signal.SIGTERM, _stop_on_signal)

    machine = report.machine()
    workdir = Path(tempfile.mkdtemp(prefix="relayd-bench-"))
    # Postfix's daemons run as the postfix user and must reach their queue below it.
    workdir.chmod(0o755)
    started = time.monotonic()
    try:
        results = run(scale, mode, mtas, Bench(workdir, extra), notes)
    finally:
        if args.keep:
            print(f"bench: working directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    outcome = {
        "mode": mode,
        "machine": machine,
        "scale": asdict(scale),
        "mtas": mtas,
        "elapsed_s": round(time.monotonic() - started, 1),
        "load_average_at_end": report.load_average(),
        "results": results,
        "notes": notes,
    }
    outcome["targets"] = report.targets(results)
    print(report.summary_table(outcome))
    path = report.write_json(outcome, args.output_dir)
    print(f"bench: results written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
