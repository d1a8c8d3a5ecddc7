"""Parsing of the string forms the config file uses for durations, sizes and addresses."""

import ipaddress
import re
from dataclasses import dataclass

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)$", re.ASCII)
_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}

DURATION_HELP = 'a duration such as "500ms", "30s", "15m", "1h" or "2d"'
SIZE_HELP = 'a size such as "512KB", "25MB" or "1GiB" (units B, KB, MB, GB, KiB, MiB, GiB)'


def parse_duration(text: str) -> float:
    """Return the duration `text` ("30s", "15m", "2d") in seconds; raise ValueError if malformed."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """Return the size `text` ("25MB", "1GiB") in bytes; MB is 10^6 bytes and MiB 2^20."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(text)
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


@dataclass(frozen=True)
class HostPort:
    """A host (name or IP address) and a TCP or UDP port."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_host_port(text: str, default_port: int | None = None) -> HostPort:
    """Parse "host:port", "[ipv6]:port", or a bare host when `default_port` is given."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(text)
        ipaddress.IPv6Address(host)
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise ValueError(text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        # A bare IPv6 address: only valid without a port.
        ipaddress.IPv6Address(text)
        host, port_text = text, None
    else:
        host, port_text = text, None

    if not host or any(ch.isspace() for ch in host):
        raise ValueError(text)
    if port_text is None:
        if default_port is None:
            raise ValueError(text)
        return HostPort(host, default_port)
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(text)
    return HostPort(host, int(port_text))
