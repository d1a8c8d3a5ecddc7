"""Tests for `relayd queue` without a daemon: argument parsing, addresses and terminal output."""

import pytest

from relayd.cli import _parser, main
from relayd.commands import queue_format
from relayd.commands.queue import url_for
from relayd.config.units import HostPort

NOW = 1_000_000.0
MESSAGE = {
    "queue_id": "0006412A3B4C5D7E8F9",
    "sender": "",
    "received_at": NOW - 192,
    "age": 192.0,
    "size": 1234,
    "class": "auth",
    "client": "127.0.0.1",
    "smtputf8": True,
    "body_8bit": False,
    "recipients": [
        {
            "address": "user@example.org",
            "domain": "example.org",
            "state": "deferred",
            "attempts": 2,
            "next_attempt": NOW + 42,
            "last_reply": "451 4.7.1 Greylisted",
            "last_host": "mx.example.org[192.0.2.1]:25",
        },
        {"address": "new@example.org", "domain": "example.org", "state": "queued", "attempts": 0, "next_attempt": None, "last_reply": "", "last_host": ""},
    ],
}


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (42.9, "42s"), (192, "3m12s"), (7380, "2h03m"), (187200, "2d04h"), (-5, "0s")]
)
def test_age_format(seconds, text):
    assert queue_format.age(seconds) == text


@pytest.mark.parametrize(("octets", "text"), [(999, "999 B"), (1234, "1.2 kB"), (25_000_000, "25.0 MB")])
def test_size_format(octets, text):
    assert queue_format.size(octets) == text


def test_listing_shows_messages_and_recipients():
    text = queue_format.listing({"total": 3, "messages": [MESSAGE]}, NOW, filtered=False)

    lines = text.splitlines()
    assert lines[0].split() == ["QUEUE", "ID", "AGE", "SIZE", "CLASS", "SENDER"]
    assert lines[1].split() == ["0006412A3B4C5D7E8F9", "3m12s", "1.2", "kB", "auth", "<>"]
    assert lines[2].strip() == "deferred  user@example.org  attempts 2  next attempt in 42s"
    assert lines[3].strip() == "last reply from mx.example.org[192.0.2.1]:25: 451 4.7.1 Greylisted"
    assert lines[4].strip() == "queued    new@example.org  next attempt now"
    assert lines[-1] == "3 messages (1 shown)"


def test_listing_empty():
    assert queue_format.listing({"total": 0, "messages": []}, NOW, filtered=False) == "The queue is empty."
    assert queue_format.listing({"total": 0, "messages": []}, NOW, filtered=True) == "No message matches."


def test_show_lists_envelope():
    text = queue_format.message(MESSAGE, NOW)

    assert "queue id   0006412A3B4C5D7E8F9" in text
    assert "sender     <>" in text
    assert "received   1970-01-12 13:43:28 UTC (3m12s ago) from 127.0.0.1" in text
    assert "options    smtputf8" in text
    assert text.index("queued    new@example.org") < text.index("deferred  user@example.org")


def test_stats_table():
    answer = {
        "messages": 1,
        "recipients": {"queued": 1, "deferred": 1},
        "oldest_age": 192.0,
        "scheduled": 1,
        "classes": {"auth": {"messages": 1, "oldest_age": 192.0, "queued": 1, "deferred": 1}},
    }

    text = queue_format.stats(answer)

    assert "recipients   queued 1, deferred 1" in text
    assert text.splitlines()[-1].split() == ["auth", "1", "1", "1", "3m12s"]


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        ({"queue_id": None, "messages": 2, "domains": 3}, "Retrying now: 2 messages to 3 domains."),
        ({"queue_id": "ABC", "messages": 1, "domains": 1}, "Retrying now: 1 message to 1 domain."),
        (
            {"queue_id": None, "messages": 1, "domains": 1, "paused": [{"domain": "dead.test", "until": 0.0}]},
            "Retrying now: 1 message to 1 domain.\n"
            "dead.test is paused after repeated connection failures: its recipients wait until 00:00:00 UTC.",
        ),
        ({"queue_id": "ABC", "messages": 0, "domains": 0}, "Nothing to retry: ABC has no deferred recipient waiting for a later attempt."),
    ],
)
def test_retried_text(answer, text):
    assert queue_format.retried(answer) == text


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        (HostPort("127.0.0.1", 2580), "http://127.0.0.1:2580"),
        (HostPort("0.0.0.0", 2580), "http://127.0.0.1:2580"),
        (HostPort("::", 2580), "http://[::1]:2580"),
        (HostPort("::1", 9000), "http://[::1]:9000"),
    ],
)
def test_url_for_listen_address(listen, url):
    assert url_for(listen) == url


def test_retry_needs_id_or_all(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["queue", "retry"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["queue", "retry", "ABC", "--all"])

    assert _parser().parse_args(["queue", "retry", "--all"]).all is True


def test_invalid_http_address(capsys):
    assert main(["queue", "stats", "--http", "localhost"]) == 2
    assert "invalid --http 'localhost'" in capsys.readouterr().err


def test_missing_config_names_fix(capsys, tmp_path):
    assert main(["queue", "list", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "--http HOST:PORT" in capsys.readouterr().err
