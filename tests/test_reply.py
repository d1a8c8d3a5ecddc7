"""Tests for relayd.reply.Reply and the listener's reply constants in relayd.smtp.replies."""

import builtins
import re

import pytest

from relayd.reply import Reply
from relayd.smtp import replies

# (code, message, expected enhanced code, expected text)
PARSED = {
    "single line": (250, "Ok", "", "Ok"),
    "with enhanced": (250, "2.0.0 Ok: queued as ABC", "2.0.0", "Ok: queued as ABC"),
    "transient enhanced": (451, "4.7.1 Greylisted, try later", "4.7.1", "Greylisted, try later"),
    "three digit parts": (550, "5.100.200 Custom", "5.100.200", "Custom"),
    "multi-line repeated": (
        550,
        "5.1.1 The email account does not exist.\n5.1.1 Please check the address.",
        "5.1.1",
        "The email account does not exist. / Please check the address.",
    ),
    "multi-line without enhanced": (421, "Closing\nBye now", "", "Closing / Bye now"),
    "multi-line other enhanced kept": (550, "5.1.1 Unknown\n5.7.1 Policy", "5.1.1", "Unknown / 5.7.1 Policy"),
    "class mismatch": (250, "5.0.0 Odd", "", "5.0.0 Odd"),
    "class mismatch transient": (450, "2.0.0 Odd", "", "2.0.0 Odd"),
    "not an enhanced code": (250, "2.0 Ok", "", "2.0 Ok"),
    "class one": (250, "1.0.0 Ok", "", "1.0.0 Ok"),
    "enhanced only": (250, "2.0.0", "2.0.0", ""),
    "empty message": (250, "", "", ""),
    "blank lines dropped": (250, "Ok\n\nDone", "", "Ok / Done"),
    "crlf lines": (250, "2.0.0 One\r\n2.0.0 Two", "2.0.0", "One / Two"),
}


@pytest.mark.parametrize(("code", "message", "enhanced", "text"), PARSED.values(), ids=PARSED.keys())
def test_reply_parse_table(code, message, enhanced, text):
    reply = Reply.parse(code, message)

    assert reply.code == code
    assert reply.enhanced == enhanced
    assert reply.text == text


def test_reply_parse_keeps_command():
    reply = Reply.parse(550, "5.1.1 No such user", command="RCPT")

    assert reply.command == "RCPT"


@pytest.mark.parametrize(
    "reply",
    [
        Reply(250, "2.0.0", "Ok: queued as 0A1B2C"),
        Reply(451, "4.4.3", "Try again later"),
        Reply(550, "", "No such user"),
    ],
    ids=["enhanced", "transient", "plain"],
)
def test_reply_str_round_trip(reply):
    parsed = Reply.parse(reply.code, str(reply)[4:])

    assert parsed == reply


@pytest.mark.parametrize(
    ("reply", "text"),
    [(Reply(250, "2.0.0", "Ok"), "250 2.0.0 Ok"), (Reply(220, "", "relay ESMTP"), "220 relay ESMTP")],
    ids=["enhanced", "plain"],
)
def test_reply_str_form(reply, text):
    assert str(reply) == text


# (code, is_positive, is_transient, is_permanent)
KINDS = [(250, True, False, False), (354, True, False, False), (451, False, True, False), (554, False, False, True)]


@pytest.mark.parametrize(("code", "positive", "transient", "permanent"), KINDS)
def test_reply_kind_properties(code, positive, transient, permanent):
    reply = Reply(code, "", "x")

    assert reply.is_positive is positive
    assert reply.is_transient is transient
    assert reply.is_permanent is permanent


def test_reply_format_fills_text():
    reply = Reply(250, "2.0.0", "Ok: queued as {queue_id}", "DATA").format(queue_id="ABC")

    assert reply.text == "Ok: queued as ABC"
    assert reply.enhanced == "2.0.0"
    assert reply.command == "DATA"


CONSTANTS = {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}
# Greetings carry no enhanced code (RFC 2034), and "{enhanced}" is filled in per use.
WITH_ENHANCED = [name for name, value in CONSTANTS.items() if value.enhanced not in ("", "{enhanced}")]
ENHANCED_FORM = re.compile(r"^[245]\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$")
EXCEPTION_NAMES = {name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)}
EXCEPTION_NAMES |= {"SpoolError", "SpoolFull", "ConfigError", "AddressError", "RouteError", "TemporaryFailure"}


def test_reply_constants_found():
    assert len(CONSTANTS) > 10


@pytest.mark.parametrize("name", CONSTANTS)
def test_constant_code_range(name):
    assert 200 <= CONSTANTS[name].code <= 599


@pytest.mark.parametrize("name", WITH_ENHANCED)
def test_constant_enhanced_code_form(name):
    reply = CONSTANTS[name]

    assert ENHANCED_FORM.match(reply.enhanced)
    assert reply.enhanced[0] == str(reply.code)[0]


@pytest.mark.parametrize("name", CONSTANTS)
def test_constant_text_plain(name):
    text = CONSTANTS[name].text
    words = set(re.findall(r"[A-Za-z]+", text))

    assert text.strip()
    assert not words & EXCEPTION_NAMES
    assert "Traceback" not in text
