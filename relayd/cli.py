"""The `relayd` command: a thin dispatcher to each subcommand."""

import argparse
import asyncio
import os
import sys
from importlib.metadata import version

from relayd import suppression_cli
from relayd.commands import queue as queue_command
from relayd.config import ConfigError, load_config
from relayd.dkim.keys import DEFAULT_RSA_BITS
from relayd.logs import configure_logging
from relayd.reload import load_config_and_keys

DEFAULT_CONFIG = "/etc/relayd/relayd.toml"


def _add_config(parser: argparse.ArgumentParser, required: bool = True) -> None:
    if required:
        parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
    else:
        parser.add_argument("--config", help="configuration file, for its DNS servers and hostname")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relayd", description="Transactional-email relay daemon.")
    parser.add_argument("--version", action="version", version=f"relayd {version('relayd')}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    _add_config(serve)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    _add_config(config_commands.add_parser("check", help="validate a configuration file and its DKIM keys, then exit"))

    dkim = commands.add_parser("dkim", help="DKIM key tools")
    dkim_commands = dkim.add_subparsers(dest="dkim_command", required=True)
    keygen = dkim_commands.add_parser("keygen", help="write a new private key and print the DNS record to publish")
    keygen.add_argument("--domain", required=True, help="signing domain, the d= of the signature")
    keygen.add_argument("--selector", required=True, help="selector, the s= of the signature")
    keygen.add_argument("--algorithm", choices=["rsa", "ed25519"], default="rsa", help="key type (default rsa)")
    keygen.add_argument("--bits", type=int, default=DEFAULT_RSA_BITS, help=f"RSA key size in bits (default {DEFAULT_RSA_BITS})")
    keygen.add_argument("--output", help="private key file to create (default DOMAIN.SELECTOR.key)")

    verify = commands.add_parser("verify", help="check a message's DKIM signatures (and SPF) read on standard input")
    _add_config(verify, required=False)
    verify.add_argument("--ip", help="client IP address, to check SPF")
    verify.add_argument("--mail-from", help="envelope sender, to check SPF")
    verify.add_argument("--helo", help="client HELO name for SPF (default: the sender's domain)")

    domain = commands.add_parser(
        "check-domain", help="check a sending domain's DNS records; exit 0 only when its mail would pass DMARC"
    )
    domain.add_argument("domain", help="the From domain to check, such as example.com")
    _add_config(domain)
    domain.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    suppression_cli.add_commands(commands, _add_config)

    # Queue commands: they call the running daemon's control API.
    queue_command.add_parser(commands, DEFAULT_CONFIG)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader of the output went away, as `relayd queue list | head`
        # does: stop quietly. Standard output is pointed at /dev/null so
        # that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _run(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dkim":
        from relayd.commands import keygen

        return keygen.run(args.domain, args.selector, args.algorithm, args.bits, args.output)
    if args.command == "queue":
        return queue_command.run(args)

    try:
        if args.command == "verify":
            config = load_config(args.config) if args.config else None
        elif args.command == "suppression":
            # The suppression commands only open the state store: no DKIM key is read.
            config = load_config(args.config)
        else:
            config, keys = load_config_and_keys(args.config)
    except ConfigError as exc:
        print(f"relayd: invalid configuration: {exc}", file=sys.stderr)
        return 2

    if args.command == "verify":
        from relayd.commands import verify

        return verify.run(config, args.ip, args.mail_from, args.helo)
    if args.command == "config":
        print(f"{args.config}: ok")
        return 0
    if args.command == "suppression":
        return suppression_cli.run(args, config)
    if args.command == "check-domain":
        from relayd.commands.check_domain import run

        return run(config, keys, args.domain, as_json=args.json)

    from relayd.daemon import serve
    from relayd.spool import SpoolError
    from relayd.state import StateError

    # Spool and state files hold message content: readable by relayd's user only.
    os.umask(0o077)
    configure_logging(args.log_level)
    try:
        return asyncio.run(serve(config, keys))
    except (SpoolError, StateError) as exc:
        print(f"relayd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
