"""sd_notify: tell systemd that relayd is ready or stopping (Type=notify units).

The protocol is one datagram of KEY=VALUE lines sent to the Unix socket named
by NOTIFY_SOCKET (sd_notify(3)); a name starting with "@" is in the abstract
namespace. Without NOTIFY_SOCKET, as outside systemd, nothing is sent.
"""

import os
import socket

import structlog

log = structlog.get_logger("relayd")


def notify(*lines: str) -> bool:
    """Send `lines` ("READY=1", "STOPPING=1", "STATUS=...") to systemd; return True if a datagram was sent.

    A failure is logged and otherwise ignored: the service manager's view of
    the state is not worth stopping mail for.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError as exc:
        log.warning("sd_notify_failed", socket=os.environ.get("NOTIFY_SOCKET"), error=str(exc))
        return False
    return True
