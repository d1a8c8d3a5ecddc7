"""`relayd queue` against the running daemon: list, show, stats, retry, delete and flush."""

import re
import time

from tests.support.sinks import SmtpScript

MESSAGE = b"Subject: queue\r\n\r\nhello\r\n"
GREYLIST = SmtpScript(rcpt_default="451 4.7.1 Greylisted, try again later")


def test_queue_commands(sinks, daemon):
    sink = sinks("127.0.0.2", GREYLIST)
    relayd = daemon(
        {
            "routes": {"q.test": "127.0.0.2", "other.test": "127.0.0.2"},
            # Deferred recipients would wait an hour: only retry and flush bring them back.
            "retry": {"first": "1h", "max_interval": "1h", "give_up": "2h"},
        }
    )
    first = relayd.submit(["a@q.test"], MESSAGE)
    second = relayd.submit(["b@other.test"], MESSAGE)
    relayd.wait_for_event("deferred", count=2)

    listing = relayd.queue("list").stdout
    assert first in listing
    assert second in listing
    # The first retry is due in an hour, ±20% jitter, less the time since the attempt.
    assert re.search(r"deferred  a@q\.test  attempts 1  next attempt in (4[7-9]m\d\ds|5\dm\d\ds|1h(0\d|1[0-2])m)\n", listing)
    assert "last reply from 127.0.0.2: 451 4.7.1 Greylisted, try again later" in listing
    assert listing.rstrip().endswith("2 messages")
    assert relayd.queue_json("list")["total"] == 2
    only_other = relayd.queue_json("list", "--domain", "OTHER.test")
    assert [m["queue_id"] for m in only_other["messages"]] == [second]
    assert relayd.queue("list", "--state", "queued").stdout.strip() == "No message matches."

    shown = relayd.queue("show", first.lower()).stdout
    assert f"queue id   {first}" in shown
    assert "451 4.7.1 Greylisted, try again later" in shown
    detail = relayd.queue_json("show", first)
    assert detail["recipients"][0]["state"] == "deferred"
    assert detail["recipients"][0]["attempts"] == 1

    stats = relayd.queue_json("stats")
    assert stats["messages"] == 2
    assert stats["recipients"] == {"queued": 0, "deferred": 2}
    assert stats["classes"]["transactional"]["deferred"] == 2
    assert "transactional         2       0        2" in relayd.queue("stats").stdout

    # retry brings one message forward; the other keeps its next attempt time.
    sink.script = SmtpScript()
    assert relayd.queue("retry", first).stdout.strip() == "Retrying now: 1 message to 1 domain."
    relayd.wait_for_event("delivered", queue_id=first, timeout=10)
    assert relayd.queue_json("show", second)["recipients"][0]["state"] == "deferred"
    assert relayd.queue("show", first, check=False).returncode == 1

    deleted = relayd.queue("delete", second).stdout
    assert deleted.strip() == f"Deleted {second}; never sent to: b@other.test"
    assert relayd.events("deleted", queue_id=second)[0]["recipients"] == ["b@other.test"]
    assert relayd.queue("list").stdout.strip() == "The queue is empty."

    # flush and retry --all bring every deferred recipient forward.
    sink.script = GREYLIST
    third = relayd.submit(["c@q.test"], MESSAGE)
    fourth = relayd.submit(["d@other.test"], MESSAGE)
    relayd.wait_for_event("deferred", count=4)
    sink.script = SmtpScript()
    assert relayd.queue("flush").stdout.strip() == "Retrying now: 2 messages to 2 domains."
    relayd.wait_for_event("delivered", queue_id=third, timeout=10)
    relayd.wait_for_event("delivered", queue_id=fourth, timeout=10)
    assert relayd.queue("retry", "--all").stdout.strip() == "Nothing to retry: no deferred recipient is waiting for a later attempt."
    assert relayd.queue_json("stats")["messages"] == 0


def test_queue_command_errors(daemon):
    relayd = daemon()

    unknown = relayd.queue("show", "0123456789ABCDEF012", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "relayd: no message 0123456789ABCDEF012 in the queue"

    invalid = relayd.queue("delete", "../etc", check=False)
    assert invalid.returncode == 2
    assert "invalid queue id '../etc'" in invalid.stderr

    relayd.stop()
    unreachable = relayd.queue("stats", check=False)
    assert unreachable.returncode == 1
    assert f"cannot reach relayd at http://127.0.0.1:{relayd.http_port}" in unreachable.stderr


def test_retry_names_a_paused_destination(daemon):
    # Nothing listens on 127.0.0.9, so two failed attempts pause dead.test for an hour.
    relayd = daemon(
        {
            "routes": {"dead.test": "127.0.0.9"},
            "delivery": {"pause_after": 2, "pause": "1h"},
            "retry": {"first": "1h", "max_interval": "1h"},
        }
    )
    for n in range(2):
        relayd.submit([f"user{n}@dead.test"], MESSAGE)
    relayd.wait_for_event("destination_paused", timeout=10)
    relayd.wait_for_event("deferred", count=2)

    retried = relayd.queue("flush").stdout.strip().splitlines()
    assert retried[0] == "Retrying now: 2 messages to 1 domain."
    assert re.fullmatch(
        r"dead\.test is paused after repeated connection failures: its recipients wait until \d\d:\d\d:\d\d UTC\.",
        retried[1],
    )
    # The pause holds: no attempt was made after the retry.
    time.sleep(1)
    assert len(relayd.events("deferred")) == 2
