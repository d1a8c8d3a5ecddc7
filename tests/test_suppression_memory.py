"""Tests for the suppression list's copy in memory, on a real state store under tmp_path."""

import pytest

from relayd.config.model import SuppressionConfig
from relayd.reply import Reply
from relayd.state import SqliteStateStore, Suppression
from relayd.suppression import SuppressionList

NOW = 1000.0


class CountingStore:
    """A real store that counts the look-ups of single addresses."""

    def __init__(self, store: SqliteStateStore):
        self.store = store
        self.lookups = 0

    async def find_suppression(self, address, now):
        self.lookups += 1
        return await self.store.find_suppression(address, now)

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.fixture
def stores(tmp_path):
    """The daemon's store and a second one on the same file, as `relayd suppression` opens it."""
    daemon, command = SqliteStateStore(tmp_path / "state.db"), SqliteStateStore(tmp_path / "state.db")
    daemon.open()
    command.open()
    yield CountingStore(daemon), command
    daemon.close()
    command.close()


def entry(address: str, expires_at: float | None = None) -> Suppression:
    return Suppression(address, "asked to stop", "manual", NOW - 10, expires_at)


async def test_unlisted_address_needs_no_query_once_read(stores):
    store, command = stores
    await command.add_suppressions([entry("gone@example.org")])
    suppressions = SuppressionList(store, SuppressionConfig(), clock=lambda: NOW)
    assert await suppressions.find("other@example.org") is None
    assert store.lookups == 1

    assert await suppressions.refresh() is True
    assert await suppressions.find("other@example.org") is None
    assert store.lookups == 1


async def test_listed_address_is_read_with_its_reason(stores):
    store, command = stores
    await command.add_suppressions([entry("gone@example.org")])
    suppressions = SuppressionList(store, SuppressionConfig(), clock=lambda: NOW)
    await suppressions.refresh()
    found = await suppressions.find("Gone@EXAMPLE.org")
    assert found == entry("gone@example.org")


async def test_refresh_sees_other_process_change(stores):
    store, command = stores
    suppressions = SuppressionList(store, SuppressionConfig(), clock=lambda: NOW)
    await suppressions.refresh()
    assert await suppressions.refresh() is False

    await command.add_suppressions([entry("late@example.org")])
    assert await suppressions.find("late@example.org") is None
    assert await suppressions.refresh() is True
    assert await suppressions.find("late@example.org") is not None

    await command.remove_suppression("late@example.org")
    assert await suppressions.refresh() is True
    assert await suppressions.find("late@example.org") is None


async def test_entry_expired_in_memory_is_not_found(stores):
    store, command = stores
    clock = [NOW]
    await command.add_suppressions([entry("brief@example.org", expires_at=NOW + 5)])
    suppressions = SuppressionList(store, SuppressionConfig(), clock=lambda: clock[0])
    await suppressions.refresh()
    assert await suppressions.find("brief@example.org") is not None
    clock[0] = NOW + 5
    lookups = store.lookups
    assert await suppressions.find("brief@example.org") is None
    assert store.lookups == lookups


async def test_hard_bounce_is_in_memory_before_any_refresh(stores):
    store, _ = stores
    suppressions = SuppressionList(store, SuppressionConfig(), clock=lambda: NOW)
    await suppressions.refresh()
    await suppressions.add_bounce("gone@example.org", Reply(550, "5.1.1", "No such user", "RCPT"))
    assert await suppressions.find("gone@example.org") is not None
    assert len(suppressions) == 1


async def test_purge_of_expired_entries_counts_as_a_change(stores):
    store, command = stores
    await command.add_suppressions([entry("brief@example.org", expires_at=NOW + 5)])
    suppressions = SuppressionList(store, SuppressionConfig(), clock=lambda: NOW)
    await suppressions.refresh()
    await command.purge(NOW + 10, idempotency_window=60)
    assert await suppressions.refresh() is True
    assert len(suppressions) == 0
