"""Routing through the running daemon: configured routes, MX order, fallback and DNS failures."""

import time

import pytest

from tests.support.sinks import SmtpScript

MESSAGE = b"Subject: routing\r\n\r\nhello\r\n"


def send(relayd, recipient: str) -> str:
    return relayd.submit([recipient], MESSAGE)


def test_mx_preference(dns_server, sinks, daemon):
    dns_server.add_mx("pref.test", "low.pref.test", 20)
    dns_server.add_mx("pref.test", "high.pref.test", 5)
    dns_server.add_a("low.pref.test", "127.0.0.2")
    dns_server.add_a("high.pref.test", "127.0.0.3")
    dns_server.start()
    less_preferred = sinks("127.0.0.2")
    preferred = sinks("127.0.0.3")
    relayd = daemon(dns=dns_server)
    for n in range(3):
        send(relayd, f"user{n}@pref.test")
    assert len(preferred.wait_for(3)) == 3
    assert less_preferred.messages == []


def test_fallback_when_mx_does_not_answer(dns_server, sinks, daemon):
    dns_server.add_mx("fallback.test", "dead.fallback.test", 10)
    dns_server.add_mx("fallback.test", "live.fallback.test", 20)
    dns_server.add_a("dead.fallback.test", "127.0.0.4")
    dns_server.add_a("live.fallback.test", "127.0.0.5")
    dns_server.start()
    live = sinks("127.0.0.5")
    relayd = daemon(dns=dns_server)
    queue_id = send(relayd, "user@fallback.test")
    assert len(live.wait_for(1)) == 1
    delivered = relayd.wait_for_event("delivered", queue_id=queue_id)[0]
    assert delivered["attempt"] == 1
    assert "127.0.0.5" in delivered["host"]


def test_fallback_when_greeting_is_4xx(dns_server, sinks, daemon):
    dns_server.add_mx("greet.test", "busy.greet.test", 10)
    dns_server.add_mx("greet.test", "ok.greet.test", 20)
    dns_server.add_a("busy.greet.test", "127.0.0.2")
    dns_server.add_a("ok.greet.test", "127.0.0.3")
    dns_server.start()
    busy = sinks("127.0.0.2", SmtpScript(greeting="421 4.3.2 Service not available"))
    ok = sinks("127.0.0.3")
    relayd = daemon(dns=dns_server)
    send(relayd, "user@greet.test")
    assert len(ok.wait_for(1)) == 1
    assert busy.messages == []


def test_implicit_mx(dns_server, sinks, daemon):
    dns_server.add_a("implicit.test", "127.0.0.6")
    dns_server.start()
    sink = sinks("127.0.0.6")
    relayd = daemon(dns=dns_server)
    send(relayd, "user@implicit.test")
    assert sink.wait_for(1)[0].rcpt_tos == ("user@implicit.test",)


@pytest.mark.parametrize(
    "setup, status",
    [
        ("null_mx", "5.1.10"),
        ("nxdomain", "5.1.2"),
    ],
)
def test_permanent_dns_failure_bounces(dns_server, daemon, setup, status):
    if setup == "null_mx":
        dns_server.add_null_mx("nomail.test")
    dns_server.start()
    relayd = daemon(dns=dns_server)
    queue_id = send(relayd, "user@nomail.test")
    bounced = relayd.wait_for_event("bounced", queue_id=queue_id)[0]
    assert bounced["status"] == status
    assert bounced["attempt"] == 1
    assert relayd.events("deferred", queue_id=queue_id) == []


@pytest.mark.parametrize("setup", ["servfail", "timeout"])
def test_temporary_dns_failure_defers(dns_server, daemon, setup):
    if setup == "servfail":
        dns_server.add_servfail("flaky.test")
    else:
        dns_server.add_timeout("flaky.test")
    dns_server.start()
    relayd = daemon({"dns": {"timeout": "1s"}}, dns=dns_server)
    queue_id = send(relayd, "user@flaky.test")
    deferred = relayd.wait_for_event("deferred", queue_id=queue_id)[0]
    assert deferred["status"] == "4.4.3"
    assert deferred["command"] == "DNS"
    assert relayd.events("bounced", queue_id=queue_id) == []


def test_route_beats_mx(dns_server, sinks, daemon):
    dns_server.add_mx("routed.test", "mx.routed.test", 10)
    dns_server.add_a("mx.routed.test", "127.0.0.2")
    dns_server.start()
    mx = sinks("127.0.0.2")
    route = sinks("127.0.0.3")
    relayd = daemon({"routes": {"routed.test": "127.0.0.3"}}, dns=dns_server)
    send(relayd, "user@routed.test")
    assert len(route.wait_for(1)) == 1
    assert mx.messages == []


def test_smarthost_route(sinks, postfix_sink, daemon, mx_port):
    smarthost = postfix_sink("127.0.0.4")
    relayd = daemon({"routes": {"*": f"127.0.0.4:{mx_port}"}})
    send(relayd, "someone@anywhere.test")
    arrived = smarthost.wait_for(1)
    assert arrived[0].rcpt_tos == ("someone@anywhere.test",)
    assert arrived[0].content.endswith(MESSAGE)


def test_domains_are_independent(dns_server, sinks, daemon):
    dns_server.add_a("fast.test", "127.0.0.2")
    dns_server.add_servfail("broken.test")
    dns_server.start()
    fast = sinks("127.0.0.2")
    relayd = daemon(dns=dns_server)
    with relayd.smtp() as client:
        client.sendmail("app@sender.test", ["a@broken.test", "b@fast.test"], MESSAGE)
    arrived = fast.wait_for(1)
    assert arrived[0].rcpt_tos == ("b@fast.test",)
    assert relayd.wait_for_event("deferred", recipient="a@broken.test")
