"""Free TCP ports on loopback for the servers a benchmark run starts."""

import socket


def free_ports(count: int, exclude: set[int] = frozenset()) -> list[int]:
    """Return `count` distinct TCP ports free on 127.0.0.1 right now, none of them in `exclude`.

    Another process can still take one before the caller binds it.
    """
    probes = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            # Kept open until the end, so that the next probe gets another port.
            probes.append(probe)
            port = probe.getsockname()[1]
            if port not in exclude:
                ports.append(port)
        return ports
    finally:
        for probe in probes:
            probe.close()
