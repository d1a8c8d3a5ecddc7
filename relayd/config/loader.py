"""Loading and validation of relayd.toml.

Loading goes: defaults (config.model), the file, validation. Every error names
the key path, the value found and what is allowed, so start-up stops with a
sentence an operator can act on.
"""

import base64
import binascii
import dataclasses
import ipaddress
import re
import tomllib
from pathlib import Path

from relayd.config import model
from relayd.config.delivery import parse_classes, parse_delivery, parse_retry, parse_routes
from relayd.config.section import ConfigError, Section, ascii_domain, missing

__all__ = ["ConfigError", "load_config", "parse_config"]


# Each metrics domain adds a series per class and recipient state.
MAX_METRICS_DOMAINS = 50


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
        "server",
        "smtp",
        "http",
        "dns",
        "delivery",
        "routes",
        "retry",
        "classes",
        "dkim",
        "policy",
        "webhooks",
        "suppression",
        "idempotency",
    )
    retry = parse_retry(root.table_of("retry"), model.RetryPolicy())
    classes, class_rules, class_header = parse_classes(root.table_of("classes"), retry)
    config = model.Config(
        server=_server(root.table_of("server")),
        smtp=_smtp(root.table_of("smtp")),
        http=_http(root.table_of("http")),
        dns=_dns(root.table_of("dns")),
        delivery=parse_delivery(root.table_of("delivery")),
        routes=parse_routes(root.table_of("routes")),
        retry=retry,
        classes=classes,
        class_rules=class_rules,
        class_header=class_header,
        dkim_keys=_dkim(root.table_of("dkim")),
        policy=_policy(root.table_of("policy")),
        webhooks=_webhooks(root),
        suppression=_suppression(root.table_of("suppression")),
        idempotency=_idempotency(root.table_of("idempotency")),
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
    listen = section.host_ports("listen", default.listen, default_port=None)
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
        listen = section.host_port("listen", section.string("listen", ""), default_port=None)
    domains = []
    for domain in section.string_list("metrics_domains", default.metrics_domains):
        domain = ascii_domain(domain)
        if domain is None or not _is_hostname(domain):
            raise section.fail("metrics_domains", 'a list of domains such as ["gmail.com", "outlook.com"]')
        domains.append(domain)
    if len(domains) > MAX_METRICS_DOMAINS:
        raise section.fail("metrics_domains", f"at most {MAX_METRICS_DOMAINS} domains, so the number of series stays small")
    section.finish()
    return model.HttpConfig(listen=listen, metrics_domains=tuple(dict.fromkeys(domains)))


def _dns(section: Section) -> model.DnsConfig:
    section.expect("nameservers", "timeout")
    default = model.DnsConfig()
    nameservers = section.host_ports("nameservers", default.nameservers, default_port=53)
    for server in nameservers:
        try:
            ipaddress.ip_address(server.host)
        except ValueError:
            raise section.fail("nameservers", 'a list of IP addresses with optional ports, such as "127.0.0.1:5353"') from None
    config = model.DnsConfig(nameservers=nameservers, timeout=section.duration("timeout", default.timeout))
    section.finish()
    return config


def _dkim(section: Section) -> tuple[model.DkimKey, ...]:
    section.expect("keys")
    entries = section.raw("keys") if section.has("keys") else []
    if not isinstance(entries, list):
        raise section.fail("keys", "an array of tables ([[dkim.keys]])")
    keys = []
    for index, entry in enumerate(entries):
        table = Section(entry, f"dkim.keys[{index}]").expect("domain", "selector", "key_file", "algorithm", "active")
        domain = table.string("domain", "")
        if ascii_domain(domain) is None:
            raise table.fail("domain", "a domain such as example.com") if table.has("domain") else missing(table, "domain")
        selector = table.string("selector", "")
        if not selector:
            raise missing(table, "selector")
        key_file = table.string("key_file", "")
        if not key_file:
            raise missing(table, "key_file")
        if not _is_hostname(selector):
            raise table.fail("selector", "a DNS label such as s2026 (letters, digits, hyphens)")
        algorithm = table.choice("algorithm", "rsa-sha256", model.DKIM_ALGORITHMS)
        active = table.boolean("active", True)
        table.finish()
        keys.append(
            model.DkimKey(
                domain=ascii_domain(domain), selector=selector, key_file=Path(key_file), algorithm=algorithm, active=active
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
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        table = Section(entry, f"webhooks[{index}]").expect(
            "url", "secret", "events", "timeout", "max_concurrency", "retry"
        )
        url = table.string("url", "")
        if not url.startswith(("http://", "https://")):
            raise table.fail("url", "an http:// or https:// URL") if url else missing(table, "url")
        if url in seen:
            raise table.fail("url", f"a URL not already used by webhooks[{seen[url]}]")
        seen[url] = index
        secret = table.string("secret", "")
        if not secret:
            raise missing(table, "secret")
        if not _is_webhook_secret(secret):
            # The value is a secret: the message names the key, never the value.
            raise ConfigError(
                f"{table.key('secret')}: invalid secret; expected \"whsec_\" followed by the base64 encoding "
                "of 24 to 64 random bytes, such as the output of: "
                "python3 -c 'import base64,os; print(\"whsec_\" + base64.b64encode(os.urandom(32)).decode())'"
            )
        events = table.string_list("events", model.WEBHOOK_EVENTS)
        unknown = [e for e in events if e not in model.WEBHOOK_EVENTS]
        if unknown:
            raise table.fail("events", "a list of event types from: " + ", ".join(model.WEBHOOK_EVENTS))
        default = model.Webhook(url=url, secret=secret)
        hook = model.Webhook(
            url=url,
            secret=secret,
            events=events,
            timeout=table.duration("timeout", default.timeout),
            max_concurrency=table.integer("max_concurrency", default.max_concurrency, 1, 100),
            retry=parse_retry(table.table_of("retry"), default.retry),
        )
        table.finish()
        hooks.append(hook)
    return tuple(hooks)


def _is_webhook_secret(secret: str) -> bool:
    """Check the Standard Webhooks form of a symmetric secret: "whsec_" + base64 of 24 to 64 bytes."""
    prefix, _, encoded = secret.partition("_")
    if prefix != "whsec" or not encoded:
        return False
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(key) <= 64


# RFC 3463 class.subject.detail; "x" stands for any number.
_STATUS_PATTERN = re.compile(r"^5\.(\d{1,3}|x)\.(\d{1,3}|x)$", re.ASCII)


def _suppression(section: Section) -> model.SuppressionConfig:
    section.expect("codes", "action", "ttl")
    default = model.SuppressionConfig()
    codes = section.string_list("codes", default.codes)
    bad = [code for code in codes if not _STATUS_PATTERN.match(code)]
    if bad:
        raise section.fail("codes", f'permanent enhanced status codes such as "5.1.1" or "5.1.x", not "{bad[0]}"')
    config = model.SuppressionConfig(
        codes=codes,
        action=section.choice("action", default.action, model.SUPPRESSION_ACTIONS),
        ttl=section.duration("ttl", default.ttl),
    )
    section.finish()
    return config


def _idempotency(section: Section) -> model.IdempotencyConfig:
    section.expect("window", "by_message_id")
    default = model.IdempotencyConfig()
    config = model.IdempotencyConfig(
        window=section.duration("window", default.window),
        by_message_id=section.boolean("by_message_id", default.by_message_id),
    )
    section.finish()
    return config


def _is_hostname(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return all(
        0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii() and not label.startswith("-") and not label.endswith("-")
        for label in labels
    )
