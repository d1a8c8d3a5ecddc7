"""The machine description, the targets check, the summary table and the JSON result file."""

import json
import os
import platform
import statistics
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

from bench.mta_postfix import POSTCONF

ROOT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _memory_total_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def _command_output(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
    except OSError:
        return ""


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict:
    """Describe the machine and the software versions the figures depend on."""
    postfix = _command_output(POSTCONF, "-d", "-h", "mail_version") if Path(POSTCONF).exists() else ""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_mb": _memory_total_mb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postfix": postfix or None,
        "relayd_commit": _command_output("git", "describe", "--always", "--dirty"),
        "aiosmtpd": version("aiosmtpd"),
        "aiosmtplib": version("aiosmtplib"),
        "load_average_at_start": load_average(),
    }


def _find(results: list[dict], **match) -> dict | None:
    for result in results:
        if all(result.get(key) == value for key, value in match.items()):
            return result
    return None


def _median_delivered(results: list[dict], **match) -> tuple[float | None, list[float]]:
    """Return the median delivered rate of the matching runs, and the rate of each run."""
    rates = [r["delivered_per_s"] for r in results if all(r.get(k) == v for k, v in match.items())]
    rates = [value for value in rates if value is not None]
    if not rates:
        return None, []
    return statistics.median(rates), rates


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def targets(results: dict) -> list[dict]:
    """Check the measured figures against relayd's performance targets; a target without figures is "not measured"."""
    checks = []

    throughput = results.get("throughput", [])
    ours, our_runs = _median_delivered(throughput, mta="relayd", sessions=50, size=1024)
    theirs, their_runs = _median_delivered(throughput, mta="postfix", sessions=50, size=1024)
    ratio = _ratio(ours, theirs)
    checks.append({
        "target": "delivered messages per second at 50 sessions, 1 KB (median of the runs), >= 1.2 x Postfix's",
        "relayd": ours,
        "postfix": theirs,
        "ratio": ratio,
        "met": None if ratio is None else ratio >= 1.2,
        "runs": {"relayd": our_runs, "postfix": their_runs},
    })

    latency = results.get("latency", [])
    ours = _find(latency, mta="relayd")
    theirs = _find(latency, mta="postfix")
    ours_p99 = ours and ours["end_to_end"]["p99_ms"]
    theirs_p99 = theirs and theirs["end_to_end"]["p99_ms"]
    checks.append({
        "target": "end-to-end p99 at a steady rate <= Postfix's",
        "relayd": ours_p99,
        "postfix": theirs_p99,
        "ratio": _ratio(ours_p99, theirs_p99),
        "met": None if ours_p99 is None or theirs_p99 is None else ours_p99 <= theirs_p99,
    })

    lanes = results.get("lanes", [])
    ours = _find(lanes, mta="relayd")
    theirs = _find(lanes, mta="postfix")
    ours_p99 = ours and ours["auth_end_to_end"]["p99_ms"]
    checks.append({
        "target": "auth end-to-end p99 behind the notification backlog < 250 ms",
        "relayd": ours_p99,
        "postfix": theirs and theirs["auth_end_to_end"]["p99_ms"],
        "ratio": None,
        # None as p99 means it fell on a message that never arrived.
        "met": None if ours is None else ours_p99 is not None and ours_p99 < 250,
    })

    restart = results.get("restart")
    rss = restart and restart["peak_rss_mb_while_spooling"]
    checks.append({
        "target": f"peak RSS with {restart['accepted'] if restart else 'N'} messages spooled < 300 MB",
        "relayd": rss,
        "postfix": None,
        "ratio": None,
        "met": None if rss is None else rss < 300,
    })
    ready = restart and restart["restart_to_first_250_s"]
    checks.append({
        "target": "restart accepting mail (first 250) within 10 s",
        "relayd": ready,
        "postfix": None,
        "ratio": None,
        "met": None if restart is None else ready is not None and ready < 10,
    })
    return checks


def _cell(value, width: int) -> str:
    text = "-" if value is None else str(value)
    return text.rjust(width)


def _latency(summary: dict, waited: float | None = None) -> str:
    def one(key: str) -> str:
        value = summary[key]
        if value is None and summary.get("not_arrived"):
            return f">{waited:g}s" if waited else "lost"
        return "-" if value is None else f"{value:g}"

    return f"{one('p50_ms')}/{one('p99_ms')}"


def summary_table(run: dict) -> str:
    """Return the human-readable summary of a benchmark run."""
    results = run["results"]
    machine = run["machine"]
    lines = [
        f"relayd benchmark ({run['mode']} mode), {machine['nproc']} CPUs, {machine['cpu_model']};"
        f" load average {machine['load_average_at_start']} at the start, {run['load_average_at_end']} at the end"
    ]

    if results.get("throughput"):
        lines += ["", "Throughput: closed loop, each session sends its next message once the last is answered",
                  f"{'MTA':8} {'sess':>4} {'size':>6} {'run':>3} {'sent':>6} {'acc/s':>7} {'dlv/s':>7} {'accept p50/p99 ms':>18}"
                  f" {'CPU s/1000':>10} {'peak MB':>8} {'PSS MB':>7}"]
        for r in results["throughput"]:
            lines.append(
                f"{r['mta']:8} {r['sessions']:>4} {r['size'] // 1024:>4}KB {r['repeat']:>3} {r['submitted']:>6} {_cell(r['accepted_per_s'], 7)}"
                f" {_cell(r['delivered_per_s'], 7)} {_latency(r['accept_latency']):>18} {_cell(r['cpu_s_per_1000'], 10)}"
                f" {_cell(r['peak_rss_mb'], 8)} {_cell(r['peak_pss_mb'], 7)}"
            )

    if results.get("latency"):
        lines += ["", "Latency at a steady rate: 1 KB messages, open loop over 10 sessions",
                  f"{'MTA':8} {'target/s':>8} {'sent/s':>7} {'accept p50/p99 ms':>18} {'end-to-end p50/p99 ms':>22}"]
        for r in results["latency"]:
            lines.append(
                f"{r['mta']:8} {r['target_per_s']:>8g} {_cell(r['achieved_per_s'], 7)} {_latency(r['accept_latency']):>18}"
                f" {_latency(r['end_to_end'], 60):>22}"
            )

    if results.get("lanes"):
        first = results["lanes"][0]
        lines += ["", f"Lanes: notification backlog to a destination that answers the final dot after "
                      f"{first['sink_delay_s']:g} s, then auth messages to it",
                  f"{'MTA':8} {'backlog':>8} {'left':>7} {'auth':>5} {'auth end-to-end p50/p99 ms':>27} {'not arrived':>11}"]
        for r in results["lanes"]:
            lines.append(
                f"{r['mta']:8} {r['backlog_accepted']:>8} {r['backlog_left_when_auth_started']:>7} {r['auth_accepted']:>5}"
                f" {_latency(r['auth_end_to_end'], r['auth_wait_s']):>27} {r['auth_end_to_end']['not_arrived']:>11}"
            )

    restart = results.get("restart")
    if restart:
        lines += ["", f"relayd with {restart['accepted']} messages spooled, destination down",
                  f"  spool {restart['spool_mb']} MB, RSS {restart['rss_mb_spooled']} MB, peak {restart['peak_rss_mb_while_spooling']} MB;"
                  f" stop {restart['stop_seconds']} s; restart to first 250 {_cell(restart['restart_to_first_250_s'], 0)} s,"
                  f" {restart['recovered_jobs']} jobs recovered, RSS after restart {restart['rss_mb_after_restart']} MB"]

    for profile in results.get("profile", []):
        running, gil = profile["running"], profile["gil"]
        lines += ["", f"relayd profile, {profile['sessions']} sessions, {profile['size'] // 1024} KB:"
                      f" percent of one core per thread, running / holding the GIL"]
        for thread, busy in running["busy_percent"].items():
            lines.append(f"  {thread:24} {busy:>6} / {gil['busy_percent'].get(thread, 0)}")
        lines.append("  share of samples, running / holding the GIL:")
        for (label, share), (_, gil_share) in zip(running["components"], gil["components"]):
            lines.append(f"  {label:58} {share:>5} / {gil_share}")

    lines += ["", "Targets"]
    for check in run["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[check["met"]]
        ratio = f", ratio {check['ratio']}" if check["ratio"] is not None else ""
        lines.append(f"  {verdict:12} {check['target']}: relayd {_cell(check['relayd'], 0)},"
                     f" Postfix {_cell(check['postfix'], 0)}{ratio}")
    for note in run.get("notes", []):
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def write_json(run: dict, directory: Path) -> Path:
    """Write the run to DIRECTORY/<mode>-<UTC time>.json and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run['mode']}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(run, indent=2) + "\n")
    return path
