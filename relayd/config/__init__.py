"""relayd's configuration: the dataclass tree and the TOML loader."""

from relayd.config.loader import ConfigError, load_config, parse_config
from relayd.config.model import Config

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]
