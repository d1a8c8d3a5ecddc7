"""A full disk during the spool write gets a 452 reply and loses nothing already accepted."""

import os
import smtplib
import subprocess

import pytest

BIG = b"Subject: big\r\n\r\n" + (b"z" * 76 + b"\r\n") * 4000  # about 300 KB
SMALL = b"Subject: small\r\n\r\nhello\r\n"


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, so the test can fill it; skipped where mounting is not permitted."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory, leave: int) -> None:
    """Write a filler file until fewer than `leave` bytes are free."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    with open(directory / "filler", "wb") as filler:
        filler.write(b"\0" * max(free - leave, 0))


def test_disk_full_answers_452_then_recovers(small_disk, sinks, daemon):
    sink = sinks("127.0.0.2")
    relayd = daemon({"routes": {"full.test": "127.0.0.2"}, "server": {"spool_dir": str(small_disk / "spool")}})
    with relayd.smtp() as client:
        client.sendmail("app@sender.test", ["before@full.test"], SMALL)
    assert len(sink.wait_for(1)) == 1

    fill(small_disk, leave=64 * 1024)
    with relayd.smtp() as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("app@sender.test", ["during@full.test"], BIG)
    assert refused.value.smtp_code == 452
    assert refused.value.smtp_error.startswith(b"4.3.1 ")
    assert relayd.wait_for_event("rejected", reply="452 4.3.1 Insufficient storage for the message, try again later")

    (small_disk / "filler").unlink()
    with relayd.smtp() as client:
        client.sendmail("app@sender.test", ["after@full.test"], BIG)
    arrived = sink.wait_for(2)
    assert [m.rcpt_tos for m in arrived] == [("before@full.test",), ("after@full.test",)]
    assert arrived[1].content.endswith(BIG)
