"""Tests for the operator queries of relayd.spool (QueueAdmin) on a real SQLite database."""

import pytest

from relayd.spool import NewMessage, RecipientUpdate, Spool


def message(*addresses: str, received_at: float = 1000.0, message_class: str = "transactional") -> NewMessage:
    return NewMessage(
        sender="app@example.com",
        recipients=tuple((address, address.rpartition("@")[2]) for address in addresses),
        content=b"Subject: admin\r\n\r\nbody\r\n",
        received_at=received_at,
        client="127.0.0.1",
        message_class=message_class,
    )


def deferral(address: str, next_attempt: float) -> RecipientUpdate:
    return RecipientUpdate(address, "deferred", 1, next_attempt, "451 4.7.1 Greylisted", "mx.example.org")


@pytest.fixture
async def spool(tmp_path):
    opened = Spool(tmp_path / "spool")
    opened.open()
    # Q1: one recipient deferred to 5000, one queued. Q2: delivered and deferred. Q3: auth, queued.
    await opened.add("Q1", message("a@example.org", "b@example.net", received_at=1000.0))
    await opened.record("Q1", [deferral("a@example.org", 5000.0)])
    await opened.add("Q2", message("c@example.org", "d@example.org", received_at=1100.0))
    await opened.record(
        "Q2", [RecipientUpdate("c@example.org", "delivered", 1, None, "250 2.0.0 Ok", "mx"), deferral("d@example.org", 6000.0)]
    )
    await opened.add("Q3", message("e@example.com", received_at=1200.0, message_class="auth"))
    yield opened
    opened.close()


async def test_summary_counts_by_state_and_class(spool):
    summary = await spool.summary()

    assert summary.pending == {("deferred", "transactional"): 2, ("queued", "transactional"): 1, ("queued", "auth"): 1}
    assert summary.messages == {"transactional": (2, 1000.0), "auth": (1, 1200.0)}


async def test_list_oldest_first_with_pending_recipients(spool):
    messages, total = await spool.list_messages()

    assert total == 3
    assert [m.message.queue_id for m in messages] == ["Q1", "Q2", "Q3"]
    assert [r.address for r in messages[1].recipients] == ["d@example.org"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"state": "deferred"}, ["Q1", "Q2"]),
        ({"state": "queued"}, ["Q1", "Q3"]),
        ({"domain": "example.org"}, ["Q1", "Q2"]),
        ({"domain": "example.com"}, ["Q3"]),
        ({"state": "queued", "domain": "example.org"}, []),
        ({"domain": "example.edu"}, []),
    ],
)
async def test_list_filters(spool, filters, expected):
    messages, total = await spool.list_messages(**filters)

    assert [m.message.queue_id for m in messages] == expected
    assert total == len(expected)


async def test_list_limit_keeps_total(spool):
    messages, total = await spool.list_messages(limit=1)

    assert [m.message.queue_id for m in messages] == ["Q1"]
    assert total == 3


async def test_message_includes_final_recipients(spool):
    queued = await spool.message("Q2")

    assert [(r.address, r.state) for r in queued.recipients] == [("c@example.org", "delivered"), ("d@example.org", "deferred")]
    assert await spool.message("NOPE") is None


async def test_bring_forward_one_message(spool):
    pairs = await spool.bring_forward("Q1", now=2000.0)

    assert pairs == [("Q1", "example.org")]
    states = {r.address: r for r in (await spool.message("Q1")).recipients}
    assert states["a@example.org"].next_attempt == 2000.0
    assert states["a@example.org"].attempts == 1
    assert (await spool.message("Q2")).recipients[1].next_attempt == 6000.0


async def test_bring_forward_all(spool):
    pairs = await spool.bring_forward(None, now=2000.0)

    assert sorted(pairs) == [("Q1", "example.org"), ("Q2", "example.org")]
    assert await spool.bring_forward(None, now=2000.0) == []


async def test_delete_removes_message_and_content(spool):
    deleted = await spool.delete("Q1")

    assert deleted.message.queue_id == "Q1"
    assert [r.address for r in deleted.recipients] == ["a@example.org", "b@example.net"]
    assert await spool.message("Q1") is None
    assert await spool.content("Q1") is None
    assert await spool.delete("Q1") is None
    assert all(job.queue_id != "Q1" for job in await spool.pending())
