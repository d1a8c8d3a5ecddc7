"""The benchmark's short mode, run end to end so that the benchmark cannot rot."""

import json
import signal
import subprocess
import sys

import pytest

from bench import mta_postfix
from tests.support.daemon import ROOT

# The short mode takes about 20 seconds; a slow CI machine gets some margin.
TIMEOUT = 100


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "--short", "--output-dir", str(output)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the benchmark stop the MTAs and sinks it started.
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"the short benchmark took more than {TIMEOUT} s:\n{stderr[-3000:]}")
    assert process.returncode == 0, stderr[-3000:]
    [result_file] = output.glob("short-*.json")
    return json.loads(result_file.read_text()), stdout


def test_short_bench_measures_postfix_where_possible(short_run):
    run, _ = short_run
    assert "relayd" in run["mtas"]
    if mta_postfix.unavailable_reason() is None:
        assert "postfix" in run["mtas"]


def test_short_bench_delivers_every_message(short_run):
    run, _ = short_run
    for result in run["results"]["throughput"]:
        assert result["refused"] == 0, result["refusal_examples"]
        assert result["delivered"] == result["submitted"], result
        assert result["duplicates"] == 0
        assert result["cpu_s_per_1000"] > 0
        assert result["peak_rss_mb"] > 0


def test_short_bench_latency_complete(short_run):
    run, _ = short_run
    for result in run["results"]["latency"]:
        assert result["refused"] == 0, result["refusal_examples"]
        assert result["end_to_end"]["not_arrived"] == 0
        assert result["end_to_end"]["p99_ms"] >= result["end_to_end"]["p50_ms"] > 0


def test_short_bench_lanes_complete(short_run):
    run, _ = short_run
    for result in run["results"]["lanes"]:
        assert result["backlog_accepted"] == result["backlog_submitted"]
        assert result["auth_accepted"] == result["auth_submitted"] > 0
        assert result["auth_end_to_end"]["not_arrived"] == 0


def test_short_bench_restart_recovers_spool(short_run):
    run, _ = short_run
    restart = run["results"]["restart"]
    assert restart["accepted"] == restart["submitted"]
    assert restart["recovered_jobs"] == restart["accepted"]
    assert restart["restart_to_first_250_s"] is not None
    assert restart["rss_mb_spooled"] > 0


def test_short_bench_prints_targets(short_run):
    run, stdout = short_run
    assert "Targets" in stdout
    assert len(run["targets"]) == 5
