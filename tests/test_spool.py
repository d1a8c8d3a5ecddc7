"""Tests for relayd.spool on a real SQLite database under tmp_path."""

import asyncio
import dataclasses
import sqlite3
import threading
import time

import pytest

from relayd.spool import (
    NewMessage,
    RecipientState,
    RecipientUpdate,
    Spool,
    SpoolError,
    new_queue_id,
)
from relayd.spool.writer import GroupCommitWriter

CONTENT = b"Subject: test\r\n\r\nbody \x00\xff bytes\r\n"


def _message(*addresses: str, content: bytes = CONTENT, received_at: float = 1000.0) -> NewMessage:
    recipients = tuple((address, address.rpartition("@")[2]) for address in addresses)
    return NewMessage(
        sender="sender@example.com",
        recipients=recipients,
        content=content,
        received_at=received_at,
        client="192.0.2.1",
        smtputf8=True,
        body_8bit=False,
        message_class="auth",
    )


def _update(address: str, state: str, next_attempt: float | None = None) -> RecipientUpdate:
    return RecipientUpdate(
        address=address,
        state=state,
        attempts=1,
        next_attempt=next_attempt,
        last_reply="250 2.0.0 Ok" if state == "delivered" else "451 4.4.1 later",
        last_host="mx.example.com",
    )


@pytest.fixture
def spool(tmp_path):
    opened = Spool(tmp_path / "spool")
    opened.open()
    yield opened
    opened.close()


async def test_spool_add_load_round_trip(spool):
    await spool.add("Q1", _message("a@example.com", "b@example.org", "c@example.com"))

    message, recipients = await spool.load("Q1", "example.com")

    assert message.queue_id == "Q1"
    assert message.sender == "sender@example.com"
    assert message.received_at == 1000.0
    assert message.size == len(CONTENT)
    assert message.client == "192.0.2.1"
    assert message.smtputf8 is True
    assert message.body_8bit is False
    assert message.message_class == "auth"
    assert [r.address for r in recipients] == ["a@example.com", "c@example.com"]
    assert recipients[0] == RecipientState("a@example.com", "example.com", "queued", 0, None, "", "")


async def test_spool_message_id_round_trip(spool):
    await spool.add("Q1", dataclasses.replace(_message("a@example.com"), message_id="<m1@app.test>"))
    await spool.add("Q2", _message("a@example.com"))

    first, _ = await spool.load("Q1", "example.com")
    second, _ = await spool.load("Q2", "example.com")

    assert first.message_id == "<m1@app.test>"
    assert second.message_id == ""


async def test_spool_unattempted_recipients(spool):
    await spool.add("Q1", dataclasses.replace(_message("a@example.com", "b@example.org"), message_id="<m@x>"))
    await spool.add("Q2", _message("c@example.com"))
    await spool.record("Q1", [_update("a@example.com", "deferred", next_attempt=2000.0)])

    unattempted = await spool.unattempted()

    assert unattempted == [
        ("Q1", "<m@x>", "b@example.org", "example.org", 1000.0),
        ("Q2", "", "c@example.com", "example.com", 1000.0),
    ]


async def test_spool_contains(spool):
    await spool.add("Q1", _message("a@example.com"))

    assert await spool.contains(["Q1", "Q9"]) == {"Q1"}
    assert await spool.contains([]) == set()


async def test_spool_content_round_trip(spool):
    await spool.add("Q1", _message("a@example.com"))

    assert await spool.content("Q1") == CONTENT


async def test_spool_add_returns_queue_id(spool):
    assert await spool.add("Q7", _message("a@example.com")) == "Q7"


async def test_spool_unknown_queue_id(spool):
    assert await spool.load("NOPE", "example.com") is None
    assert await spool.content("NOPE") is None


async def test_spool_duplicate_recipient_once(spool):
    await spool.add("Q1", _message("a@example.com", "a@example.com", "b@example.com"))

    _, recipients = await spool.load("Q1", "example.com")

    assert [r.address for r in recipients] == ["a@example.com", "b@example.com"]


async def test_spool_duplicate_queue_id_rejected(spool):
    await spool.add("Q1", _message("a@example.com"))

    with pytest.raises(SpoolError):
        await spool.add("Q1", _message("b@example.com", content=b"other"))

    assert await spool.content("Q1") == CONTENT
    assert await spool.count() == 1


async def test_spool_all_final_deletes(spool):
    await spool.add("Q1", _message("a@example.com", "b@example.com", "c@example.com"))
    await spool.add("Q2", _message("d@example.com"))

    left = await spool.record(
        "Q1",
        [_update("a@example.com", "delivered"), _update("b@example.com", "bounced"), _update("c@example.com", "expired")],
    )

    assert left is True
    assert await spool.load("Q1", "example.com") is None
    assert await spool.content("Q1") is None
    assert await spool.count() == 1


async def test_spool_partial_record_keeps(spool):
    await spool.add("Q1", _message("a@example.com", "b@example.com"))

    left = await spool.record("Q1", [_update("a@example.com", "delivered"), _update("b@example.com", "deferred", 1500.0)])
    _, recipients = await spool.load("Q1", "example.com")

    assert left is False
    assert await spool.count() == 1
    assert recipients == [
        RecipientState("b@example.com", "example.com", "deferred", 1, 1500.0, "451 4.4.1 later", "mx.example.com")
    ]


async def test_spool_final_over_two_records(spool):
    await spool.add("Q1", _message("a@example.com", "b@example.org"))

    first = await spool.record("Q1", [_update("a@example.com", "delivered")])
    second = await spool.record("Q1", [_update("b@example.org", "bounced")])

    assert first is False
    assert second is True
    assert await spool.count() == 0


async def test_spool_pending_lists_domains(spool):
    await spool.add("Q1", _message("a@example.com", "b@example.org", "c@example.net"))
    await spool.record("Q1", [_update("b@example.org", "deferred", 500.0), _update("c@example.net", "delivered")])

    pending = await spool.pending()

    assert [(j.queue_id, j.domain, j.due) for j in pending] == [("Q1", "example.com", 0), ("Q1", "example.org", 500.0)]
    assert [j.attempted for j in pending] == [False, True]
    assert {j.message_class for j in pending} == {"auth"}
    assert {j.received_at for j in pending} == {1000.0}


async def test_spool_pending_earliest_due(spool):
    await spool.add("Q1", _message("a@example.com", "b@example.com"))
    await spool.record("Q1", [_update("a@example.com", "deferred", 900.0), _update("b@example.com", "deferred", 700.0)])

    assert [(j.queue_id, j.domain, j.due) for j in await spool.pending()] == [("Q1", "example.com", 700.0)]


async def test_spool_pending_sorted_by_due(spool):
    await spool.add("Q1", _message("a@example.com"))
    await spool.add("Q2", _message("b@example.com"))
    await spool.add("Q3", _message("c@example.com"))
    await spool.record("Q1", [_update("a@example.com", "deferred", 300.0)])
    await spool.record("Q2", [_update("b@example.com", "deferred", 100.0)])

    pending = await spool.pending()

    assert [job.queue_id for job in pending] == ["Q3", "Q2", "Q1"]


async def test_spool_reopen_recovers_pending(tmp_path):
    directory = tmp_path / "spool"
    first = Spool(directory)
    first.open()
    await first.add("Q1", _message("a@example.com", "b@example.org"))
    await first.record("Q1", [_update("b@example.org", "deferred", 800.0)])
    await first.add("Q2", _message("c@example.com"))
    await first.record("Q2", [_update("c@example.com", "delivered")])
    first.close()

    second = Spool(directory)
    second.open()
    try:
        pending = await second.pending()
        content = await second.content("Q1")
        count = await second.count()
    finally:
        second.close()

    assert [(j.queue_id, j.domain, j.due) for j in pending] == [("Q1", "example.com", 0), ("Q1", "example.org", 800.0)]
    assert content == CONTENT
    assert count == 1


async def test_spool_concurrent_adds(spool):
    queue_ids = [f"Q{i:04d}" for i in range(200)]

    results = await asyncio.gather(*(spool.add(q, _message(f"r{i}@example.com")) for i, q in enumerate(queue_ids)))
    pending = await spool.pending()

    assert results == queue_ids
    assert await spool.count() == 200
    assert sorted(job.queue_id for job in pending) == queue_ids


async def test_spool_concurrent_duplicate_id(spool):
    adds = [spool.add("SAME", _message("a@example.com"))]
    adds += [spool.add(f"Q{i}", _message("b@example.com")) for i in range(20)]
    adds.append(spool.add("SAME", _message("c@example.com")))

    results = await asyncio.gather(*adds, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]

    assert len(errors) == 1
    assert isinstance(errors[0], SpoolError)
    assert await spool.count() == 21


def test_spool_open_under_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    with pytest.raises(SpoolError):
        Spool(blocker / "spool").open()


@pytest.fixture
def table_connect(tmp_path):
    path = tmp_path / "writer.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE items (id TEXT PRIMARY KEY)")
    setup.commit()
    setup.close()

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    return connect


def _insert(item_id: str):
    def operation(connection: sqlite3.Connection) -> str:
        connection.execute("INSERT INTO items VALUES (?)", (item_id,))
        return item_id

    return operation


async def test_writer_batch_failure_isolated(table_connect):
    writer = GroupCommitWriter(table_connect)
    writer.start()
    release = threading.Event()

    def blocker(connection: sqlite3.Connection) -> str:
        release.wait(5)
        return "blocker"

    def broken(connection: sqlite3.Connection) -> None:
        raise ValueError("broken operation")

    try:
        first = writer.submit(blocker)
        # These wait in the queue while the blocker holds the writer, so they share one batch.
        batch = [writer.submit(_insert("dup")), writer.submit(_insert("a")), writer.submit(broken)]
        batch += [writer.submit(_insert("dup")), writer.submit(_insert("b"))]
        release.set()
        results = await asyncio.gather(first, *batch, return_exceptions=True)
    finally:
        writer.stop()
    check = table_connect()
    stored = sorted(row[0] for row in check.execute("SELECT id FROM items"))
    check.close()

    assert results[0] == "blocker"
    assert results[1] == "dup"
    assert results[2] == "a"
    assert isinstance(results[3], ValueError)
    assert isinstance(results[4], sqlite3.IntegrityError)
    assert results[5] == "b"
    assert stored == ["a", "b", "dup"]


async def test_writer_failure_rolled_back(table_connect):
    writer = GroupCommitWriter(table_connect)
    writer.start()

    def insert_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO items VALUES ('partial')")
        raise ValueError("after the insert")

    try:
        with pytest.raises(ValueError):
            await writer.submit(insert_then_fail)
        await writer.submit(_insert("later"))
    finally:
        writer.stop()
    check = table_connect()
    stored = [row[0] for row in check.execute("SELECT id FROM items")]
    check.close()

    assert stored == ["later"]


def test_writer_start_error_raised(tmp_path):
    def connect() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    writer = GroupCommitWriter(connect)

    with pytest.raises(sqlite3.OperationalError):
        writer.start()


def test_queue_ids_unique():
    ids = [new_queue_id() for _ in range(10_000)]

    assert len(set(ids)) == len(ids)


def test_queue_ids_sort_by_creation():
    ids = []
    for _ in range(200):
        ids.append(new_queue_id())
        time.sleep(0.00002)

    assert ids == sorted(ids)


def test_queue_id_timestamp_prefix():
    before = time.time_ns() // 1000
    queue_id = new_queue_id()
    after = time.time_ns() // 1000

    assert len(queue_id) == 19
    assert queue_id == queue_id.upper()
    assert before <= int(queue_id[:13], 16) <= after
    assert int(queue_id[13:], 16) >= 0
