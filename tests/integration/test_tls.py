"""Outbound STARTTLS: used when offered, opportunistic fallback, required mode, and what is logged."""

from tests.support.certificates import server_context
from tests.support.scripted_mx import Script, ScriptedMX

MESSAGE = b"Subject: tls\r\n\r\nhello\r\n"


def test_starttls_used_and_logged(daemon, mx_port, tmp_path):
    server = ScriptedMX("127.0.0.2", mx_port, Script(tls_context=server_context(tmp_path, "mx.tls.test"))).start()
    try:
        relayd = daemon({"routes": {"tls.test": "127.0.0.2"}, "delivery": {"tls": "opportunistic"}})
        queue_id = relayd.submit(["user@tls.test"], MESSAGE)
        delivered = relayd.wait_for_event("delivered", queue_id=queue_id)[0]
        assert delivered["tls"].startswith("TLSv1.")
        assert "STARTTLS" in server.commands
        assert len(server.delivered()) == 1
    finally:
        server.stop()


def test_failed_handshake_falls_back_to_plain(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port, Script(broken_tls=True)).start()
    try:
        relayd = daemon({"routes": {"tls.test": "127.0.0.2"}, "delivery": {"tls": "opportunistic"}})
        queue_id = relayd.submit(["user@tls.test"], MESSAGE)
        delivered = relayd.wait_for_event("delivered", queue_id=queue_id)[0]
        assert delivered["tls"] == "none"
        assert relayd.events("starttls_failed_falling_back")
        assert server.connections == 2
        assert len(server.delivered()) == 1
    finally:
        server.stop()


def test_failed_handshake_defers_when_required(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port, Script(broken_tls=True)).start()
    try:
        relayd = daemon(
            {
                "routes": {"tls.test": "127.0.0.2"},
                "delivery": {"tls": "opportunistic", "tls_policy": {"tls.test": "required"}},
            }
        )
        queue_id = relayd.submit(["user@tls.test"], MESSAGE)
        deferred = relayd.wait_for_event("deferred", queue_id=queue_id)[0]
        assert deferred["command"] == "STARTTLS"
        assert server.delivered() == []
    finally:
        server.stop()


def test_required_tls_not_offered_defers(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port).start()
    try:
        relayd = daemon({"routes": {"plain.test": "127.0.0.2"}, "delivery": {"tls": "required"}})
        queue_id = relayd.submit(["user@plain.test"], MESSAGE)
        deferred = relayd.wait_for_event("deferred", queue_id=queue_id)[0]
        assert deferred["status"] == "4.7.10"
        assert server.delivered() == []
    finally:
        server.stop()
