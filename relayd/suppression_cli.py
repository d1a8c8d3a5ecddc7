"""`relayd suppression list|add|remove|import|export`: the suppression list from the command line.

The commands open the state store's SQLite file directly; WAL mode lets them
run while the daemon uses the same file. After a change they ask a running
daemon, through the control API on `http.listen`, to read the list again,
so the change applies to the next RCPT. A daemon that cannot be reached
finds the change by itself within a second.
"""

import argparse
import asyncio
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator, TextIO

from relayd.commands.queue import CommandError, request, url_for
from relayd.config import Config
from relayd.http.suppression_api import PATH as REFRESH_PATH
from relayd.config.units import DURATION_HELP, parse_duration
from relayd.state import SqliteStateStore, StateError, Suppression, state_path
from relayd.suppression import MANUAL, MANUAL_REASON, one_line, parse_address, read_csv, write_csv


def add_commands(commands: argparse._SubParsersAction, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the `suppression` command and its subcommands; `add_config` gives each its --config option."""
    parser = commands.add_parser("suppression", help="manage the suppression list")
    actions = parser.add_subparsers(dest="suppression_command", required=True)

    listing = actions.add_parser("list", help="print the addresses on the list that have not expired")
    add = actions.add_parser("add", help="add an address, or replace its entry")
    add.add_argument("address", help="the recipient address, such as user@example.com")
    add.add_argument("--reason", default=MANUAL_REASON, help="why the address is suppressed (free text)")
    add.add_argument("--ttl", help=f"how long the entry lasts, {DURATION_HELP}; without it, until removed")
    remove = actions.add_parser("remove", help="remove an address, so mail to it is accepted again")
    remove.add_argument("address")
    import_ = actions.add_parser("import", help="add the entries of a CSV file, replacing entries for the same addresses")
    import_.add_argument("file", help='CSV with the columns that export writes; "-" reads standard input')
    export = actions.add_parser("export", help="write the list as CSV")
    export.add_argument("file", nargs="?", default="-", help='output file; "-" or none writes standard output')
    for sub in (listing, add, remove, import_, export):
        add_config(sub)


def run(args: argparse.Namespace, config: Config) -> int:
    """Run one suppression subcommand; return the exit status."""
    try:
        return asyncio.run(_run(args, config))
    except StateError as exc:
        print(f"relayd: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"relayd: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of the output went away; relayd.cli.main ends quietly.
        raise
    except OSError as exc:
        print(f"relayd: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, config: Config) -> int:
    # Arguments are checked before the store is opened, so a typo creates no file.
    command = args.suppression_command
    now = time.time()
    entry = None
    if command == "add":
        ttl = _ttl(args.ttl)
        entry = Suppression(
            address=parse_address(args.address),
            reason=one_line(args.reason) or MANUAL_REASON,
            source=MANUAL,
            created_at=now,
            expires_at=now + ttl if ttl else None,
        )
    if command == "import":
        with _open(args.file, "r") as stream:
            imported = read_csv(stream, now)

    store = SqliteStateStore(state_path(config.server.spool_dir))
    store.open()
    try:
        if command == "list":
            _print_table(await store.list_suppressions(now), sys.stdout)
        elif command == "add":
            await store.add_suppressions([entry])
            print(f"added {entry.address}")
        elif command == "remove":
            address = parse_address(args.address)
            if not await store.remove_suppression(address):
                print(f"relayd: {address} is not on the suppression list", file=sys.stderr)
                return 1
            print(f"removed {address}")
        elif command == "import":
            await store.add_suppressions(imported)
            print(f"imported {len(imported)} addresses", file=sys.stderr)
        elif command == "export":
            entries = await store.list_suppressions(now)
            with _open(args.file, "w") as stream:
                count = write_csv(entries, stream)
            print(f"exported {count} addresses", file=sys.stderr)
    finally:
        store.close()
    if command in ("add", "remove", "import"):
        _tell_daemon(config)
    return 0


def _tell_daemon(config: Config) -> None:
    base = url_for(config.http.listen)
    try:
        request(base, "POST", REFRESH_PATH, body={})
    except CommandError as exc:
        print(f"relayd: note: the change is stored; a running daemon applies it within a second ({exc})", file=sys.stderr)


def _ttl(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise ValueError(f"--ttl {text!r}: expected {DURATION_HELP}, greater than zero")
    return seconds


@contextmanager
def _open(path: str, mode: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdin if mode == "r" else sys.stdout
        return
    # newline="" as the csv module requires, so quoted line breaks survive.
    with open(path, mode, encoding="utf-8", newline="") as stream:
        yield stream


def _print_table(entries: list[Suppression], stream: TextIO) -> None:
    rows = [("ADDRESS", "SOURCE", "CREATED", "EXPIRES", "REASON")]
    for entry in entries:
        expires = _time(entry.expires_at) if entry.expires_at is not None else "never"
        rows.append((entry.address, entry.source, _time(entry.created_at), expires, entry.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        print("  ".join([*cells, row[4]]), file=stream)


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
