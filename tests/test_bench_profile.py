"""Summaries of py-spy recordings (collapsed stacks) for the benchmark's profile."""

from bench.profiling import summarize

RECORDING = (
    "thread (0x1): MainThread;main (relayd/cli.py);AttemptRunner.__call__ (relayd/delivery/attempt.py);"
    "Courier.deliver (relayd/delivery/courier.py);write (asyncio/selector_events.py) 30\n"
    "thread (0x1): MainThread;main (relayd/cli.py);RelaySMTP._handle_client (relayd/smtp/server.py);"
    "check_content (relayd/smtp/content.py) 50\n"
    "thread (0x2): spool-writer;GroupCommitWriter._run (relayd/spool/writer.py);"
    "GroupCommitWriter._commit (relayd/spool/writer.py) 15\n"
    "thread (0x3): state-reader_0;_worker (concurrent/futures/thread.py);Database._run_read (relayd/spool/database.py);"
    "SqliteStateStore.find_suppression.<locals>.query (relayd/state/sqlite.py) 5\n"
    "a line that is not a stack\n"
)


def test_summary_busy_per_thread(tmp_path):
    path = tmp_path / "profile.txt"
    path.write_text(RECORDING)
    summary = summarize(path, seconds=1.0)
    assert summary["samples"] == 100
    # 200 sample slots per second: 80 samples are 40 percent of one core.
    assert summary["busy_percent"] == {"MainThread": 40.0, "spool-writer": 7.5, "state-reader_0": 2.5}


def test_summary_components_and_functions(tmp_path):
    path = tmp_path / "profile.txt"
    path.write_text(RECORDING)
    summary = summarize(path, seconds=1.0)
    components = dict(summary["components"])
    assert components["delivery attempts"] == 30.0
    assert components["    content check (bare CR/LF, long lines)"] == 50.0
    assert components["spool writer thread (SQLite, fsync)"] == 15.0
    assert components["  suppression look-ups"] == 5.0
    assert components["scheduler loop"] == 0.0
    assert summary["self"][0] == ("check_content (relayd/smtp/content.py)", 50.0)
    assert ("main (relayd/cli.py)", 80.0) in summary["inclusive"]


def test_summary_empty_recording(tmp_path):
    path = tmp_path / "profile.txt"
    path.write_text("")
    summary = summarize(path, seconds=1.0)
    assert summary["samples"] == 0
    assert summary["self"] == []
