"""Fixtures for integration tests: relayd in a subprocess, dnsmasq and SMTP sinks on loopback."""

import pytest

from tests.support.daemon import Daemon
from tests.support.dns import DnsServer
from tests.support.sinks import PostfixSink, RecordingSink, SmtpScript, free_tcp_port
from tests.support.webhooks import WebhookReceiver, new_secret

# Destination servers listen on these loopback addresses, all on the one
# port relayd's delivery.port points at, as MX hosts on port 25 would.
MX_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 10)]


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def mx_port() -> int:
    return free_tcp_port(*MX_ADDRESSES)


@pytest.fixture
def dns_server(tmp_path):
    """A dnsmasq to configure; call .start() after adding records."""
    server = DnsServer(tmp_path / "dns")
    yield server
    server.stop()


@pytest.fixture
def sinks(mx_port):
    """Start RecordingSinks on demand: sinks("127.0.0.2", script=SmtpScript(...))."""
    started = []

    def start(host: str, script: SmtpScript | None = None) -> RecordingSink:
        sink = RecordingSink(host, mx_port, script=script)
        sink.start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def postfix_sink(mx_port, tmp_path):
    started = []

    def start(host: str, **options) -> PostfixSink:
        sink = PostfixSink(host, mx_port, tmp_path / f"smtp-sink-{host}", **options)
        sink.start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def daemon(tmp_path, mx_port):
    """Start relayd: daemon(config_overrides, dns=DnsServer or None, env=extra environment or None)."""
    started = []

    def start(config: dict | None = None, dns: DnsServer | None = None, env: dict | None = None) -> Daemon:
        base = {"delivery": {"port": mx_port}}
        if dns is not None:
            base["dns"] = {"nameservers": [dns.address], "timeout": "2s"}
        merged = base
        for key, value in (config or {}).items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
        instance = Daemon(tmp_path / f"relayd{len(started)}", merged)
        instance.env.update(env or {})
        instance.start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.kill()


@pytest.fixture
def webhook_receiver():
    """Start WebhookReceivers on loopback: webhook_receiver() with a new secret."""
    started = []

    def start() -> WebhookReceiver:
        receiver = WebhookReceiver(new_secret()).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()
