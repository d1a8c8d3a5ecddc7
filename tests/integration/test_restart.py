"""Stopping and starting relayd: SIGTERM exits 0, and the spool is recovered on start."""

import os
import pty
import re
import signal
import subprocess
import sys
import time

from tests.support.daemon import ROOT
from tests.support.sinks import SmtpScript

MESSAGE = b"Subject: restart\r\n\r\nhello\r\n"


def test_deferred_mail_delivered_once_after_restart(sinks, daemon):
    sink = sinks("127.0.0.2", SmtpScript(rcpt_default="421 4.3.2 Closing for maintenance"))
    relayd = daemon({"routes": {"restart.test": "127.0.0.2"}, "retry": {"first": "3s", "max_interval": "3s"}})
    queue_ids = [relayd.submit([f"user{n}@restart.test"], MESSAGE) for n in range(5)]
    deferrals = relayd.wait_for_event("deferred", count=5)
    assert relayd.stop() == 0
    assert relayd.events("stopped")

    sink.script = SmtpScript()
    relayd.start()
    recovered = relayd.wait_for_event("spool_recovered", count=2)[-1]
    assert recovered["jobs"] == 5
    arrived = sink.wait_for(5, timeout=20)
    time.sleep(0.5)
    assert len(sink.messages) == 5
    assert sorted(m.rcpt_tos[0] for m in arrived) == sorted(f"user{n}@restart.test" for n in range(5))

    # The next attempt time survived the restart: nothing was retried early.
    due = {d["queue_id"]: d["next_attempt"] for d in deferrals}
    for queue_id in queue_ids:
        delivered = relayd.events("delivered", queue_id=queue_id)
        assert len(delivered) == 1
        assert delivered[0]["attempt"] == 2
    for message in arrived:
        queue_id = re.search(rb"with ESMTP id (\w+)", message.content).group(1).decode()
        assert message.arrival_time >= due[queue_id] - 0.05


def test_console_log_on_tty(tmp_path, daemon):
    relayd = daemon()
    relayd.stop()
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "relayd", "serve", "--config", str(relayd.config_path)],
        cwd=ROOT,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    output = b""
    deadline = time.monotonic() + 15
    while b"started" not in output and time.monotonic() < deadline:
        try:
            output += os.read(main, 4096)
        except OSError:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    os.close(main)
    assert b"started" in output
    assert not output.lstrip().startswith(b"{"), "a TTY gets console rendering, not JSON"
