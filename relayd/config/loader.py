"""Loading and validation of relayd.toml.

Loading goes: defaults (config.model), the file, validation. Every error names
the key path, the value found and what is allowed, so start-up stops with a
sentence an operator can act on.
"""

import dataclasses
import ipaddress
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Any

import idna

from relayd.config import model
from relayd.config.units import (
    DURATION_HELP,
    SIZE_HELP,
    HostPort,
    parse_duration,
    parse_host_port,
    parse_size,
)


# Each metrics domain adds a series per class and recipient state.
MAX_METRICS_DOMAINS = 50


class ConfigError(Exception):
    """An invalid configuration file; the message names the key, the value and what is allowed."""


class Section:
    """One TOML table being read; `finish()` raises ConfigError for any key that was not read."""

    def __init__(self, table: Any, path: str):
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: expected a table, found {_show(table)}")
        self.table = table
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.table

    def raw(self, name: str) -> Any:
        self.used.add(name)
        return self.table[name]

    def fail(self, name: str, allowed: str) -> ConfigError:
        return ConfigError(f"{self.key(name)} = {_show(self.table[name])}: expected {allowed}")

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

    def boolean(self, name: str, default: bool) -> bool:
        if not self.has(name):
            return default
        value = self.raw(name)
        if not isinstance(value, bool):
            raise self.fail(name, "true or false")
        return value

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
                f"{self.key(name)} = {_show(self.table[name])}: unknown key; the keys allowed here are: {self.allowed}"
            )

    allowed = ""

    def expect(self, *names: str) -> "Section":
        """Declare the keys this table may contain, for the unknown-key message."""
        self.allowed = ", ".join(names)
        return self


def load_config(path: str | Path) -> model.Config:
    """Read and validate the TOML file at `path`; raise ConfigError on any problem."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: the file is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    config = parse_config(document)
    return dataclasses.replace(config, path=path)


def parse_config(document: dict) -> model.Config:
    """Build a Config from an already parsed TOML document."""
    root = Section(document, "").expect(
        "server", "smtp", "http", "dns", "delivery", "routes", "retry", "classes", "dkim", "policy", "webhooks"
    )
    retry = _retry(root.table_of("retry"), model.RetryPolicy())
    classes, class_rules, class_header = _classes(root.table_of("classes"), retry)
    config = model.Config(
        server=_server(root.table_of("server")),
        smtp=_smtp(root.table_of("smtp")),
        http=_http(root.table_of("http")),
        dns=_dns(root.table_of("dns")),
        delivery=_delivery(root.table_of("delivery")),
        routes=_routes(root.table_of("routes")),
        retry=retry,
        classes=classes,
        class_rules=class_rules,
        class_header=class_header,
        dkim_keys=_dkim(root.table_of("dkim")),
        policy=_policy(root.table_of("policy")),
        webhooks=_webhooks(root),
    )
    root.finish()
    return config


def _server(section: Section) -> model.ServerConfig:
    section.expect("hostname", "spool_dir", "shutdown_grace")
    default = model.ServerConfig()
    hostname = section.string("hostname", default.hostname)
    if not _is_hostname(hostname):
        raise section.fail("hostname", "a DNS host name such as relay.example.com")
    spool_dir = Path(section.string("spool_dir", str(default.spool_dir)))
    shutdown_grace = section.duration("shutdown_grace", default.shutdown_grace)
    section.finish()
    return model.ServerConfig(hostname=hostname, spool_dir=spool_dir, shutdown_grace=shutdown_grace)


def _smtp(section: Section) -> model.SmtpConfig:
    section.expect("listen", "allowed_networks", "max_message_size", "max_recipients", "idle_timeout")
    default = model.SmtpConfig()
    listen = _host_ports(section, "listen", default.listen, default_port=None)
    if not listen:
        raise section.fail("listen", 'at least one address such as "127.0.0.1:2525"')
    if len(set(listen)) != len(listen):
        raise section.fail("listen", "each address once")
    networks = default.allowed_networks
    if section.has("allowed_networks"):
        try:
            networks = tuple(ipaddress.ip_network(n) for n in section.string_list("allowed_networks", ()))
        except ValueError as exc:
            raise section.fail(
                "allowed_networks", f'a list of networks such as "127.0.0.0/8" or "::1/128" ({exc})'
            ) from None
    config = model.SmtpConfig(
        listen=listen,
        allowed_networks=networks,
        max_message_size=section.size("max_message_size", default.max_message_size),
        max_recipients=section.integer("max_recipients", default.max_recipients, 1, 100_000),
        idle_timeout=section.duration("idle_timeout", default.idle_timeout),
    )
    section.finish()
    return config


def _http(section: Section) -> model.HttpConfig:
    section.expect("listen", "metrics_domains")
    default = model.HttpConfig()
    listen = default.listen
    if section.has("listen"):
        listen = _host_port(section, "listen", section.string("listen", ""), default_port=None)
    domains = []
    for domain in section.string_list("metrics_domains", default.metrics_domains):
        ascii_domain = _ascii_domain(domain)
        if ascii_domain is None or not _is_hostname(ascii_domain):
            raise section.fail("metrics_domains", "a list of domains such as [\"gmail.com\", \"outlook.com\"]")
        domains.append(ascii_domain)
    if len(domains) > MAX_METRICS_DOMAINS:
        raise section.fail("metrics_domains", f"at most {MAX_METRICS_DOMAINS} domains, so the number of series stays small")
    section.finish()
    return model.HttpConfig(listen=listen, metrics_domains=tuple(dict.fromkeys(domains)))


def _dns(section: Section) -> model.DnsConfig:
    section.expect("nameservers", "timeout")
    default = model.DnsConfig()
    nameservers = _host_ports(section, "nameservers", default.nameservers, default_port=53)
    for server in nameservers:
        try:
            ipaddress.ip_address(server.host)
        except ValueError:
            raise section.fail("nameservers", 'a list of IP addresses with optional ports, such as "127.0.0.1:5353"') from None
    config = model.DnsConfig(nameservers=nameservers, timeout=section.duration("timeout", default.timeout))
    section.finish()
    return config


def _delivery(section: Section) -> model.DeliveryConfig:
    section.expect(
        "port",
        "tls",
        "tls_policy",
        "connect_timeout",
        "command_timeout",
        "data_timeout",
        "max_concurrency",
        "max_per_domain",
        "connection_idle",
        "pause_after",
        "pause",
        "source_addresses",
        "dsn",
        "mta_sts",
        "ca_file",
    )
    default = model.DeliveryConfig()
    config = model.DeliveryConfig(
        port=section.integer("port", default.port, 1, 65535),
        tls=section.choice("tls", default.tls, model.TLS_MODES),
        connect_timeout=section.duration("connect_timeout", default.connect_timeout),
        command_timeout=section.duration("command_timeout", default.command_timeout),
        data_timeout=section.duration("data_timeout", default.data_timeout),
        max_concurrency=section.integer("max_concurrency", default.max_concurrency, 1, 10_000),
        max_per_domain=section.integer("max_per_domain", default.max_per_domain, 1, 10_000),
        connection_idle=_duration_or_zero(section, "connection_idle", default.connection_idle),
        pause_after=section.integer("pause_after", default.pause_after, 1, 1000),
        pause=section.duration("pause", default.pause),
        tls_policy=_tls_policy(section.table_of("tls_policy")),
        source_addresses=_ip_addresses(section, "source_addresses"),
        dsn=section.boolean("dsn", default.dsn),
        mta_sts=section.boolean("mta_sts", default.mta_sts),
        ca_file=_optional_path(section, "ca_file"),
    )
    section.finish()
    return config


def _routes(section: Section) -> MappingProxyType:
    routes = {}
    for domain in list(section.table):
        value = section.string(domain, "")
        if domain == "*":
            key = "*"
        else:
            key = _ascii_domain(domain)
            if key is None:
                raise ConfigError(f"{section.key(domain)}: invalid domain {domain!r}; expected a domain such as example.com or \"*\"")
        hop = _host_port(section, domain, value, default_port=0)
        routes[key] = model.Route(host=hop.host, port=hop.port or None)
    return MappingProxyType(routes)


def _retry(section: Section, base: model.RetryPolicy) -> model.RetryPolicy:
    section.expect("first", "multiplier", "max_interval", "give_up")
    policy = model.RetryPolicy(
        first=section.duration("first", base.first),
        multiplier=section.number("multiplier", base.multiplier, 1.0, 100.0),
        max_interval=section.duration("max_interval", base.max_interval),
        give_up=section.duration("give_up", base.give_up),
    )
    if policy.max_interval < policy.first:
        name = "max_interval" if section.has("max_interval") else "first"
        raise section.fail(name, f"max_interval ({policy.max_interval:g}s) to be at least first ({policy.first:g}s)")
    section.finish()
    return policy


def _classes(section: Section, retry: model.RetryPolicy) -> tuple[MappingProxyType, tuple, bool]:
    section.expect(*model.MESSAGE_CLASSES, "header", "rules")
    classes = {}
    for name in model.MESSAGE_CLASSES:
        table = section.table_of(name).expect("deadline", "retry", "share")
        base = dataclasses.replace(retry, **model.CLASS_RETRY_DEFAULTS[name])
        classes[name] = model.ClassConfig(
            deadline=table.duration("deadline", model.CLASS_DEADLINES[name]),
            retry=_retry(table.table_of("retry"), base),
            share=table.number("share", model.CLASS_SHARES[name], 0.0, 1.0),
        )
        table.finish()
    total = sum(c.share for c in classes.values())
    if total > 1.0:
        raise ConfigError(f"classes.*.share: the shares add up to {total:g}; expected at most 1")
    header = section.boolean("header", True)
    rules = _class_rules(section)
    section.finish()
    return MappingProxyType(classes), rules, header


def _class_rules(section: Section) -> tuple[model.ClassRule, ...]:
    entries = section.raw("rules") if section.has("rules") else []
    if not isinstance(entries, list):
        raise section.fail("rules", "an array of tables ([[classes.rules]])")
    rules = []
    for index, entry in enumerate(entries):
        table = Section(entry, f"classes.rules[{index}]").expect("class", "sender", "recipient_domain")
        if not table.has("class"):
            raise _missing(table, "class")
        message_class = table.choice("class", "", model.MESSAGE_CLASSES)
        sender = table.string("sender", "").lower()
        domain = table.string("recipient_domain", "")
        if domain:
            domain = _ascii_domain(domain) or ""
            if not domain:
                raise table.fail("recipient_domain", "a domain such as example.com")
        if not sender and not domain:
            raise ConfigError(f"classes.rules[{index}]: set sender or recipient_domain, or both")
        if sender and "@" not in sender:
            raise table.fail("sender", 'an address such as "alerts@example.com" or "*@example.com"')
        table.finish()
        rules.append(model.ClassRule(message_class=message_class, sender=sender, recipient_domain=domain))
    return tuple(rules)


def _dkim(section: Section) -> tuple[model.DkimKey, ...]:
    section.expect("keys")
    entries = section.raw("keys") if section.has("keys") else []
    if not isinstance(entries, list):
        raise section.fail("keys", "an array of tables ([[dkim.keys]])")
    keys = []
    for index, entry in enumerate(entries):
        table = Section(entry, f"dkim.keys[{index}]").expect("domain", "selector", "key_file", "algorithm", "active")
        domain = table.string("domain", "")
        if _ascii_domain(domain) is None:
            raise table.fail("domain", "a domain such as example.com") if table.has("domain") else _missing(table, "domain")
        selector = table.string("selector", "")
        if not selector:
            raise _missing(table, "selector")
        key_file = table.string("key_file", "")
        if not key_file:
            raise _missing(table, "key_file")
        if not _is_hostname(selector):
            raise table.fail("selector", "a DNS label such as s2026 (letters, digits, hyphens)")
        algorithm = table.choice("algorithm", "rsa-sha256", model.DKIM_ALGORITHMS)
        active = table.boolean("active", True)
        table.finish()
        keys.append(
            model.DkimKey(
                domain=_ascii_domain(domain), selector=selector, key_file=Path(key_file), algorithm=algorithm, active=active
            )
        )
    section.finish()
    return tuple(keys)


def _policy(section: Section) -> model.PolicyConfig:
    section.expect("alignment")
    policy = model.PolicyConfig(alignment=section.choice("alignment", model.PolicyConfig().alignment, model.ALIGNMENT_POLICIES))
    section.finish()
    return policy


def _webhooks(root: Section) -> tuple[model.Webhook, ...]:
    entries = root.raw("webhooks") if root.has("webhooks") else []
    if not isinstance(entries, list):
        raise root.fail("webhooks", "an array of tables ([[webhooks]])")
    hooks = []
    for index, entry in enumerate(entries):
        table = Section(entry, f"webhooks[{index}]").expect("url", "secret", "events")
        url = table.string("url", "")
        if not url.startswith(("http://", "https://")):
            raise table.fail("url", "an http:// or https:// URL") if url else _missing(table, "url")
        secret = table.string("secret", "")
        if not secret:
            raise _missing(table, "secret")
        events = table.string_list("events", model.WEBHOOK_EVENTS)
        unknown = [e for e in events if e not in model.WEBHOOK_EVENTS]
        if unknown:
            raise table.fail("events", "a list of event types from: " + ", ".join(model.WEBHOOK_EVENTS))
        table.finish()
        hooks.append(model.Webhook(url=url, secret=secret, events=events))
    return tuple(hooks)


def _host_ports(section: Section, name: str, default: tuple, default_port: int | None) -> tuple[HostPort, ...]:
    if not section.has(name):
        return default
    return tuple(_host_port(section, name, text, default_port) for text in section.string_list(name, ()))


def _host_port(section: Section, name: str, text: str, default_port: int | None) -> HostPort:
    try:
        return parse_host_port(text, default_port)
    except ValueError:
        form = '"host:port" or "[ipv6]:port"' if default_port is None else '"host", "host:port" or "[ipv6]:port"'
        raise ConfigError(f"{section.key(name)} = {_show(section.table[name])}: invalid address {text!r}; expected {form}") from None


def _optional_path(section: Section, name: str) -> str:
    """Read a file path where "" means "not set"."""
    if not section.has(name):
        return ""
    value = section.raw(name)
    if not isinstance(value, str):
        raise section.fail(name, 'a file path, or "" for the default')
    return value


def _duration_or_zero(section: Section, name: str, default: float) -> float:
    """Read a duration that may also be "0s" (turning the feature off)."""
    if section.has(name) and section.table[name] in ("0", "0s"):
        section.raw(name)
        return 0.0
    return section.duration(name, default)


def _tls_policy(section: Section) -> MappingProxyType:
    policy = {}
    for domain in list(section.table):
        key = _ascii_domain(domain)
        if key is None:
            raise ConfigError(f"{section.key(domain)}: invalid domain {domain!r}; expected a domain such as example.com")
        policy[key] = section.choice(domain, "", model.TLS_MODES)
    return MappingProxyType(policy)


def _ip_addresses(section: Section, name: str) -> tuple[str, ...]:
    texts = section.string_list(name, ())
    try:
        return tuple(str(ipaddress.ip_address(text)) for text in texts)
    except ValueError:
        raise section.fail(name, 'a list of IP addresses such as "192.0.2.10" or "2001:db8::10"') from None


def _missing(section: Section, name: str) -> ConfigError:
    return ConfigError(f"{section.key(name)}: missing; this key is required")


def _ascii_domain(domain: str) -> str | None:
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def _is_hostname(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return all(
        0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii() and not label.startswith("-") and not label.endswith("-")
        for label in labels
    )


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)
