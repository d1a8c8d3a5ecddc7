"""Tests for relayd.delivery.outcome: which recipient state a reply or a failed connection leads to."""

import pytest

from relayd.delivery.errors import local_reply
from relayd.delivery.outcome import BOUNCED, DEFERRED, DELIVERED, for_connection, for_recipient, for_reply
from relayd.reply import Reply

FOR_REPLY = {200: DELIVERED, 250: DELIVERED, 251: DELIVERED, 299: DELIVERED, 354: DEFERRED, 421: DEFERRED,
             450: DEFERRED, 452: DEFERRED, 499: DEFERRED, 500: BOUNCED, 550: BOUNCED, 554: BOUNCED, 599: BOUNCED}


@pytest.mark.parametrize(("code", "state"), FOR_REPLY.items())
def test_for_reply_table(code, state):
    assert for_reply(Reply(code, "", "text")) == state


FOR_RECIPIENT = {250: None, 251: None, 252: DEFERRED, 354: DEFERRED, 421: DEFERRED, 450: DEFERRED,
                 452: DEFERRED, 550: BOUNCED, 551: BOUNCED, 553: BOUNCED}


@pytest.mark.parametrize(("code", "state"), FOR_RECIPIENT.items())
def test_for_recipient_table(code, state):
    assert for_recipient(Reply(code, "", "text", "RCPT")) == state


def _connect(code: int) -> Reply:
    return Reply(code, "", "greeting", "CONNECT")


# (replies of every MX host tried, resulting state)
FOR_CONNECTION = {
    "empty": ([], DEFERRED),
    "one 5xx greeting": ([_connect(554)], BOUNCED),
    "all 5xx greetings": ([_connect(554), _connect(550)], BOUNCED),
    "one 4xx greeting": ([_connect(421)], DEFERRED),
    "mixed greetings": ([_connect(554), _connect(421)], DEFERRED),
    "5xx then refused": ([_connect(554), local_reply(451, "4.4.1", "Connection refused", "CONNECT")], DEFERRED),
    "5xx to ehlo": ([Reply(550, "", "no", "EHLO")], DEFERRED),
    "5xx greeting and 5xx ehlo": ([_connect(554), Reply(550, "", "no", "EHLO")], DEFERRED),
    "5xx from dns": ([Reply(550, "5.1.2", "no domain", "DNS")], DEFERRED),
}


@pytest.mark.parametrize(("replies", "state"), FOR_CONNECTION.values(), ids=FOR_CONNECTION.keys())
def test_for_connection_table(replies, state):
    assert for_connection(replies) == state


def test_local_reply_fields():
    reply = local_reply(451, "4.4.2", "Connection lost", "DATA")

    assert reply == Reply(451, "4.4.2", "Connection lost", "DATA")
