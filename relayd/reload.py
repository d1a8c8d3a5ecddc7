"""Configuration loading, and the reload that SIGHUP triggers.

A reload reads the same file with the same checks as start-up, DKIM keys
included. An invalid file changes nothing: the error is logged and the
previous configuration stays in effect. A valid one is handed to every
subscriber in one synchronous pass, with no await in between, so no session
or attempt ever uses half of the old configuration and half of the new.
"""

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import structlog

from relayd import metrics
from relayd.config import Config, ConfigError, load_config
from relayd.dkim.keys import DkimKeyError, SigningKey, load_key

log = structlog.get_logger("relayd")

Subscriber = Callable[[Config, list[SigningKey]], None]

# Keys bound to sockets, files or pools made at start-up: a reload keeps
# their old value and logs that a restart is needed to change them. The
# classes' slot shares are such a key too (see keep_restart_only).
RESTART_ONLY = (
    "server.spool_dir",
    "smtp.listen",
    "http.listen",
    "delivery.max_concurrency",
    "delivery.max_per_domain",
    "delivery.connection_idle",
)


def load_config_and_keys(path: str | Path) -> tuple[Config, list[SigningKey]]:
    """Load the config and its DKIM keys; raise ConfigError naming what to fix."""
    config = load_config(path)
    try:
        keys = [load_key(key) for key in config.dkim_keys]
    except DkimKeyError as exc:
        raise ConfigError(str(exc)) from exc
    return config, keys


def keep_restart_only(current: Config, new: Config) -> tuple[Config, list[str]]:
    """Return `new` with the RESTART_ONLY keys set back to `current`'s values, and the names of those that differed."""
    differed = []
    for name in RESTART_ONLY:
        section, key = name.split(".")
        old_value = getattr(getattr(current, section), key)
        if getattr(getattr(new, section), key) != old_value:
            differed.append(name)
            new = dataclasses.replace(new, **{section: dataclasses.replace(getattr(new, section), **{key: old_value})})

    # The scheduler's slot pools are sized by the shares at start-up.
    if new.shares() != current.shares():
        differed.append("classes.*.share")
        classes = {
            name: dataclasses.replace(found, share=current.classes[name].share) if name in current.classes else found
            for name, found in new.classes.items()
        }
        new = dataclasses.replace(new, classes=MappingProxyType(classes))
    return new, differed


def changed_sections(old: Config, new: Config) -> list[str]:
    return [field.name for field in dataclasses.fields(Config) if field.name != "path" and getattr(old, field.name) != getattr(new, field.name)]


class Reloader:
    """Holds the configuration in effect and replaces it on reload()."""

    def __init__(self, path: str | Path | None, config: Config):
        self.path = Path(path) if path else None
        self.config = config
        self._subscribers: list[Subscriber] = []

    def subscribe(self, apply: Subscriber) -> None:
        """Call `apply(config, keys)` on every valid reload.

        `apply` must not await. It should build what it needs before it
        assigns anything, so that an exception leaves its part unchanged.
        """
        self._subscribers.append(apply)

    def reload(self) -> bool:
        """Read the file again and apply it; return False, changing nothing, when it is invalid."""
        if self.path is None:
            log.error("config_reload_failed", error="relayd was started without a config file", detail="nothing to reload")
            metrics.record_reload(False)
            return False
        try:
            config, keys = load_config_and_keys(self.path)
        except ConfigError as exc:
            log.error("config_reload_failed", path=str(self.path), error=str(exc), detail="the previous configuration stays in effect")
            metrics.record_reload(False)
            return False

        config, restart_needed = keep_restart_only(self.config, config)
        if restart_needed:
            log.warning("config_restart_required", path=str(self.path), keys=restart_needed, detail="these keys keep their old values until relayd restarts")
        changed = changed_sections(self.config, config)
        try:
            for apply in self._subscribers:
                apply(config, keys)
        except Exception as exc:
            # NOTE: with several subscribers, those before the failing one
            # have applied the new config already.
            log.exception("config_reload_failed", path=str(self.path), error=repr(exc), detail="the new configuration could not be applied")
            metrics.record_reload(False)
            return False
        self.config = config
        metrics.record_reload(True)
        log.info("config_reloaded", path=str(self.path), changed=changed, dkim_keys=len(keys))
        return True
