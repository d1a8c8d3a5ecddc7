"""Choosing a message's class: the X-Relayd-Class field, then configured rules, else transactional."""

from relayd.config import Config
from relayd.config.model import MESSAGE_CLASSES
from relayd.headers import header_fields, remove_fields

HEADER = "x-relayd-class"
DEFAULT_CLASS = "transactional"


class InvalidClass(ValueError):
    """An X-Relayd-Class value that names no class."""


def requested_class(content: bytes) -> str | None:
    """Return the class the client asked for in X-Relayd-Class, or None; raise InvalidClass."""
    values = [value.decode("utf-8", "replace").strip().lower() for name, value in header_fields(content) if name == HEADER]
    if not values:
        return None
    if len(set(values)) > 1 or values[0] not in MESSAGE_CLASSES:
        raise InvalidClass(", ".join(sorted(set(values))))
    return values[0]


def without_class_field(content: bytes) -> bytes:
    """Return `content` without X-Relayd-Class, which is for relayd only and never delivered."""
    return remove_fields(content, HEADER)


def choose_class(config: Config, requested: str | None, sender: str, domains: list[str]) -> str:
    """Return the message class: the client's request if allowed, the first matching rule, or the default."""
    if requested is not None and config.class_header:
        return requested
    sender = sender.lower()
    sender_domain = sender.rpartition("@")[2]
    for rule in config.class_rules:
        if rule.sender and rule.sender not in (sender, f"*@{sender_domain}"):
            continue
        if rule.recipient_domain and rule.recipient_domain not in domains:
            continue
        return rule.message_class
    return DEFAULT_CLASS
