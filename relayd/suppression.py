"""The suppression list: which bounces add an address, how addresses compare, CSV import and export."""

import asyncio
import csv
import time
from datetime import datetime, timezone
from typing import Callable, Iterable, TextIO

import idna
import structlog

from relayd.addresses import AddressError, parse_path
from relayd.config.model import SuppressionConfig
from relayd.events import rfc3339
from relayd.reply import Reply
from relayd.state import StateError, Suppression, SuppressionStore

log = structlog.get_logger("relayd.suppression")

BOUNCE = "bounce"
MANUAL = "manual"
SOURCES = (BOUNCE, MANUAL)
CSV_FIELDS = ("address", "reason", "source", "created_at", "expires_at")
MANUAL_REASON = "added by an operator"
# How often the daemon checks for changes made by another process.
REFRESH_INTERVAL = 1.0


def normalize_address(address: str) -> str:
    """Return the form the list stores and compares: lower case, the domain in IDNA ASCII.

    XXX: RFC 5321 2.4 lets a mailbox's local part be case-sensitive, but
    the list ignores case, so an address that bounced is not tried again
    under another spelling.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower()
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        pass
    return f"{local.lower()}@{domain.lower()}"


def parse_address(text: str) -> str:
    """Check `text` as a recipient address and return its normalized form; raise ValueError."""
    try:
        address = parse_path(text.strip().removeprefix("<").removesuffix(">"), smtputf8=True, role="recipient")
    except AddressError as exc:
        raise ValueError(f"invalid address {text!r}: {exc}") from None
    if address is None or address.is_literal:
        raise ValueError(f"invalid address {text!r}: expected user@domain")
    return normalize_address(f"{address.local}@{address.ascii_domain}")


def one_line(text: str) -> str:
    """Return `text` with every run of white space, line breaks included, made one space."""
    return " ".join(text.split())


def code_matches(status: str, pattern: str) -> bool:
    """Match an enhanced status code against a pattern such as "5.1.1" or "5.1.x"."""
    parts = status.split(".")
    pattern_parts = pattern.split(".")
    return len(parts) == len(pattern_parts) and all(q in ("x", p) for p, q in zip(parts, pattern_parts))


def suppresses(reply: Reply, codes: Iterable[str]) -> bool:
    """Tell whether a bounce with `reply` adds the recipient to the list.

    Only permanent replies with an enhanced status code qualify, because a
    bare 550 does not show that the mailbox itself is unusable.
    """
    return reply.is_permanent and bool(reply.enhanced) and any(code_matches(reply.enhanced, c) for c in codes)


class SuppressionList:
    """The suppression list as the listener and the attempts use it.

    Every RCPT is checked against the list. A query per RCPT kept the two
    state reader threads at 18% of a core under the benchmark's load, so
    the listed addresses and their expiry times are kept in memory. The
    store is queried only for an address found there, to read its reason. The
    copy is read again when the store's change counter moves: checked every
    REFRESH_INTERVAL seconds, and at once when `relayd suppression` calls
    the control API after a change.
    """

    def __init__(self, store: SuppressionStore, config: SuppressionConfig, clock: Callable[[], float] = time.time):
        self.store = store
        self.config = config
        self.clock = clock
        # None until first read: every look-up then goes to the store.
        self._listed: dict[str, float | None] | None = None
        self._counter: int | None = None

    def __len__(self) -> int:
        return len(self._listed or {})

    async def find(self, address: str) -> Suppression | None:
        normalized = normalize_address(address)
        now = self.clock()
        if self._listed is not None:
            if normalized not in self._listed:
                return None
            expires_at = self._listed[normalized]
            if expires_at is not None and expires_at <= now:
                return None
        return await self.store.find_suppression(normalized, now)

    async def refresh(self) -> bool:
        """Read the list into memory again if it changed since the last read; return whether it did."""
        if self._listed is not None and await self.store.suppression_changes() == self._counter:
            return False
        self._counter, self._listed = await self.store.suppressed_addresses(self.clock())
        return True

    async def keep_refreshed(self) -> None:
        """Refresh for ever; a failed read keeps the copy in memory and is logged."""
        while True:
            try:
                await self.refresh()
            except StateError as exc:
                log.error("suppression_refresh_failed", error=str(exc))
            await asyncio.sleep(REFRESH_INTERVAL)

    async def add_bounce(self, address: str, reply: Reply) -> Suppression | None:
        """Add `address` when `reply` is a hard bounce; return the new entry, or None."""
        if not suppresses(reply, self.config.codes):
            return None
        now = self.clock()
        entry = Suppression(
            address=normalize_address(address),
            reason=str(reply),
            source=BOUNCE,
            created_at=now,
            expires_at=now + self.config.ttl if self.config.ttl else None,
        )
        await self.store.add_suppressions([entry])
        if self._listed is not None:
            self._listed[entry.address] = entry.expires_at
        return entry


def write_csv(entries: Iterable[Suppression], stream: TextIO) -> int:
    """Write `entries` as CSV with a header line; times are RFC 3339 UTC, an empty expires_at means never."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    count = 0
    for entry in entries:
        expires = rfc3339(entry.expires_at) if entry.expires_at is not None else ""
        writer.writerow([entry.address, entry.reason, entry.source, rfc3339(entry.created_at), expires])
        count += 1
    return count


def read_csv(stream: TextIO, now: float) -> list[Suppression]:
    """Read entries written by write_csv(); only the address column is required.

    Raises ValueError naming the line of the first invalid row, so a file is
    imported whole or not at all.
    """
    reader = csv.DictReader(stream)
    if reader.fieldnames is None or "address" not in reader.fieldnames:
        raise ValueError("line 1: expected a header line naming at least the column 'address'")
    unknown = [name for name in reader.fieldnames if name not in CSV_FIELDS]
    if unknown:
        raise ValueError(f"line 1: unknown column {unknown[0]!r}; the columns allowed are: {', '.join(CSV_FIELDS)}")
    entries = []
    for row in reader:
        line = reader.line_num
        try:
            entries.append(_entry(row, now))
        except ValueError as exc:
            raise ValueError(f"line {line}: {exc}") from None
    return entries


def _entry(row: dict, now: float) -> Suppression:
    source = (row.get("source") or MANUAL).strip()
    if source not in SOURCES:
        raise ValueError(f"invalid source {source!r}; expected one of: {', '.join(SOURCES)}")
    created = _parse_time(row.get("created_at"), "created_at")
    return Suppression(
        address=parse_address(row.get("address") or ""),
        reason=one_line(row.get("reason") or "") or MANUAL_REASON,
        source=source,
        created_at=created if created is not None else now,
        expires_at=_parse_time(row.get("expires_at"), "expires_at"),
    )


def _parse_time(text: str | None, column: str) -> float | None:
    if not text or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"invalid {column} {text!r}; expected an RFC 3339 time such as 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
