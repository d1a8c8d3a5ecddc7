"""Parsers of the sections that shape delivery: [delivery], [routes], [retry] and [classes]."""

import dataclasses
from types import MappingProxyType

from relayd.config import model
from relayd.config.section import ConfigError, Section, ascii_domain, missing


def parse_delivery(section: Section) -> model.DeliveryConfig:
    section.expect(
        "port",
        "tls",
        "tls_policy",
        "connect_timeout",
        "command_timeout",
        "data_timeout",
        "max_concurrency",
        "max_per_domain",
        "max_per_host",
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
        max_per_host=section.integer("max_per_host", default.max_per_host, 1, 10_000),
        connection_idle=section.duration_or_zero("connection_idle", default.connection_idle),
        pause_after=section.integer("pause_after", default.pause_after, 1, 1000),
        pause=section.duration("pause", default.pause),
        tls_policy=_tls_policy(section.table_of("tls_policy")),
        source_addresses=section.ip_addresses("source_addresses"),
        dsn=section.boolean("dsn", default.dsn),
        mta_sts=section.boolean("mta_sts", default.mta_sts),
        ca_file=section.optional_path("ca_file"),
    )
    section.finish()
    return config


def parse_routes(section: Section) -> MappingProxyType:
    routes = {}
    for domain in list(section.table):
        value = section.string(domain, "")
        if domain == "*":
            key = "*"
        else:
            key = ascii_domain(domain)
            if key is None:
                raise ConfigError(f"{section.key(domain)}: invalid domain {domain!r}; expected a domain such as example.com or \"*\"")
        hop = section.host_port(domain, value, default_port=0)
        routes[key] = model.Route(host=hop.host, port=hop.port or None)
    return MappingProxyType(routes)


def parse_retry(section: Section, base: model.RetryPolicy) -> model.RetryPolicy:
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


def parse_classes(section: Section, retry: model.RetryPolicy) -> tuple[MappingProxyType, tuple, bool]:
    section.expect(*model.MESSAGE_CLASSES, "header", "rules")
    classes = {}
    for name in model.MESSAGE_CLASSES:
        table = section.table_of(name).expect("deadline", "retry", "share")
        base = dataclasses.replace(retry, **model.CLASS_RETRY_DEFAULTS[name])
        classes[name] = model.ClassConfig(
            deadline=table.duration("deadline", model.CLASS_DEADLINES[name]),
            retry=parse_retry(table.table_of("retry"), base),
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
            raise missing(table, "class")
        message_class = table.choice("class", "", model.MESSAGE_CLASSES)
        sender = table.string("sender", "").lower()
        domain = table.string("recipient_domain", "")
        if domain:
            domain = ascii_domain(domain) or ""
            if not domain:
                raise table.fail("recipient_domain", "a domain such as example.com")
        if not sender and not domain:
            raise ConfigError(f"classes.rules[{index}]: set sender or recipient_domain, or both")
        if sender and "@" not in sender:
            raise table.fail("sender", 'an address such as "alerts@example.com" or "*@example.com"')
        table.finish()
        rules.append(model.ClassRule(message_class=message_class, sender=sender, recipient_domain=domain))
    return tuple(rules)


def _tls_policy(section: Section) -> MappingProxyType:
    policy = {}
    for domain in list(section.table):
        key = ascii_domain(domain)
        if key is None:
            raise ConfigError(f"{section.key(domain)}: invalid domain {domain!r}; expected a domain such as example.com")
        policy[key] = section.choice(domain, "", model.TLS_MODES)
    return MappingProxyType(policy)
