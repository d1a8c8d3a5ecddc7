"""The `relayd` command."""

import argparse
import asyncio
import sys

from relayd import suppression_cli
from relayd.config import ConfigError, load_config
from relayd.logs import configure_logging

DEFAULT_CONFIG = "/etc/relayd/relayd.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relayd", description="Transactional-email relay daemon.")
    commands = parser.add_subparsers(dest="command", required=True)

    config_option = {"default": DEFAULT_CONFIG, "help": f"configuration file (default {DEFAULT_CONFIG})"}
    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--config", **config_option)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a configuration file and exit")
    check.add_argument("--config", **config_option)

    suppression_cli.add_commands(commands, config_option)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"relayd: invalid configuration: {exc}", file=sys.stderr)
        return 2

    if args.command == "config":
        print(f"{args.config}: ok")
        return 0
    if args.command == "suppression":
        return suppression_cli.run(args, config)

    from relayd.daemon import serve
    from relayd.spool import SpoolError
    from relayd.state import StateError

    configure_logging(args.log_level)
    try:
        return asyncio.run(serve(config))
    except (SpoolError, StateError) as exc:
        print(f"relayd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
