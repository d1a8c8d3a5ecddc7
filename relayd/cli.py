"""The `relayd` command."""

import argparse
import asyncio
import sys

from relayd.config import ConfigError, load_config
from relayd.logs import configure_logging

DEFAULT_CONFIG = "/etc/relayd/relayd.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relayd", description="Transactional-email relay daemon.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--config", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a configuration file and exit")
    check.add_argument("--config", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")

    domain = commands.add_parser(
        "check-domain", help="check a sending domain's DNS records; exit 0 only when its mail would pass DMARC"
    )
    domain.add_argument("domain", help="the From domain to check, such as example.com")
    domain.add_argument("--config", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
    domain.add_argument("--json", action="store_true", help="print one JSON object instead of text")
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
    if args.command == "check-domain":
        from relayd.commands.check_domain import run

        return run(config, args.domain, as_json=args.json)

    from relayd.daemon import serve
    from relayd.spool import SpoolError

    configure_logging(args.log_level)
    try:
        return asyncio.run(serve(config))
    except SpoolError as exc:
        print(f"relayd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
