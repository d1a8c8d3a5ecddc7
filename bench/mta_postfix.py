"""Postfix under test: a private instance, run as root, that relays everything to the benchmark sink.

The instance has its own config_directory, queue_directory and
data_directory in a temporary directory and shares nothing with a system
Postfix. It listens only on 127.0.0.1 at a port chosen by the benchmark and
relays mail from 127.0.0.0/8 only. It delivers nothing locally and makes no
DNS look-up, because the relay host is an IP address in brackets and DNS
support is disabled. TLS is off on both sides, as it is for relayd.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench import procstat

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

MAIN_CF = """\
# Benchmark instance: relays from 127.0.0.1:{smtp_port} to [127.0.0.1]:{sink_port}, nothing else.
compatibility_level = 3.6
queue_directory = {directory}/queue
data_directory = {directory}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {directory}/maillog
maillog_file_prefixes = {directory}

myhostname = postfix-bench.test
mydomain = postfix-bench.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4

# Relay only for loopback clients, and everything to the sink. Nothing is
# local: no local domains, aliases or local delivery agent.
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:5.1.1 local delivery is disabled in this instance
relayhost = [127.0.0.1]:{sink_port}

# No DNS: the relay host is an address literal, clients are not looked up.
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtp_address_preference = ipv4

# Plain text on loopback, as relayd is configured in the benchmark.
smtp_tls_security_level = none
smtpd_tls_security_level = none

# As many connections to the sink as relayd opens (delivery.max_per_domain).
default_destination_concurrency_limit = 20
smtp_destination_concurrency_limit = 20

# Retry quickly, like relayd's benchmark config; the default backoff is minutes.
minimal_backoff_time = 1s
maximal_backoff_time = 5s
queue_run_delay = 1s

biff = no
append_dot_mydomain = no
smtpd_banner = $myhostname ESMTP
"""

# One service per line: name, type, private, unprivileged, chroot, wakeup,
# maximum processes, command. Only what a relay needs: no pickup (nothing is
# submitted with sendmail), no local delivery, no TLS manager.
MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
cleanup    unix n - n - 0 cleanup
qmgr       unix n - n 300 1 qmgr
rewrite    unix - - n - - trivial-rewrite
bounce     unix - - n - 0 bounce
defer      unix - - n - 0 bounce
trace      unix - - n - 0 bounce
verify     unix - - n - 1 verify
flush      unix n - n 1000? 0 flush
proxymap   unix - - n - - proxymap
smtp       unix - - n - - smtp
relay      unix - - n - - smtp
showq      unix n - n - - showq
error      unix - - n - - error
retry      unix - - n - - error
discard    unix - - n - - discard
anvil      unix - - n - 1 anvil
scache     unix - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


def unavailable_reason() -> str | None:
    """Return why Postfix cannot run here, or None when it can."""
    if not Path(POSTFIX).exists():
        return f"{POSTFIX} is not installed (Debian package postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance must be started as root"
    return None


class Postfix:
    """One private Postfix instance, from `postfix -c DIR start` to `postfix -c DIR stop`."""

    name = "postfix"

    def __init__(self, directory: Path, smtp_port: int, sink_port: int):
        self.directory = Path(directory)
        self.smtp_port = smtp_port
        self.config_directory = self.directory / "etc"
        self.queue_directory = self.directory / "queue"
        # postfix(1) creates the queue's subdirectories but not the queue
        # directory itself. The daemons run as the postfix user, which must
        # reach the queue and own the data directory.
        for path in (self.directory, self.config_directory, self.queue_directory, self.directory / "data"):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
        shutil.chown(self.directory / "data", user="postfix")
        values = {"directory": self.directory, "smtp_port": smtp_port, "sink_port": sink_port}
        (self.config_directory / "main.cf").write_text(MAIN_CF.format(**values))
        (self.config_directory / "master.cf").write_text(MASTER_CF.format(**values))
        self.master_pid: int | None = None

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config_directory), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=START_TIMEOUT,
        )

    def start(self) -> float:
        """Start the instance and wait until it accepts connections; return the time.monotonic() of the start."""
        started = time.monotonic()
        result = self._postfix("start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed ({result.returncode}): {result.stderr.strip()}")
        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            self.master_pid = self.master_pid or self._read_master_pid()
            if self.master_pid is not None:
                try:
                    with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1):
                        return started
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"Postfix did not listen on port {self.smtp_port} within {START_TIMEOUT} s; see {self.directory}/maillog")

    def stop(self) -> float:
        """Stop the instance, then kill what is left of its process group; return the seconds it took."""
        self.master_pid = self.master_pid or self._read_master_pid()
        if self.master_pid is None:
            return 0.0
        started = time.monotonic()
        self._postfix("stop", check=False)
        deadline = started + STOP_TIMEOUT
        while time.monotonic() < deadline and self._alive():
            time.sleep(0.05)
        self.kill()
        return time.monotonic() - started

    def _read_master_pid(self) -> int | None:
        try:
            text = (self.queue_directory / "pid" / "master.pid").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None

    def kill(self) -> None:
        """SIGKILL every process left in the master's process group."""
        # After a failed start the master may run although start() never saw its pid.
        self.master_pid = self.master_pid or self._read_master_pid()
        if self.master_pid is None:
            return
        if self._alive():
            try:
                os.killpg(self.master_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.master_pid = None

    def _alive(self) -> bool:
        return any(member.state != "Z" for member in procstat.group_members(self.master_pid))

    @property
    def pgid(self) -> int:
        # master(8) becomes a session leader, so its children share its process group.
        return self.master_pid

    def cpu_seconds(self) -> float:
        return procstat.group_cpu_seconds(self.pgid)

    def memory(self) -> dict[str, int | None]:
        """Return the summed current RSS of the instance's processes, in bytes."""
        members = [m for m in procstat.group_members(self.pgid) if m.state != "Z"]
        return {"rss": sum(m.rss_bytes for m in members), "peak_rss": None}

    def queue_length(self) -> int:
        """Return the number of queue files not yet delivered."""
        count = 0
        for queue in QUEUES:
            for _, _, files in os.walk(self.queue_directory / queue):
                count += len(files)
        return count

    def version(self) -> str:
        result = subprocess.run([POSTCONF, "-d", "-h", "mail_version"], capture_output=True, text=True)
        return f"Postfix {result.stdout.strip()}"

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
