"""Message classes through the running daemon: selection, the removed header, and lanes under a backlog."""

import time

from tests.support.scripted_mx import Script, ScriptedMX, delayed


def message(message_class: str | None, marker: str) -> bytes:
    field = f"X-Relayd-Class: {message_class}\r\n" if message_class else ""
    return f"{field}Subject: {marker}\r\n\r\n{marker}\r\n".encode()


def test_class_header_chosen_and_removed(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port).start()
    try:
        relayd = daemon({"routes": {"lanes.test": "127.0.0.2"}})
        queue_id = relayd.submit(["user@lanes.test"], message("auth", "reset"))
        accepted = relayd.wait_for_event("accepted", queue_id=queue_id)[0]
        assert accepted["message_class"] == "auth"
        content = server.wait_for(1)[0].content
        assert b"X-Relayd-Class" not in content
        assert content.endswith(b"Subject: reset\r\n\r\nreset\r\n")
    finally:
        server.stop()


def test_invalid_class_refused(daemon):
    relayd = daemon({"routes": {"lanes.test": "127.0.0.2"}})
    with relayd.smtp() as client:
        client.ehlo()
        client.mail("app@sender.test")
        client.rcpt("user@lanes.test")
        code, text = client.data(message("urgent", "x"))
    assert code == 550
    assert text.startswith(b"5.6.0 ")
    assert b'"urgent"' in text


def test_class_rule_by_sender(daemon, mx_port):
    server = ScriptedMX("127.0.0.2", mx_port).start()
    try:
        relayd = daemon(
            {
                "routes": {"lanes.test": "127.0.0.2"},
                "classes": {"rules": [{"class": "shipping", "sender": "*@warehouse.test"}]},
            }
        )
        queue_id = relayd.submit(["user@lanes.test"], message(None, "parcel"), sender="dispatch@warehouse.test")
        assert relayd.wait_for_event("accepted", queue_id=queue_id)[0]["message_class"] == "shipping"
        other = relayd.submit(["user@lanes.test"], message(None, "receipt"))
        assert relayd.wait_for_event("accepted", queue_id=other)[0]["message_class"] == "transactional"
    finally:
        server.stop()


def test_auth_not_delayed_by_notification_backlog(daemon, mx_port):
    # A destination that takes 0.4 s per message, with a backlog of 60
    # notifications: without a reserve, an auth message would wait for one
    # of the domain's slots to free.
    server = ScriptedMX("127.0.0.2", mx_port, Script({"dot": delayed(0.4, "250 2.0.0 Ok")})).start()
    try:
        relayd = daemon(
            {"routes": {"lanes.test": "127.0.0.2"}, "delivery": {"max_concurrency": 10, "max_per_domain": 5}}
        )
        with relayd.smtp() as client:
            for n in range(60):
                client.sendmail("app@sender.test", [f"n{n}@lanes.test"], message("notification", f"n{n}"))
        time.sleep(0.3)

        latencies = []
        for n in range(5):
            submitted = time.time()
            queue_id = relayd.submit([f"a{n}@lanes.test"], message("auth", f"a{n}"))
            relayd.wait_for_event("delivered", queue_id=queue_id, timeout=10)
            latencies.append(time.time() - submitted)
        # Each delivery itself takes 0.4 s; waiting for a slot would add up to 0.4 s more.
        assert max(latencies) < 0.75, latencies
        delivered = sum(1 for t in server.delivered() if t.recipients[0].startswith("n"))
        assert delivered < 60, "the backlog was still in progress"
        assert server.max_open_connections <= 5
    finally:
        server.stop()
