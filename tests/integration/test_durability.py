"""No loss across SIGKILL: every message that got 250 is delivered after restarts."""

import random
import re
import smtplib
import threading
import time
from collections import Counter

CLIENTS = 3
MESSAGES_PER_CLIENT = 150
KILLS = 4
# A duplicate may only come from a delivery in flight at a kill: its first
# copy arrived shortly before that kill and its outcome was not yet stored.
IN_FLIGHT_WINDOW = 2.0


def submit_all(relayd, client_number: int, accepted: set, lock: threading.Lock, stop_at: float) -> None:
    """Send MESSAGES_PER_CLIENT messages, reconnecting whenever the daemon is down.

    Each try carries a new X-Test-Id, so a message refused mid-crash and
    sent again is a different message, as it is for a real client.
    """
    sent = tries = 0
    client = None
    while sent < MESSAGES_PER_CLIENT and time.time() < stop_at:
        tries += 1
        test_id = f"c{client_number}-t{tries}"
        content = f"X-Test-Id: {test_id}\r\nSubject: durability\r\n\r\nbody {test_id}\r\n".encode()
        try:
            if client is None:
                client = relayd.smtp()
            client.sendmail("app@sender.test", ["user@durable.test"], content)
        except (OSError, smtplib.SMTPException):
            client = None
            time.sleep(0.05)
            continue
        with lock:
            accepted.add(test_id)
        sent += 1
    if client is not None:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            pass


def test_sigkill_loses_nothing(sinks, daemon, record_property, capsys):
    sink = sinks("127.0.0.2")
    relayd = daemon({"routes": {"durable.test": "127.0.0.2"}})
    accepted: set[str] = set()
    lock = threading.Lock()
    stop_at = time.time() + 120
    clients = [
        threading.Thread(target=submit_all, args=(relayd, n, accepted, lock, stop_at), daemon=True)
        for n in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()

    # Kill at random points spread over the run, measured in accepted messages.
    rng = random.Random()
    total = CLIENTS * MESSAGES_PER_CLIENT
    thresholds = sorted(rng.uniform(k / KILLS, (k + 0.8) / KILLS) * total * 0.9 for k in range(KILLS))
    kill_times = []
    for threshold in thresholds:
        while len(accepted) < threshold and any(thread.is_alive() for thread in clients):
            time.sleep(rng.uniform(0, 0.01))
        if not any(thread.is_alive() for thread in clients):
            break
        relayd.kill()
        kill_times.append(time.time())
        relayd.start()
    for thread in clients:
        thread.join(timeout=130)

    assert len(accepted) == CLIENTS * MESSAGES_PER_CLIENT
    assert len(kill_times) == KILLS, "the clients finished before every kill"

    deadline = time.time() + 60
    while time.time() < deadline:
        arrived = Counter(_test_id(m.content) for m in sink.messages)
        if accepted <= set(arrived):
            break
        time.sleep(0.2)
    missing = accepted - set(arrived)
    assert not missing, f"{len(missing)} accepted messages never delivered: {sorted(missing)[:10]}"

    duplicates = {test_id for test_id, count in arrived.items() if count > 1}
    first_arrival = {}
    for message in sink.messages:
        first_arrival.setdefault(_test_id(message.content), message.arrival_time)
    for test_id in duplicates:
        assert arrived[test_id] == 2, f"{test_id} delivered {arrived[test_id]} times"
        assert any(
            kill - IN_FLIGHT_WINDOW <= first_arrival[test_id] <= kill for kill in kill_times
        ), f"{test_id} duplicated but its first copy was not in flight at a kill"

    record_property("delivered_twice", len(duplicates))
    with capsys.disabled():
        print(
            f"\ndurability: {len(accepted)} accepted, {len(kill_times)} SIGKILLs, "
            f"{len(duplicates)} delivered twice (all in flight at a kill)"
        )


def _test_id(content: bytes) -> str:
    return re.search(rb"X-Test-Id: (\S+)", content).group(1).decode()
