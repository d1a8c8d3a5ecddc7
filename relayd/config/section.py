"""The TOML table reader that every section parser uses, the checks they share, and the error they raise."""

import ipaddress
import json
import re
from typing import Any

import idna

from relayd.config.units import DURATION_HELP, SIZE_HELP, HostPort, parse_duration, parse_host_port, parse_size


# TOML 1.0: a bare key is ASCII letters, digits, "_" and "-".
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(Exception):
    """An invalid configuration file; the message names the key, the value and what is allowed."""


class Section:
    """One TOML table being read; `finish()` raises ConfigError for any key that was not read."""

    def __init__(self, table: Any, path: str):
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: expected a table, found {show_value(table)}")
        self.table = table
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        # A key that is not a TOML bare key, such as a route's domain, is
        # shown quoted, as it is written in the file: routes."example.com".
        written = name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
        return f"{self.path}.{written}" if self.path else written

    def has(self, name: str) -> bool:
        return name in self.table

    def raw(self, name: str) -> Any:
        self.used.add(name)
        return self.table[name]

    def fail(self, name: str, allowed: str) -> ConfigError:
        return ConfigError(f"{self.key(name)} = {show_value(self.table[name])}: expected {allowed}")

    def string(self, name: str, default: str) -> str:
        if not self.has(name):
            return default
        value = self.raw(name)
        if not isinstance(value, str) or not value:
            raise self.fail(name, "a non-empty string")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise self.fail(name, "one of " + ", ".join(f'"{c}"' for c in choices))
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        if not self.has(name):
            return default
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(name, f"an integer from {low} to {high}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        if not self.has(name):
            return default
        value = self.raw(name)
        if not isinstance(value, bool):
            raise self.fail(name, "true or false")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        if not self.has(name):
            return default
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise self.fail(name, f"a number from {low} to {high}")
        return float(value)

    def duration(self, name: str, default: float) -> float:
        if not self.has(name):
            return default
        value = self.raw(name)
        try:
            seconds = parse_duration(value) if isinstance(value, str) else -1
        except ValueError:
            seconds = -1
        if seconds <= 0:
            raise self.fail(name, f"{DURATION_HELP}, greater than zero")
        return seconds

    def size(self, name: str, default: int) -> int:
        if not self.has(name):
            return default
        value = self.raw(name)
        try:
            size = parse_size(value) if isinstance(value, str) else 0
        except ValueError:
            size = 0
        if size <= 0:
            raise self.fail(name, f"{SIZE_HELP}, greater than zero")
        return size

    def duration_or_zero(self, name: str, default: float) -> float:
        """Read a duration that may also be "0s" (turning the feature off)."""
        if self.has(name) and self.table[name] in ("0", "0s"):
            self.raw(name)
            return 0.0
        return self.duration(name, default)

    def optional_path(self, name: str) -> str:
        """Read a file path where "" means "not set"."""
        if not self.has(name):
            return ""
        value = self.raw(name)
        if not isinstance(value, str):
            raise self.fail(name, 'a file path, or "" for the default')
        return value

    def ip_addresses(self, name: str) -> tuple[str, ...]:
        texts = self.string_list(name, ())
        try:
            return tuple(str(ipaddress.ip_address(text)) for text in texts)
        except ValueError:
            raise self.fail(name, 'a list of IP addresses such as "192.0.2.10" or "2001:db8::10"') from None

    def host_ports(self, name: str, default: tuple, default_port: int | None) -> tuple[HostPort, ...]:
        if not self.has(name):
            return default
        return tuple(self.host_port(name, text, default_port) for text in self.string_list(name, ()))

    def host_port(self, name: str, text: str, default_port: int | None) -> HostPort:
        """Parse `text`, read from key `name`; without `default_port` the port is required."""
        try:
            return parse_host_port(text, default_port)
        except ValueError:
            form = '"host:port" or "[ipv6]:port"' if default_port is None else '"host", "host:port" or "[ipv6]:port"'
            raise ConfigError(f"{self.key(name)} = {show_value(self.table[name])}: invalid address {text!r}; expected {form}") from None

    def string_list(self, name: str, default: tuple) -> tuple[str, ...] | tuple:
        if not self.has(name):
            return default
        value = self.raw(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "a list of strings")
        return tuple(value)

    def table_of(self, name: str) -> "Section":
        value = self.raw(name) if self.has(name) else {}
        return Section(value, self.key(name))

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            name = unknown[0]
            raise ConfigError(
                f"{self.key(name)} = {show_value(self.table[name])}: unknown key; the keys allowed here are: {self.allowed}"
            )

    allowed = ""

    def expect(self, *names: str) -> "Section":
        """Declare the keys this table may contain, for the unknown-key message."""
        self.allowed = ", ".join(names)
        return self


def missing(section: Section, name: str) -> ConfigError:
    return ConfigError(f"{section.key(name)}: missing; this key is required")


def ascii_domain(domain: str) -> str | None:
    """Return `domain` in lower-case IDNA ASCII form, or None when it is not a valid domain."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def show_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)
