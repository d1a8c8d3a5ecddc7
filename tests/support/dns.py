"""A real dnsmasq on loopback, serving the MX, A, AAAA and TXT records a test sets.

Every name that is not configured gets NXDOMAIN, because the config ends with
``address=/#/`` (dnsmasq 2.90: a domain list with no address returns NXDOMAIN,
and ``#`` matches every domain). No query ever leaves the machine: dnsmasq runs
with ``no-resolv`` and ``no-hosts``, and its only upstream servers are the
loopback helpers that ``add_servfail`` and ``add_timeout`` start.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import subprocess
import threading
import time
import weakref
from pathlib import Path

import dns.exception
import dns.message
import dns.nameserver
import dns.query
import dns.rcode

DNSMASQ = "/usr/sbin/dnsmasq"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0
START_ATTEMPTS = 5

# ASCII host names only (A-labels for IDNs). dnsmasq splits options on commas,
# slashes and newlines, so a name with any of them could inject config.
_NAME_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*$")


def _normalize_name(name: str) -> str:
    """Return `name` without a trailing dot, raising ValueError if it is not a host name."""
    stripped = name[:-1] if name.endswith(".") else name
    if len(stripped) > 253 or not _NAME_RE.match(stripped):
        raise ValueError(f"invalid DNS name {name!r}: use ASCII labels (A-labels for IDNs)")
    return stripped


def _quote_txt(text: str) -> str:
    """Return `text` as one quoted dnsmasq config string."""
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError(f"invalid TXT string {text!r}: line breaks and NUL are not allowed")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _free_udp_tcp_port(host: str) -> int:
    """Return a port that is free for both UDP and TCP on `host` right now.

    Another process can still take it before dnsmasq binds it, which is why
    DnsServer.start retries.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both UDP and TCP found on {host}")


class _ServfailResponder:
    """A UDP DNS server on loopback that returns SERVFAIL to every query.

    NOTE: UDP only. dnsmasq forwards a query over TCP only when the client
    used TCP, which dnspython's resolver does only after a truncated UDP reply.
    """

    def __init__(self, host: str = LOOPBACK) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((host, 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="servfail-responder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                wire, peer = self._socket.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                continue
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
            try:
                self._socket.sendto(response.to_wire(), peer)
            except OSError:
                return

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._socket.close()


def _terminate(process: subprocess.Popen) -> None:
    """Stop `process` with SIGTERM, then SIGKILL if it has not exited within 5 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class _Resources:
    """The processes and sockets of one DnsServer run, closed by stop() or its finalizer."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.servfail_responder: _ServfailResponder | None = None
        self.blackhole: socket.socket | None = None

    def close(self) -> None:
        if self.process is not None:
            _terminate(self.process)
        if self.servfail_responder is not None:
            self.servfail_responder.close()
        if self.blackhole is not None:
            self.blackhole.close()


class DnsServer:
    """dnsmasq on 127.0.0.1 at a free UDP and TCP port, serving the records added before start().

    Responses for configured names carry the AA flag. NXDOMAIN for unknown
    names and NODATA (a name with records, but none of the requested type)
    come back without AA, and dnspython's resolver raises NXDOMAIN and
    NoAnswer for them. A parent of a configured name, such as example.com for
    mx.example.com, gets NODATA. To change records, call stop(), add records
    and call start() again.
    """

    def __init__(self, tmp_path: str | Path, ttl: int = 0) -> None:
        # dnsmasq gives records from its config this TTL in seconds ("local-ttl");
        # its default of 0 keeps clients from caching them.
        self.ttl = ttl
        self.directory = Path(tmp_path) / "dnsmasq"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / "dnsmasq.conf"
        self.log_path = self.directory / "dnsmasq.log"
        self.pid_path = self.directory / "dnsmasq.pid"
        # dnsmasq reports startup errors on stderr, before it opens log_path.
        self.stderr_path = self.directory / "dnsmasq.stderr"
        self.host = LOOPBACK
        self.port: int | None = None
        self._records: list[str] = []
        self._servfail_domains: list[str] = []
        self._timeout_domains: list[str] = []
        self._resources: _Resources | None = None
        self._finalizer: weakref.finalize | None = None

    # Records

    def add_mx(self, domain: str, host: str, preference: int = 10) -> None:
        if not 0 <= preference <= 65535:
            raise ValueError(f"invalid MX preference {preference}: must be 0..65535")
        self._records.append(f"mx-host={_normalize_name(domain)},{_normalize_name(host)},{preference}")

    def add_null_mx(self, domain: str) -> None:
        """Add the RFC 7505 null MX: one MX record with preference 0 and exchange "."."""
        # dnsmasq 2.90 writes "." as the root name, so the RDATA is 00 00 00.
        # Unlike dns-rr, mx-host also makes the name exist for other types (NODATA, not NXDOMAIN).
        self._records.append(f"mx-host={_normalize_name(domain)},.,0")

    def add_a(self, name: str, ipv4: str) -> None:
        address = ipaddress.IPv4Address(ipv4)
        self._records.append(f"host-record={_normalize_name(name)},{address}")

    def add_aaaa(self, name: str, ipv6: str) -> None:
        address = ipaddress.IPv6Address(ipv6)
        self._records.append(f"host-record={_normalize_name(name)},{address}")

    def add_txt(self, name: str, *texts: str) -> None:
        """Add one TXT record whose character-strings are `texts`, in order.

        dnsmasq splits a string longer than 255 bytes into 255-byte chunks.
        """
        if not texts:
            raise ValueError("add_txt needs at least one string")
        quoted = ",".join(_quote_txt(text) for text in texts)
        self._records.append(f"txt-record={_normalize_name(name)},{quoted}")

    def add_servfail(self, domain: str) -> None:
        """Make every query for `domain` and its subdomains return SERVFAIL."""
        self._servfail_domains.append(_normalize_name(domain))

    def add_timeout(self, domain: str) -> None:
        """Make every query for `domain` and its subdomains go unanswered."""
        self._timeout_domains.append(_normalize_name(domain))

    # Lifecycle

    @property
    def address(self) -> str:
        """The server as "127.0.0.1:PORT"."""
        if self.port is None:
            raise RuntimeError("DnsServer is not started")
        return f"{self.host}:{self.port}"

    @property
    def nameservers(self) -> list[dns.nameserver.Do53Nameserver]:
        """A value for the `nameservers` attribute of a dnspython Resolver."""
        if self.port is None:
            raise RuntimeError("DnsServer is not started")
        return [dns.nameserver.Do53Nameserver(self.host, self.port)]

    def start(self) -> DnsServer:
        if self._resources is not None:
            raise RuntimeError("DnsServer is already running")
        self._resources = _Resources()
        self._finalizer = weakref.finalize(self, self._resources.close)
        try:
            self._start_upstream_helpers()
            self._start_dnsmasq()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._resources = None
        self.port = None

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def read_log(self) -> str:
        """Return dnsmasq's log, which lists every query (log-queries is on)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _start_upstream_helpers(self) -> None:
        if self._servfail_domains:
            self._resources.servfail_responder = _ServfailResponder(self.host)
        if self._timeout_domains:
            # A bound socket that is never read keeps the port taken, so dnsmasq
            # gets neither a reply nor an ICMP port-unreachable error.
            self._resources.blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._resources.blackhole.bind((self.host, 0))

    def _start_dnsmasq(self) -> None:
        last_error = ""
        for _ in range(START_ATTEMPTS):
            port = _free_udp_tcp_port(self.host)
            self.config_path.write_text(self._render_config(port))
            self.log_path.unlink(missing_ok=True)
            with open(self.stderr_path, "wb") as stderr:
                process = subprocess.Popen(
                    [DNSMASQ, f"--conf-file={self.config_path}"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            self._resources.process = process
            if self._wait_until_answering(process, port):
                self.port = port
                return
            _terminate(process)
            last_error = self.stderr_path.read_text(errors="replace").strip()
            # A port taken between the probe and dnsmasq's bind is worth another try.
            if "in use" not in last_error:
                break
        raise RuntimeError(
            f"dnsmasq failed to start: {last_error or 'no response to the probe query'}"
            f" (config {self.config_path}, log {self.log_path})"
        )

    def _wait_until_answering(self, process: subprocess.Popen, port: int) -> bool:
        probe = dns.message.make_query("dnsmasq-probe.invalid", "A")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                dns.query.udp(probe, self.host, port=port, timeout=0.2)
                return True
            except (dns.exception.Timeout, OSError):
                time.sleep(0.05)
        return False

    def _render_config(self, port: int) -> str:
        lines = [
            f"port={port}",
            f"listen-address={self.host}",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "keep-in-foreground",
            "cache-size=0",
            f"pid-file={self.pid_path}",
            f"log-facility={self.log_path}",
            "log-queries",
            f"local-ttl={self.ttl}",
        ]
        if os.geteuid() == 0:
            # Started as root, dnsmasq otherwise switches to "nobody", which
            # cannot write the log into a temporary directory that root owns.
            lines.append("user=root")
        lines += self._records
        servfail_responder = self._resources.servfail_responder
        if servfail_responder is not None:
            target = f"{self.host}#{servfail_responder.port}"
            lines += [f"server=/{domain}/{target}" for domain in self._servfail_domains]
        blackhole = self._resources.blackhole
        if blackhole is not None:
            target = f"{self.host}#{blackhole.getsockname()[1]}"
            lines += [f"server=/{domain}/{target}" for domain in self._timeout_domains]
        # Last, so any more specific server= line above takes precedence.
        lines.append("address=/#/")
        return "\n".join(lines) + "\n"
