"""MTA-STS (RFC 8461) through the running daemon, with the policy served over HTTPS on loopback."""

import http.server
import ssl
import threading

import pytest

from tests.support.certificates import CertificateAuthority
from tests.support.scripted_mx import Script, ScriptedMX

MESSAGE = b"Subject: mta-sts\r\n\r\nhello\r\n"
POLICY_ADDRESS = "127.0.0.8"
POLICIES = {
    "enforce-plain.test": "version: STSv1\nmode: enforce\nmx: mx.enforce-plain.test\nmax_age: 86400\n",
    "enforce-tls.test": "version: STSv1\nmode: enforce\nmx: *.enforce-tls.test\nmax_age: 86400\n",
    "enforce-other.test": "version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n",
    "testing-plain.test": "version: STSv1\nmode: testing\nmx: mx.testing-plain.test\nmax_age: 86400\n",
}
MX_ADDRESSES = {
    "enforce-plain.test": "127.0.0.2",
    "enforce-tls.test": "127.0.0.3",
    "enforce-other.test": "127.0.0.4",
    "testing-plain.test": "127.0.0.5",
}


class PolicyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        domain = self.headers["Host"].split(":")[0].removeprefix("mta-sts.")
        policy = POLICIES.get(domain)
        if self.path != "/.well-known/mta-sts.txt" or policy is None:
            self.send_error(404)
            return
        body = policy.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def sts_world(tmp_path, dns_server, mx_port):
    authority = CertificateAuthority(tmp_path / "ca")
    try:
        server = http.server.ThreadingHTTPServer((POLICY_ADDRESS, 443), PolicyHandler)
    except PermissionError:
        pytest.skip("binding port 443 on loopback needs root")
    context = authority.server_context(*[f"mta-sts.{d}" for d in POLICIES])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    for domain, address in MX_ADDRESSES.items():
        dns_server.add_mx(domain, f"mx.{domain}", 10)
        dns_server.add_a(f"mx.{domain}", address)
        dns_server.add_txt(f"_mta-sts.{domain}", "v=STSv1; id=20261204T000000;")
        dns_server.add_a(f"mta-sts.{domain}", POLICY_ADDRESS)
    dns_server.start()

    tls_mx = ScriptedMX(
        MX_ADDRESSES["enforce-tls.test"], mx_port, Script(tls_context=authority.server_context("mx.enforce-tls.test"))
    ).start()
    plain = {d: ScriptedMX(a, mx_port).start() for d, a in MX_ADDRESSES.items() if d != "enforce-tls.test"}
    yield authority, {**plain, "enforce-tls.test": tls_mx}
    for mx in [tls_mx, *plain.values()]:
        mx.stop()
    server.shutdown()


def start_relayd(daemon, dns_server, authority):
    return daemon({"delivery": {"tls": "opportunistic", "ca_file": str(authority.ca_file)}}, dns=dns_server)


def test_enforce_without_tls_defers(sts_world, daemon, dns_server):
    authority, servers = sts_world
    relayd = start_relayd(daemon, dns_server, authority)
    queue_id = relayd.submit(["user@enforce-plain.test"], MESSAGE)
    deferred = relayd.wait_for_event("deferred", queue_id=queue_id)[0]
    assert deferred["status"] == "4.7.10"
    assert "MTA-STS" in deferred["reply"]
    policy = relayd.events("mta_sts_policy", domain="enforce-plain.test")[0]
    assert policy["mode"] == "enforce"
    assert servers["enforce-plain.test"].delivered() == []


def test_enforce_with_verified_tls_delivers(sts_world, daemon, dns_server):
    authority, servers = sts_world
    relayd = start_relayd(daemon, dns_server, authority)
    queue_id = relayd.submit(["user@enforce-tls.test"], MESSAGE)
    delivered = relayd.wait_for_event("delivered", queue_id=queue_id)[0]
    assert delivered["tls"].startswith("TLSv1.")
    assert len(servers["enforce-tls.test"].delivered()) == 1


def test_enforce_mx_not_listed_defers(sts_world, daemon, dns_server):
    authority, servers = sts_world
    relayd = start_relayd(daemon, dns_server, authority)
    queue_id = relayd.submit(["user@enforce-other.test"], MESSAGE)
    deferred = relayd.wait_for_event("deferred", queue_id=queue_id)[0]
    assert deferred["status"] == "4.7.5"
    assert servers["enforce-other.test"].delivered() == []


def test_testing_mode_delivers_without_tls(sts_world, daemon, dns_server):
    authority, servers = sts_world
    relayd = start_relayd(daemon, dns_server, authority)
    queue_id = relayd.submit(["user@testing-plain.test"], MESSAGE)
    delivered = relayd.wait_for_event("delivered", queue_id=queue_id)[0]
    assert delivered["tls"] == "none"
    assert len(servers["testing-plain.test"].delivered()) == 1
