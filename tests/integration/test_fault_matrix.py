"""Delivery against a scripted destination that fails at each stage of the dialogue.

One relayd serves every row; each row has its own domain routed to its own
scripted server on 127.0.1.N. A row names the fault, the expected state of
each recipient after the first attempt, and what the server must have
received: the recipients of each completed transaction, in order.
"""

import pytest

from tests.support.daemon import Daemon
from tests.support.scripted_mx import DISCONNECT, TIMEOUT, Script, ScriptedMX
from tests.support.sinks import free_tcp_port

MESSAGE = b"Subject: fault matrix\r\n\r\nhello\r\n"
MULTILINE_550 = (
    "550-5.1.1 The email account that you tried to reach does not exist.\n"
    "550-5.1.1 Please try double-checking the recipient's email\n"
    "550 5.1.1 address for typos."
)

# name: (script, {recipient local part: (state, status, command)}, [recipients per completed transaction])
ROWS = {
    "greeting-421": (Script({"greeting": "421 4.3.2 Service not available"}), {"a": ("deferred", "4.3.2", "CONNECT"), "b": ("deferred", "4.3.2", "CONNECT")}, []),
    "greeting-554": (Script({"greeting": "554 5.3.2 No SMTP service here"}), {"a": ("bounced", "5.3.2", "CONNECT"), "b": ("bounced", "5.3.2", "CONNECT")}, []),
    "ehlo-fails-helo-works": (Script({"ehlo": "502 5.5.1 EHLO not implemented"}), {"a": ("delivered", "2.0.0", "DATA"), "b": ("delivered", "2.0.0", "DATA")}, [["a", "b"]]),
    "mail-451": (Script({"mail": "451 4.3.0 Try again later"}), {"a": ("deferred", "4.3.0", "MAIL"), "b": ("deferred", "4.3.0", "MAIL")}, []),
    "mail-550": (Script({"mail": "550 5.7.1 Sender rejected"}), {"a": ("bounced", "5.7.1", "MAIL"), "b": ("bounced", "5.7.1", "MAIL")}, []),
    "rcpt-450-and-250": (Script(rcpt={"a": "450 4.2.0 Mailbox busy"}), {"a": ("deferred", "4.2.0", "RCPT"), "b": ("delivered", "2.0.0", "DATA")}, [["b"]]),
    "rcpt-451-and-550": (Script(rcpt={"a": "451 4.3.0 Local error", "b": "550 5.1.1 No such user"}), {"a": ("deferred", "4.3.0", "RCPT"), "b": ("bounced", "5.1.1", "RCPT")}, []),
    "rcpt-452-too-many": (Script(rcpt={"b": ["452 4.5.3 Too many recipients", "250 2.1.5 Ok"]}), {"a": ("delivered", "2.0.0", "DATA"), "b": ("delivered", "2.0.0", "DATA")}, [["a"], ["b"]]),
    "rcpt-452-mailbox-full": (Script(rcpt={"b": "452 4.2.2 Mailbox full"}), {"a": ("delivered", "2.0.0", "DATA"), "b": ("deferred", "4.2.2", "RCPT")}, [["a"]]),
    "rcpt-551-and-553": (Script(rcpt={"a": "551 5.1.6 User not local", "b": "553 5.1.3 Bad address syntax"}), {"a": ("bounced", "5.1.6", "RCPT"), "b": ("bounced", "5.1.3", "RCPT")}, []),
    "rcpt-552-rfc821-limit": (Script(rcpt={"b": ["552 Too many recipients", "250 2.1.5 Ok"]}), {"a": ("delivered", "2.0.0", "DATA"), "b": ("delivered", "2.0.0", "DATA")}, [["a"], ["b"]]),
    "rcpt-multiline-550": (Script(rcpt={"a": MULTILINE_550}), {"a": ("bounced", "5.1.1", "RCPT"), "b": ("delivered", "2.0.0", "DATA")}, [["b"]]),
    "dot-451": (Script({"dot": "451 4.3.0 Error in processing"}), {"a": ("deferred", "4.3.0", "DATA"), "b": ("deferred", "4.3.0", "DATA")}, []),
    "dot-552": (Script({"dot": "552 5.3.4 Message too big"}), {"a": ("bounced", "5.3.4", "DATA"), "b": ("bounced", "5.3.4", "DATA")}, []),
    "dot-554": (Script({"dot": "554 5.7.1 Content rejected"}), {"a": ("bounced", "5.7.1", "DATA"), "b": ("bounced", "5.7.1", "DATA")}, []),
    "data-554": (Script({"data": "554 5.5.1 No valid recipients"}), {"a": ("bounced", "5.5.1", "DATA"), "b": ("bounced", "5.5.1", "DATA")}, []),
}
for stage, command in [("greeting", "CONNECT"), ("ehlo", "EHLO"), ("mail", "MAIL"), ("rcpt", "RCPT"), ("data", "DATA"), ("dot", "DATA")]:
    for fault in (TIMEOUT, DISCONNECT):
        status = "4.4.2" if stage not in ("greeting", "ehlo") or fault == TIMEOUT else None
        expected = {local: ("deferred", status, command) for local in ("a", "b")}
        ROWS[f"{stage}-{fault}"] = (Script({stage: fault}), expected, [])

ADDRESSES = {name: f"127.0.1.{index + 1}" for index, name in enumerate(ROWS)}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    port = free_tcp_port(*ADDRESSES.values())
    servers = {name: ScriptedMX(ADDRESSES[name], port, ROWS[name][0]).start() for name in ROWS}
    relayd = Daemon(
        tmp_path_factory.mktemp("matrix"),
        {
            "delivery": {"port": port, "connect_timeout": "1s", "command_timeout": "1s", "data_timeout": "1s"},
            "routes": {f"{name}.test": ADDRESSES[name] for name in ROWS},
            "retry": {"first": "1h", "max_interval": "1h", "give_up": "2h"},
        },
    ).start()
    queue_ids = {name: relayd.submit([f"a@{name}.test", f"b@{name}.test"], MESSAGE) for name in ROWS}
    for name in ROWS:
        for local in ("a", "b"):
            state = ROWS[name][1][local][0]
            relayd.wait_for_event(state, recipient=f"{local}@{name}.test", timeout=30)
    yield relayd, servers, queue_ids
    relayd.kill()
    for server in servers.values():
        server.stop()


@pytest.mark.parametrize("name", sorted(ROWS))
def test_fault_row(matrix, name):
    relayd, servers, queue_ids = matrix
    _, expected_states, expected_transactions = ROWS[name]
    queue_id = queue_ids[name]

    for local, (state, status, command) in expected_states.items():
        recipient = f"{local}@{name}.test"
        # A hard bounce also puts the recipient on the suppression list, which logs its own line.
        logged = relayd.events(queue_id=queue_id, recipient=recipient)
        events = [e for e in logged if e["event"] not in ("accepted", "suppression_added")]
        assert [e["event"] for e in events] == [state], f"{recipient}: {events}"
        assert events[0]["attempt"] == 1
        if status is not None:
            assert events[0]["status"] == status, events[0]
        assert events[0]["command"] == command, events[0]

    delivered = [[r.split("@")[0] for r in t.recipients] for t in servers[name].delivered()]
    assert delivered == expected_transactions


def test_multiline_reply_kept_whole(matrix):
    relayd, _, queue_ids = matrix
    bounced = relayd.events("bounced", queue_id=queue_ids["rcpt-multiline-550"])[0]
    assert "does not exist." in bounced["reply"]
    assert "double-checking" in bounced["reply"]
    assert "address for typos." in bounced["reply"]


def test_helo_used_after_ehlo_fails(matrix):
    _, servers, _ = matrix
    verbs = [c.split(" ")[0] for c in servers["ehlo-fails-helo-works"].commands]
    assert verbs[:2] == ["EHLO", "HELO"]
