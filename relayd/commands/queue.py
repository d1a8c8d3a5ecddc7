"""`relayd queue`: list, show, retry, delete, flush and stats through the running daemon.

The commands never open the spool: they call the daemon's control API on
`http.listen` (loopback only), so they cannot race the daemon's writes and
a retry also reaches the in-memory schedule.
"""

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

from relayd.config import ConfigError, load_config
from relayd.config.units import HostPort, parse_host_port
from relayd.commands import queue_format

QUEUE_ID = re.compile(r"^[0-9A-F]{13,40}$")
STATES = ("queued", "deferred")
TIMEOUT = 30.0


class CommandError(Exception):
    """A failure to report on stderr; `status` is the exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def add_parser(commands, default_config: str) -> None:
    """Add `queue` and its subcommands to the `relayd` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=default_config, help=f"configuration file, for http.listen (default {default_config})")
    common.add_argument("--http", metavar="HOST:PORT", help="the daemon's http.listen address, instead of reading --config")
    common.add_argument("--json", action="store_true", help="print the daemon's JSON response, for scripts")

    queue = commands.add_parser("queue", help="inspect and act on the queue of the running daemon")
    actions = queue.add_subparsers(dest="queue_command", required=True)
    listing = actions.add_parser("list", parents=[common], help="list queued messages, oldest first, with their pending recipients")
    listing.add_argument("--state", choices=STATES, help="only messages with a recipient in this state")
    listing.add_argument("--domain", help="only messages with a pending recipient in this domain")
    listing.add_argument("--limit", type=int, default=1000, help="show at most this many messages (default 1000)")
    show = actions.add_parser("show", parents=[common], help="show a message's envelope and each recipient's state")
    show.add_argument("queue_id")
    retry = actions.add_parser("retry", parents=[common], help="try deferred recipients now instead of at their next attempt time")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("queue_id", nargs="?", help="the message to retry")
    target.add_argument("--all", action="store_true", help="retry every deferred recipient (same as flush)")
    delete = actions.add_parser("delete", parents=[common], help="remove a message from the queue; its pending recipients are never sent")
    delete.add_argument("queue_id")
    actions.add_parser("flush", parents=[common], help="retry every deferred recipient now")
    actions.add_parser("stats", parents=[common], help="count messages and recipients by state and class")


def run(args: argparse.Namespace) -> int:
    try:
        base = _base_url(args)
        return _dispatch(args, base)
    except CommandError as exc:
        print(f"relayd: {exc}", file=sys.stderr)
        return exc.status


def _dispatch(args: argparse.Namespace, base: str) -> int:
    command = args.queue_command
    now = datetime.now(timezone.utc).timestamp()
    if command == "list":
        if not 1 <= args.limit <= 10_000:
            raise CommandError(f"invalid --limit {args.limit}; expected 1 to 10000", 2)
        query = {"limit": str(args.limit)}
        if args.state:
            query["state"] = args.state
        if args.domain:
            query["domain"] = _ascii_domain(args.domain)
        response = request(base, "GET", "/v1/queue?" + urllib.parse.urlencode(query))
        return _print(args, response, lambda: queue_format.listing(response, now, filtered=bool(args.state or args.domain)))
    if command == "show":
        response = request(base, "GET", f"/v1/queue/{_queue_id(args.queue_id)}")
        return _print(args, response, lambda: queue_format.message(response, now))
    if command == "stats":
        response = request(base, "GET", "/v1/queue/stats")
        return _print(args, response, lambda: queue_format.stats(response))
    if command == "delete":
        response = request(base, "DELETE", f"/v1/queue/{_queue_id(args.queue_id)}", body={})
        return _print(args, response, lambda: queue_format.deleted(response))
    if command == "retry" and not args.all:
        response = request(base, "POST", f"/v1/queue/{_queue_id(args.queue_id)}/retry", body={})
        return _print(args, response, lambda: queue_format.retried(response))
    # flush, and retry --all
    response = request(base, "POST", "/v1/queue/retry", body={})
    return _print(args, response, lambda: queue_format.retried(response))


def _print(args: argparse.Namespace, response: dict, render) -> int:
    print(json.dumps(response, indent=2) if args.json else render())
    return 0


def _queue_id(text: str) -> str:
    queue_id = text.strip().upper()
    if not QUEUE_ID.match(queue_id):
        raise CommandError(f"invalid queue id {text!r}; expected the hexadecimal id from the reply 'Ok: queued as ID'", 2)
    return queue_id


def _ascii_domain(domain: str) -> str:
    try:
        return domain.strip().encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise CommandError(f"invalid --domain {domain!r}; expected a domain such as example.com", 2) from None


def _base_url(args: argparse.Namespace) -> str:
    if args.http:
        try:
            listen = parse_host_port(args.http)
        except ValueError:
            raise CommandError(f'invalid --http {args.http!r}; expected "host:port" such as 127.0.0.1:2580', 2) from None
    else:
        try:
            listen = load_config(args.config).http.listen
        except ConfigError as exc:
            raise CommandError(f"invalid configuration: {exc} (or give the address with --http HOST:PORT)", 2) from exc
    return url_for(listen)


def url_for(listen: HostPort) -> str:
    """Return the base URL to reach a daemon listening on `listen`; a wildcard address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen.host, listen.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{listen.port}"


# The control API is on loopback: a proxy from the environment must never
# carry these requests, so the opener has no proxy handler.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(base: str, method: str, path: str, body: dict | None = None) -> dict:
    """Call the control API and return its JSON response; raise CommandError with the daemon's error message."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    call = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(call, timeout=TIMEOUT) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise CommandError(_error_text(exc)) from exc
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise CommandError(f"cannot reach relayd at {base}: {reason}; is `relayd serve` running with this http.listen?") from exc
    except TimeoutError as exc:
        raise CommandError(f"relayd at {base} did not respond within {TIMEOUT:g}s") from exc
    except ValueError as exc:
        raise CommandError(f"relayd at {base} sent a response that is not JSON: {exc}") from exc


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return json.load(error)["error"]
    except (ValueError, KeyError, TypeError):
        return f"relayd responded with HTTP {error.code} {error.reason}"
