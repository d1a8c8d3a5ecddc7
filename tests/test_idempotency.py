"""Tests for idempotent submission: the key of a message, claiming it, and the listener's use of it."""

import time
from types import SimpleNamespace

import pytest

from relayd.addresses import parse_path
from relayd.alignment.policy import Rejection
from relayd.config import parse_config
from relayd.config.model import IdempotencyConfig
from relayd.dkim.signer import Signer
from relayd.events import EventRecorder
from relayd.smtp import replies
from relayd.smtp import idempotency
from relayd.smtp.handler import SubmissionHandler, Transaction
from relayd.spool import SpoolError
from relayd.state import COMMITTED, PENDING, RESERVED, IdempotencyKey, Reservation
from relayd.suppression import SuppressionList

CLIENT = "192.0.2.1"


@pytest.mark.parametrize(
    ("content", "by_message_id", "expected"),
    [
        (b"Idempotency-Key: abc-1\r\n\r\nbody\r\n", False, ("idempotency-key", "abc-1")),
        (b"idempotency-key:\r\n  folded\r\n\r\n", False, ("idempotency-key", "folded")),
        (b"Idempotency-Key: k\r\nMessage-ID: <m@x>\r\n\r\n", True, ("idempotency-key", "k")),
        (b"Message-ID: <m@x>\r\n\r\n", True, ("message-id", "<m@x>")),
        (b"Message-ID: <m@x>\r\n\r\n", False, None),
        (b"Idempotency-Key:   \r\n\r\n", False, None),
        (b"Subject: x\r\n\r\nIdempotency-Key: in the body\r\n", False, None),
    ],
)
def test_submission_key(content, by_message_id, expected):
    key = idempotency.submission_key(content, CLIENT, IdempotencyConfig(by_message_id=by_message_id))

    if expected is None:
        assert key is None
    else:
        assert (key.kind, key.value, key.client) == (*expected, CLIENT)


class ScriptedKeys:
    """Returns the scripted reservations in turn, then the last one for ever."""

    def __init__(self, *statuses: str):
        self.statuses = list(statuses)
        self.calls = 0

    async def reserve_key(self, key, queue_id, now, window):
        self.calls += 1
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return Reservation(status, "Q-original" if status != RESERVED else queue_id)


KEY = IdempotencyKey(CLIENT, "idempotency-key", "k")


async def test_claim_waits_for_pending_holder():
    store = ScriptedKeys(PENDING, PENDING, COMMITTED)

    reservation = await idempotency.claim(store, KEY, "Q-new", window=60.0)

    assert reservation == Reservation(COMMITTED, "Q-original")
    assert store.calls == 3


async def test_claim_gives_up_waiting():
    store = ScriptedKeys(PENDING)

    reservation = await idempotency.claim(store, KEY, "Q-new", window=60.0, wait=0.2)

    assert reservation.status == PENDING
    assert store.calls >= 2


class FailingSpool:
    async def add(self, queue_id, message):
        raise SpoolError("disk I/O error")


class NoSuppressions:
    async def find_suppression(self, address, now):
        return None


@pytest.fixture
def state(state_store):
    return state_store


def data_call(content: bytes):
    recipient = parse_path("user@example.org", smtputf8=False, role="recipient")
    session = SimpleNamespace(peer=(CLIENT, 40000), host_name="client.test", extended_smtp=True)
    envelope = SimpleNamespace(
        original_content=content,
        relayd=Transaction(sender=None, recipients=[recipient]),
        smtp_utf8=False,
        mail_options=[],
    )
    return None, session, envelope


def handler(config, spool, state, alignment=None) -> SubmissionHandler:
    suppressions = SuppressionList(NoSuppressions(), config.suppression)
    return SubmissionHandler(
        config,
        spool,
        Signer([]),
        lambda queue_id, domains, message_class, received_at: None,
        suppressions,
        state,
        EventRecorder(state, ()),
        alignment,
    )


async def test_spool_failure_releases_key(state):
    config = parse_config({})
    content = b"Idempotency-Key: retry-me\r\n\r\nbody\r\n"

    reply = await handler(config, FailingSpool(), state).handle_DATA(*data_call(content))

    assert reply.startswith("451 4.3.0 ")
    key = idempotency.submission_key(content, CLIENT, config.idempotency)
    assert (await state.reserve_key(key, "Q-next", now=time.time(), window=60.0)).status == RESERVED
    assert await state.pending_claims() == ["Q-next"]


async def test_committed_key_answers_duplicate(state):
    config = parse_config({})
    content = b"Idempotency-Key: once\r\n\r\nbody\r\n"
    key = idempotency.submission_key(content, CLIENT, config.idempotency)
    await state.reserve_key(key, "Q-first", now=time.time(), window=60.0)
    await state.commit_key(key, "Q-first")

    reply = await handler(config, FailingSpool(), state).handle_DATA(*data_call(content))

    assert reply == "250 2.0.0 Ok: duplicate of Q-first"


class RejectingAlignment:
    async def check(self, sender, content, signing_domain, *, queue_id, client):
        return Rejection(replies.R550_NOT_ALIGNED.format(domain="example.com", reason="no DKIM key"), "not aligned", "example.com")


class BrokenAlignment:
    async def check(self, sender, content, signing_domain, *, queue_id, client):
        raise RuntimeError("resolver crashed")


async def test_alignment_rejection_releases_key(state):
    config = parse_config({})
    content = b"Idempotency-Key: fix-dns-first\r\nFrom: a@example.com\r\n\r\nbody\r\n"

    reply = await handler(config, FailingSpool(), state, RejectingAlignment()).handle_DATA(*data_call(content))

    assert reply.startswith("550 5.7.26 ")
    assert await state.pending_claims() == []


async def test_unexpected_error_releases_key(state):
    config = parse_config({})
    content = b"Idempotency-Key: crash\r\n\r\nbody\r\n"

    with pytest.raises(RuntimeError):
        await handler(config, FailingSpool(), state, BrokenAlignment()).handle_DATA(*data_call(content))

    assert await state.pending_claims() == []
