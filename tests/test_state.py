"""Tests for relayd.state.SqliteStateStore on a real SQLite file under tmp_path."""

import asyncio

import pytest

from relayd.state import (
    COMMITTED,
    PENDING,
    RESERVED,
    IdempotencyKey,
    OutboxEntry,
    SqliteStateStore,
    StateError,
    Suppression,
)

KEY = IdempotencyKey(client="192.0.2.1", kind="idempotency-key", value="reset-1")
HOOK = "https://hooks.example.com/a"
OTHER_HOOK = "https://hooks.example.com/b"


@pytest.fixture
def store(state_store):
    return state_store


def entry(event_id: str, queue_id: str = "Q1", endpoint: str = HOOK, created_at: float = 100.0) -> OutboxEntry:
    return OutboxEntry(
        endpoint=endpoint,
        event_id=event_id,
        event_type="delivered",
        ordering_key=queue_id,
        body=b'{"id":"%s"}' % event_id.encode(),
        created_at=created_at,
    )


async def test_suppression_found_until_expiry(store):
    await store.add_suppressions([Suppression("a@example.com", "550 5.1.1 gone", "bounce", 100.0, expires_at=200.0)])

    found = await store.find_suppression("a@example.com", 150.0)

    assert found == Suppression("a@example.com", "550 5.1.1 gone", "bounce", 100.0, 200.0)
    assert await store.find_suppression("a@example.com", 200.0) is None
    assert await store.find_suppression("b@example.com", 150.0) is None


async def test_suppression_replaced_and_removed(store):
    await store.add_suppressions([Suppression("a@example.com", "first", "bounce", 100.0, 200.0)])
    await store.add_suppressions([Suppression("a@example.com", "second", "manual", 300.0)])

    found = await store.find_suppression("a@example.com", 1000.0)

    assert found.reason == "second"
    assert found.expires_at is None
    assert await store.remove_suppression("a@example.com") is True
    assert await store.remove_suppression("a@example.com") is False
    assert await store.find_suppression("a@example.com", 1000.0) is None


async def test_suppression_list_sorted_without_expired(store):
    await store.add_suppressions(
        [
            Suppression("c@example.com", "r", "manual", 1.0),
            Suppression("a@example.com", "r", "manual", 1.0),
            Suppression("old@example.com", "r", "bounce", 1.0, expires_at=5.0),
        ]
    )

    listed = await store.list_suppressions(10.0)

    assert [s.address for s in listed] == ["a@example.com", "c@example.com"]


async def test_purge_deletes_expired_suppressions(store):
    await store.add_suppressions([Suppression("old@example.com", "r", "bounce", 1.0, expires_at=5.0)])

    await store.purge(10.0, idempotency_window=60.0)

    assert await store.list_suppressions(0.0) == []


async def test_reserve_key_lifecycle(store):
    first = await store.reserve_key(KEY, "Q1", now=100.0, window=60.0)
    while_pending = await store.reserve_key(KEY, "Q2", now=101.0, window=60.0)
    await store.commit_key(KEY, "Q1")
    after_commit = await store.reserve_key(KEY, "Q3", now=102.0, window=60.0)
    after_window = await store.reserve_key(KEY, "Q4", now=161.0, window=60.0)

    assert (first.status, first.queue_id) == (RESERVED, "Q1")
    assert (while_pending.status, while_pending.queue_id) == (PENDING, "Q1")
    assert (after_commit.status, after_commit.queue_id) == (COMMITTED, "Q1")
    assert (after_window.status, after_window.queue_id) == (RESERVED, "Q4")


async def test_reserve_key_scoped_to_client_and_kind(store):
    await store.reserve_key(KEY, "Q1", now=100.0, window=60.0)
    other_client = IdempotencyKey("192.0.2.2", KEY.kind, KEY.value)
    other_kind = IdempotencyKey(KEY.client, "message-id", KEY.value)

    assert (await store.reserve_key(other_client, "Q2", now=100.0, window=60.0)).status == RESERVED
    assert (await store.reserve_key(other_kind, "Q3", now=100.0, window=60.0)).status == RESERVED


async def test_released_key_free_again(store):
    await store.reserve_key(KEY, "Q1", now=100.0, window=60.0)
    await store.release_key(KEY, "Q1")

    again = await store.reserve_key(KEY, "Q2", now=101.0, window=60.0)

    assert (again.status, again.queue_id) == (RESERVED, "Q2")


async def test_release_leaves_committed_key(store):
    await store.reserve_key(KEY, "Q1", now=100.0, window=60.0)
    await store.commit_key(KEY, "Q1")
    await store.release_key(KEY, "Q1")

    assert (await store.reserve_key(KEY, "Q2", now=101.0, window=60.0)).status == COMMITTED


async def test_concurrent_reservations_one_wins(store):
    results = await asyncio.gather(*(store.reserve_key(KEY, f"Q{n}", now=100.0, window=60.0) for n in range(20)))

    winners = [r for r in results if r.status == RESERVED]
    assert len(winners) == 1
    assert all(r.queue_id == winners[0].queue_id for r in results)


async def test_pending_claims_settled(store):
    other = IdempotencyKey(KEY.client, KEY.kind, "other")
    await store.reserve_key(KEY, "Q1", now=100.0, window=60.0)
    await store.reserve_key(other, "Q2", now=100.0, window=60.0)

    assert sorted(await store.pending_claims()) == ["Q1", "Q2"]
    await store.settle_claims(committed=["Q1"], released=["Q2"])

    assert await store.pending_claims() == []
    assert (await store.reserve_key(KEY, "Q3", now=101.0, window=60.0)).status == COMMITTED
    assert (await store.reserve_key(other, "Q4", now=101.0, window=60.0)).status == RESERVED


async def test_purge_keeps_young_pending_claims(store):
    await store.reserve_key(KEY, "Q1", now=100.0, window=60.0)

    await store.purge(1000.0, idempotency_window=60.0)

    assert await store.pending_claims() == ["Q1"]
    await store.purge(100.0 + 86400.0, idempotency_window=60.0)
    assert await store.pending_claims() == []


async def test_purge_deletes_old_committed_keys(store):
    await store.reserve_key(KEY, "Q1", now=100.0, window=60.0)
    await store.commit_key(KEY, "Q1")

    await store.purge(161.0, idempotency_window=60.0)

    assert (await store.reserve_key(KEY, "Q2", now=161.0, window=3600.0)).status == RESERVED


async def test_outbox_ignores_stored_event(store):
    assert await store.enqueue_events([entry("e1"), entry("e1", endpoint=OTHER_HOOK)]) == 2
    assert await store.enqueue_events([entry("e1")]) == 0

    due, _ = await store.due_events(HOOK, 1000.0, 10, ())

    assert [e.event_id for e in due] == ["e1"]


async def test_outbox_one_message_in_order(store):
    await store.enqueue_events([entry("e1"), entry("e2"), entry("other", queue_id="Q2")])

    due, later = await store.due_events(HOOK, 1000.0, 10, ())
    assert [e.event_id for e in due] == ["e1", "other"]
    assert later is None

    await store.event_done(due[0], now=1001.0)
    due, _ = await store.due_events(HOOK, 1001.0, 10, ())
    assert [e.event_id for e in due] == ["other", "e2"]


async def test_outbox_failed_entry_holds_successor(store):
    await store.enqueue_events([entry("e1"), entry("e2")])
    (first,), _ = await store.due_events(HOOK, 1000.0, 10, ())

    await store.event_failed(first, next_attempt=1050.0, error="HTTP status 500")

    due, later = await store.due_events(HOOK, 1010.0, 10, ())
    assert due == []
    assert later == 1050.0
    (retried,), _ = await store.due_events(HOOK, 1050.0, 10, ())
    assert retried.event_id == "e1"
    assert retried.attempts == 1
    assert retried.last_error == "HTTP status 500"


async def test_outbox_excludes_entries_being_sent(store):
    await store.enqueue_events([entry("e1"), entry("e2", queue_id="Q2"), entry("e3", queue_id="Q3")])
    first, first_later = await store.due_events(HOOK, 1000.0, 1, ())

    rest, later = await store.due_events(HOOK, 1000.0, 10, {first[0].seq})

    assert first_later == 1000.0, "a full batch tells the caller to ask again"
    assert later is None
    assert [e.event_id for e in first + rest] == ["e1", "e2", "e3"]


async def test_outbox_endpoints_separate(store):
    await store.enqueue_events([entry("e1"), entry("e2", endpoint=OTHER_HOOK)])
    (first,), _ = await store.due_events(HOOK, 1000.0, 10, ())
    await store.event_failed(first, next_attempt=5000.0, error="timeout")

    other, _ = await store.due_events(OTHER_HOOK, 1000.0, 10, ())

    assert [e.event_id for e in other] == ["e2"]


async def test_outbox_drops_unknown_endpoints(store):
    await store.enqueue_events([entry("e1"), entry("e2"), entry("e3", endpoint=OTHER_HOOK)])

    dropped = await store.drop_endpoints_except([OTHER_HOOK])

    assert dropped == {HOOK: 2}
    assert (await store.due_events(HOOK, 1000.0, 10, ()))[0] == []
    assert len((await store.due_events(OTHER_HOOK, 1000.0, 10, ()))[0]) == 1


async def test_state_survives_reopen(tmp_path):
    path = tmp_path / "state.db"
    first = SqliteStateStore(path)
    first.open()
    await first.add_suppressions([Suppression("a@example.com", "r", "manual", 1.0)])
    await first.reserve_key(KEY, "Q1", now=100.0, window=60.0)
    await first.commit_key(KEY, "Q1")
    await first.enqueue_events([entry("e1")])
    first.close()

    second = SqliteStateStore(path)
    second.open()
    try:
        assert await second.find_suppression("a@example.com", 2.0) is not None
        assert (await second.reserve_key(KEY, "Q2", now=101.0, window=60.0)).status == COMMITTED
        assert [e.event_id for e in (await second.due_events(HOOK, 1000.0, 10, ()))[0]] == ["e1"]
    finally:
        second.close()


def test_open_failure_raises_state_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SqliteStateStore(blocker / "state.db")

    with pytest.raises(StateError, match="cannot open the state store"):
        store.open()
