"""Sessions and slots per destination: reuse, per-domain limits, slow and dead destinations."""

import time

from tests.support.scripted_mx import Script, ScriptedMX, delayed

MESSAGE = b"Subject: destinations\r\n\r\nhello\r\n"


def test_session_reused_with_rset(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port).start()
    try:
        relayd = daemon({"routes": {"reuse.test": "127.0.0.2"}, "delivery": {"connection_idle": "5s"}})
        for n in range(5):
            queue_id = relayd.submit([f"user{n}@reuse.test"], MESSAGE)
            relayd.wait_for_event("delivered", queue_id=queue_id)
        assert len(server.delivered()) == 5
        assert server.connections == 1
        assert sum(1 for c in server.commands if c == "RSET") == 4
    finally:
        server.stop()


def test_session_closed_after_idle(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port).start()
    try:
        relayd = daemon({"routes": {"idle.test": "127.0.0.2"}, "delivery": {"connection_idle": "1s"}})
        relayd.wait_for_event("delivered", queue_id=relayd.submit(["a@idle.test"], MESSAGE))
        time.sleep(2.5)
        assert server.open_connections == 0
        relayd.wait_for_event("delivered", queue_id=relayd.submit(["b@idle.test"], MESSAGE))
        assert server.connections == 2
    finally:
        server.stop()


def test_slow_destination_does_not_delay_others(daemon, mx_port):
    slow = ScriptedMX("127.0.0.2", mx_port, Script({"dot": delayed(1.0, "250 2.0.0 Ok")})).start()
    fast = ScriptedMX("127.0.0.3", mx_port).start()
    try:
        relayd = daemon(
            {
                "routes": {"slow.test": "127.0.0.2", "fast.test": "127.0.0.3"},
                "delivery": {"max_concurrency": 8, "max_per_domain": 3},
            }
        )
        with relayd.smtp() as client:
            for n in range(40):
                client.sendmail("app@sender.test", [f"user{n}@slow.test"], MESSAGE)
        time.sleep(0.5)

        latencies = []
        for n in range(10):
            submitted = time.time()
            relayd.submit([f"user{n}@fast.test"], MESSAGE)
            arrived = fast.wait_for(n + 1, timeout=10)[-1]
            latencies.append(time.time() - submitted)
            assert arrived.recipients == [f"user{n}@fast.test"]
        assert max(latencies) < 0.5, latencies
        assert len(slow.delivered()) < 40, "the slow backlog was still in progress"
        assert slow.max_open_connections <= 3
    finally:
        slow.stop()
        fast.stop()


def test_dead_destination_paused(daemon):
    # Nothing listens on 127.0.0.9: every attempt fails to connect.
    relayd = daemon(
        {
            "routes": {"dead.test": "127.0.0.9"},
            "delivery": {"pause_after": 3, "pause": "30s"},
            "retry": {"first": "1s", "max_interval": "1s"},
        }
    )
    for n in range(3):
        relayd.submit([f"user{n}@dead.test"], MESSAGE)
    paused = relayd.wait_for_event("destination_paused", timeout=10)[0]
    assert paused["domain"] == "dead.test"
    attempts_at_pause = len(relayd.events("deferred"))
    time.sleep(3)
    assert len(relayd.events("deferred")) == attempts_at_pause, "attempts went on during the pause"


def test_shared_mx_host_limited(daemon, mx_port):
    # Two domains served by one MX address: each domain may run 4 attempts,
    # the address takes at most 2 sessions.
    server = ScriptedMX("127.0.0.2", mx_port, Script({"dot": delayed(0.3, "250 2.0.0 Ok")})).start()
    try:
        relayd = daemon(
            {
                "routes": {"one.test": "127.0.0.2", "two.test": "127.0.0.2"},
                "delivery": {"max_per_domain": 4, "max_per_host": 2},
            }
        )
        with relayd.smtp() as client:
            for n in range(6):
                client.sendmail("app@sender.test", [f"user{n}@one.test"], MESSAGE)
                client.sendmail("app@sender.test", [f"user{n}@two.test"], MESSAGE)
        server.wait_for(12, timeout=20)
        assert server.max_open_connections <= 2
    finally:
        server.stop()
