"""Tests for the in-memory copy of messages not yet attempted (relayd.spool.fresh)."""

import pytest

from relayd.spool import NewMessage, RecipientUpdate, Spool
from relayd.spool.fresh import ENTRY_OVERHEAD, FreshMessages

CONTENT = b"Subject: fresh\r\n\r\nbody\r\n"


def _message(*addresses: str, content: bytes = CONTENT) -> NewMessage:
    return NewMessage(
        sender="app@sender.test",
        recipients=tuple((address, address.rpartition("@")[2].lower()) for address in addresses),
        content=content,
        received_at=1000.5,
        client="127.0.0.1",
        smtputf8=True,
        body_8bit=True,
        message_class="auth",
        message_id="<m1@sender.test>",
    )


@pytest.fixture
def spools(tmp_path):
    """Two spools on one directory: the one that writes, and one that only reads the disk."""
    writer, reader = Spool(tmp_path / "spool"), Spool(tmp_path / "spool")
    writer.open()
    reader.open()
    yield writer, reader
    writer.close()
    reader.close()


async def test_first_load_equals_what_the_spool_stores(spools):
    writer, reader = spools
    # Two domains, and a repeated address the spool keeps once.
    await writer.add("Q1", _message("a@one.test", "b@two.test", "A@one.test", "a@one.test"))
    assert len(writer.fresh) == 1
    assert len(reader.fresh) == 0
    for domain in ("one.test", "two.test"):
        assert await writer.load("Q1", domain) == await reader.load("Q1", domain)
    assert await writer.content("Q1") == await reader.content("Q1") == CONTENT
    assert len(writer.fresh) == 0


async def test_each_domain_is_served_from_memory_once(spools):
    writer, _ = spools
    await writer.add("Q1", _message("a@one.test"))
    assert writer.fresh.take("Q1", "one.test") is not None
    assert writer.fresh.take("Q1", "one.test") is None
    # Later attempts read the spool, where the recipient states live.
    message, recipients = await writer.load("Q1", "one.test")
    assert message.queue_id == "Q1" and [r.address for r in recipients] == ["a@one.test"]


async def test_deleted_message_is_not_served_from_memory(spools):
    writer, _ = spools
    await writer.add("Q1", _message("a@one.test"))
    await writer.delete("Q1")
    assert await writer.load("Q1", "one.test") is None
    assert await writer.content("Q1") is None


def test_oldest_entries_are_dropped_beyond_the_limit():
    fresh = FreshMessages(limit=3 * (len(CONTENT) + ENTRY_OVERHEAD))
    for n in range(5):
        fresh.add(f"Q{n}", _message("a@one.test"))
    assert len(fresh) == 3
    assert fresh.size == 3 * (len(CONTENT) + ENTRY_OVERHEAD)
    assert fresh.take("Q0", "one.test") is None
    assert fresh.take("Q4", "one.test") is not None


def test_fresh_skips_a_message_larger_than_the_limit():
    fresh = FreshMessages(limit=ENTRY_OVERHEAD)
    fresh.add("Q1", _message("a@one.test"))
    assert len(fresh) == 0
    assert fresh.size == 0


def test_entry_stays_until_its_last_domain_is_taken():
    fresh = FreshMessages()
    fresh.add("Q1", _message("a@one.test", "b@two.test"))
    fresh.take("Q1", "one.test")
    assert fresh.content("Q1") == CONTENT
    assert len(fresh) == 1
    fresh.take("Q1", "two.test")
    assert fresh.content("Q1") == CONTENT
    assert len(fresh) == 0
    assert fresh.size == 0


async def test_recorded_outcome_drops_the_copy_in_memory(spools):
    writer, _ = spools
    await writer.add("Q1", _message("a@one.test", "b@two.test"))
    await writer.record("Q1", [RecipientUpdate("a@one.test", "deferred", 1, 2000.0, "451 4.3.0 later", "mx")])
    message, [recipient] = await writer.load("Q1", "one.test")
    assert (recipient.state, recipient.attempts) == ("deferred", 1)
    assert len(writer.fresh) == 0
