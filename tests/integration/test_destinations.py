"""Sessions and slots per destination: reuse, per-domain limits, slow and dead destinations."""

import time

from tests.support.scripted_mx import DISCONNECT, Script, ScriptedMX, delayed

MESSAGE = b"Subject: destinations\r\n\r\nhello\r\n"


def test_session_reused_without_rset_after_a_clean_transaction(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port).start()
    try:
        relayd = daemon({"routes": {"reuse.test": "127.0.0.2"}, "delivery": {"connection_idle": "5s"}})
        for n in range(5):
            queue_id = relayd.submit([f"user{n}@reuse.test"], MESSAGE)
            relayd.wait_for_event("delivered", queue_id=queue_id)
        assert len(server.delivered()) == 5
        assert server.connections == 1
        # The 250 to the final dot ended each transaction (RFC 5321 4.1.1.4).
        assert "RSET" not in server.commands
    finally:
        server.stop()


def test_session_idle_for_seconds_is_checked_with_rset(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port).start()
    try:
        relayd = daemon({"routes": {"probe.test": "127.0.0.2"}, "delivery": {"connection_idle": "10s"}})
        relayd.wait_for_event("delivered", queue_id=relayd.submit(["a@probe.test"], MESSAGE))
        time.sleep(2.5)
        relayd.wait_for_event("delivered", queue_id=relayd.submit(["b@probe.test"], MESSAGE))
        assert server.connections == 1
        assert server.commands.count("RSET") == 1
    finally:
        server.stop()


def test_rset_after_rejected_message(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port, Script({"dot": ["554 5.7.1 Refused", "250 2.0.0 Ok"]})).start()
    try:
        relayd = daemon({"routes": {"refuse.test": "127.0.0.2"}, "delivery": {"connection_idle": "10s"}})
        relayd.wait_for_event("bounced", queue_id=relayd.submit(["a@refuse.test"], MESSAGE))
        relayd.wait_for_event("delivered", queue_id=relayd.submit(["b@refuse.test"], MESSAGE))
        assert server.connections == 1
        assert server.commands.count("RSET") == 1
    finally:
        server.stop()


def test_reused_session_closed_by_the_server_is_replaced(daemon, mx_port):
    # The server drops the connection at the second MAIL, as one that timed
    # the session out would. The message goes on a new connection at once.
    server = ScriptedMX("127.0.0.2", mx_port, Script({"mail": ["250 2.1.0 Ok", DISCONNECT, "250 2.1.0 Ok"]})).start()
    try:
        relayd = daemon({"routes": {"stale.test": "127.0.0.2"}, "delivery": {"connection_idle": "10s"}})
        relayd.wait_for_event("delivered", queue_id=relayd.submit(["a@stale.test"], MESSAGE))
        queue_id = relayd.submit(["b@stale.test"], MESSAGE)
        [delivered] = relayd.wait_for_event("delivered", queue_id=queue_id)
        assert delivered["attempt"] == 1
        assert not relayd.events("deferred")
        assert server.connections == 2
        assert [t.recipients for t in server.delivered()] == [["a@stale.test"], ["b@stale.test"]]
        assert relayd.events("stale_session_replaced")
    finally:
        server.stop()


def test_reused_session_answered_421_at_mail_is_replaced(daemon, mx_port):
    too_many = "421 4.7.0 Too many messages on this connection"
    server = ScriptedMX("127.0.0.2", mx_port, Script({"mail": ["250 2.1.0 Ok", too_many, "250 2.1.0 Ok"]})).start()
    try:
        relayd = daemon({"routes": {"limit.test": "127.0.0.2"}, "delivery": {"connection_idle": "10s"}})
        relayd.wait_for_event("delivered", queue_id=relayd.submit(["a@limit.test"], MESSAGE))
        queue_id = relayd.submit(["b@limit.test"], MESSAGE)
        [delivered] = relayd.wait_for_event("delivered", queue_id=queue_id)
        assert delivered["attempt"] == 1
        assert server.connections == 2
        assert len(server.delivered()) == 2
    finally:
        server.stop()


def test_first_session_answered_421_at_mail_is_deferred(daemon, mx_port):
    # A new session that refuses MAIL with 421 is a real deferral, not a stale session.
    server = ScriptedMX("127.0.0.2", mx_port, Script({"mail": "421 4.3.2 System not accepting messages"})).start()
    try:
        relayd = daemon({"routes": {"busy.test": "127.0.0.2"}, "retry": {"first": "1h", "max_interval": "1h"}})
        queue_id = relayd.submit(["a@busy.test"], MESSAGE)
        [deferred] = relayd.wait_for_event("deferred", queue_id=queue_id)
        assert deferred["reply"].startswith("421 4.3.2")
        assert server.connections == 1
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
    # The attempt that tripped the pause logs its deferral just after it.
    attempts_at_pause = len(relayd.wait_for_event("deferred", count=3))
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
