"""Signals to the running daemon: SIGTERM drains without losing mail, SIGHUP reloads; /healthz and sd_notify follow."""

import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time

import pytest

from relayd.dkim.keys import generate_key, write_private_file
from tests.support.sinks import SmtpScript
from tests.test_deploy import healthcheck_command

MESSAGE = b"From: app@sender.test\r\nSubject: signals\r\n\r\nhello\r\n"
QUEUE_ID_IN_RECEIVED = re.compile(rb"with ESMTP id (\w+)")


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.02)


def healthz(relayd) -> tuple[int, bytes]:
    try:
        return relayd.http_get("/healthz", timeout=2)
    except OSError:
        return 0, b""


def container_healthcheck(relayd) -> int:
    """Run the Dockerfile's HEALTHCHECK command against this daemon's port; return its exit status."""
    _, flag, code = healthcheck_command()
    result = subprocess.run([sys.executable, flag, code.replace("2580", str(relayd.http_port))], timeout=10)
    return result.returncode


def test_healthz_and_421_while_draining(sinks, daemon):
    sink = sinks("127.0.0.2", SmtpScript(data_delay=2.0))
    relayd = daemon({"routes": {"slow.test": "127.0.0.2"}, "server": {"shutdown_grace": "10s"}})
    assert relayd.http_get("/healthz") == (200, b'{"status": "ready"}')
    assert container_healthcheck(relayd) == 0

    queue_id = relayd.submit(["user@slow.test"], MESSAGE)
    wait_until(lambda: any(e.command == "RCPT" for e in sink.events), 10, "no attempt started")
    relayd.process.send_signal(signal.SIGTERM)

    wait_until(lambda: healthz(relayd)[0] == 503, 5, "/healthz did not turn 503")
    assert healthz(relayd) == (503, b'{"status": "draining"}')
    assert container_healthcheck(relayd) == 1
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        relayd.smtp()
    assert refused.value.smtp_code == 421
    assert refused.value.smtp_error.startswith(b"4.3.2 ")

    assert relayd.process.wait(20) == 0
    assert relayd.events("delivered", queue_id=queue_id), "the attempt in flight finished within the grace time"
    assert relayd.events("stopped")[0]["attempts_left_spooled"] == 0
    assert relayd.events("rejected", reason="shutting down")
    assert healthz(relayd)[0] == 0, "nothing listens after exit"


def test_sd_notify_ready_reloading_stopping(tmp_path, daemon):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(10)
        relayd = daemon(env={"NOTIFY_SOCKET": str(path)})
        ready = listener.recv(4096).decode()
        assert "READY=1" in ready.splitlines()
        assert relayd.events("spool_recovered"), "READY=1 comes after the spool is recovered"

        relayd.process.send_signal(signal.SIGHUP)
        assert listener.recv(4096).decode().splitlines() == ["RELOADING=1"]
        assert listener.recv(4096).decode().splitlines() == ["READY=1"]

        relayd.process.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in listener.recv(4096).decode().splitlines()
        assert relayd.process.wait(20) == 0


class Client(threading.Thread):
    """Submits one message after another, each in its own session, until the daemon stops listening.

    A refusal or a broken session is recorded and the client tries again,
    so clients keep connecting during the drain and get its 421 greeting.
    """

    def __init__(self, relayd, number: int):
        super().__init__(daemon=True)
        self.relayd = relayd
        self.number = number
        self.accepted: list[str] = []
        self.refusals: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + 30
        for count in range(20_000):
            if time.monotonic() > deadline:
                return
            try:
                self.submit(count)
            except ConnectionRefusedError:
                return
            except smtplib.SMTPConnectError as exc:
                self.refusals.append(f"{exc.smtp_code} {exc.smtp_error.decode()}")
            except (OSError, smtplib.SMTPException) as exc:
                # Includes a 421 read as the reply to QUIT after an accepted message.
                self.refusals.append(repr(exc))

    def submit(self, count: int) -> None:
        with self.relayd.smtp() as client:
            client.ehlo()
            code, text = client.mail("app@sender.test")
            if code != 250:
                self.refusals.append(f"{code} {text.decode()}")
                return
            client.rcpt(f"user{self.number}.{count}@load.test")
            code, text = client.data(MESSAGE)
            if code != 250:
                self.refusals.append(f"{code} {text.decode()}")
                return
            self.accepted.append(text.decode().rsplit(" ", 1)[1])


def test_sigterm_under_load_loses_nothing(sinks, daemon):
    sink = sinks("127.0.0.2", SmtpScript(data_delay=0.5))
    relayd = daemon(
        {"routes": {"load.test": "127.0.0.2"}, "server": {"shutdown_grace": "5s"}, "delivery": {"max_concurrency": 4}}
    )
    clients = [Client(relayd, n) for n in range(4)]
    for client in clients:
        client.start()
    wait_until(lambda: len(sink.messages) >= 4, 15, "no delivery under load")
    # The first batch of attempts has just ended. Stopping in the middle of
    # the next batch leaves the drain about a quarter of a second, and the
    # clients that connect in that time get the 421.
    time.sleep(0.25)

    relayd.process.send_signal(signal.SIGTERM)
    assert relayd.process.wait(20) == 0
    for client in clients:
        client.join(10)
    accepted = [queue_id for client in clients for queue_id in client.accepted]
    refusals = [refusal for client in clients for refusal in client.refusals]
    assert any(r.startswith("421 4.3.2") for r in refusals), refusals[:20]
    delivered_before = len(sink.messages)
    assert delivered_before < len(accepted), "the load left mail in the spool"

    # What was accepted and not delivered before the stop is in the spool:
    # the next start delivers it, and nothing is delivered twice.
    sink.script = SmtpScript()
    relayd.start()
    wait_until(lambda: len(sink.messages) >= len(accepted), 30, "not all accepted mail was delivered after restart")
    time.sleep(0.5)
    delivered = [QUEUE_ID_IN_RECEIVED.search(m.content).group(1).decode() for m in sink.messages]
    assert sorted(delivered) == sorted(accepted)


def test_sighup_reloads_routes_keys_and_webhooks(tmp_path, sinks, daemon, webhook_receiver):
    old_hop = sinks("127.0.0.2")
    new_hop = sinks("127.0.0.3")
    relayd = daemon({"routes": {"hup.test": "127.0.0.2"}})
    relayd.submit(["first@hup.test"], MESSAGE)
    assert len(old_hop.wait_for(1)) == 1

    # A session opened before the reload survives it.
    held = relayd.smtp()
    held.ehlo()
    held.mail("app@sender.test")
    held.rcpt("held@hup.test")

    key_file = tmp_path / "sender.test.key"
    write_private_file(key_file, generate_key("ed25519-sha256"))
    relayd.config["routes"] = {"hup.test": "127.0.0.3"}
    relayd.config["dkim"] = {"keys": [{"domain": "sender.test", "selector": "e1", "key_file": str(key_file), "algorithm": "ed25519-sha256"}]}
    relayd.config["smtp"] = {"listen": ["127.0.0.1:1"]}
    receiver = webhook_receiver()
    relayd.config["webhooks"] = [{"url": receiver.url, "secret": receiver.secret, "events": ["delivered"]}]
    relayd.write_config()
    relayd.process.send_signal(signal.SIGHUP)
    reloaded = relayd.wait_for_event("config_reloaded")[0]
    assert sorted(reloaded["changed"]) == ["dkim_keys", "routes", "webhooks"]
    assert relayd.wait_for_event("config_restart_required")[0]["keys"] == ["smtp.listen"]

    code, _ = held.data(MESSAGE)
    held.quit()
    assert code == 250
    relayd.submit(["second@hup.test"], MESSAGE)
    arrived = new_hop.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in arrived) == ["held@hup.test", "second@hup.test"]
    assert len(old_hop.messages) == 1
    assert relayd.events("accepted")[-1]["dkim"] == ["sender.test/e1"]
    receiver.wait_until(lambda r: len(r.unique()) >= 2, description="delivered events of the two messages")
    assert sorted(request.event["data"]["recipient"] for request in receiver.unique().values()) == ["held@hup.test", "second@hup.test"]

    # An invalid file is refused; the configuration in effect stays.
    relayd.config_path.write_text(relayd.config_path.read_text().replace('"127.0.0.3"', '"127.0.0.3:99999"'))
    relayd.process.send_signal(signal.SIGHUP)
    failed = relayd.wait_for_event("config_reload_failed")[0]
    assert 'routes."hup.test"' in failed["error"]
    assert "127.0.0.3:99999" in failed["error"]
    relayd.submit(["third@hup.test"], MESSAGE)
    assert len(new_hop.wait_for(3)) == 3
    assert relayd.process.poll() is None

    samples = relayd.metrics()
    assert samples.get("relayd_config_reloads_total", result="success") == 1
    assert samples.get("relayd_config_reloads_total", result="failure") == 1
