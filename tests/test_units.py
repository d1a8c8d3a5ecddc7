"""Tests for relayd.config.units: durations, sizes and host:port addresses."""

import pytest

from relayd.config.units import HostPort, parse_duration, parse_host_port, parse_size

DURATIONS = {
    "500ms": 0.5,
    "1ms": 0.001,
    "30s": 30.0,
    "1.5s": 1.5,
    "15m": 900.0,
    "1h": 3600.0,
    "2d": 172800.0,
    "0s": 0.0,
    " 5s ": 5.0,
}


@pytest.mark.parametrize(("text", "seconds"), DURATIONS.items(), ids=DURATIONS.keys())
def test_parse_duration_valid(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "-5s", "5 s", "5sec", "1w", "5S", "1e3s", ".5s", "5s5m"])
def test_parse_duration_invalid(text):
    with pytest.raises(ValueError):
        parse_duration(text)


SIZES = {
    "1B": 1,
    "512KB": 512_000,
    "25MB": 25_000_000,
    "1GB": 1_000_000_000,
    "1KiB": 1024,
    "25MiB": 25 * 1024**2,
    "1GiB": 1024**3,
    "1.5KB": 1500,
    "25 MB": 25_000_000,
}


@pytest.mark.parametrize(("text", "octets"), SIZES.items(), ids=SIZES.keys())
def test_parse_size_valid(text, octets):
    assert parse_size(text) == octets


@pytest.mark.parametrize("text", ["", "25", "25XB", "MB", "-1MB", "25mb", "25 M", "1TB"])
def test_parse_size_invalid(text):
    with pytest.raises(ValueError):
        parse_size(text)


# (text, default port, expected)
HOST_PORTS = {
    "ipv4 with port": ("127.0.0.1:2525", None, HostPort("127.0.0.1", 2525)),
    "name with port": ("mx.example.com:25", None, HostPort("mx.example.com", 25)),
    "bracketed ipv6": ("[::1]:25", None, HostPort("::1", 25)),
    "bracketed ipv6 default": ("[2001:db8::1]", 53, HostPort("2001:db8::1", 53)),
    "bare ipv6 default": ("::1", 53, HostPort("::1", 53)),
    "bare full ipv6 default": ("2001:db8::5", 25, HostPort("2001:db8::5", 25)),
    "name default": ("mx.example.com", 25, HostPort("mx.example.com", 25)),
    "port beats default": ("127.0.0.1:5353", 53, HostPort("127.0.0.1", 5353)),
    "highest port": ("h.example:65535", None, HostPort("h.example", 65535)),
    "surrounding spaces": (" 127.0.0.1:25 ", None, HostPort("127.0.0.1", 25)),
}


@pytest.mark.parametrize(("text", "default_port", "expected"), HOST_PORTS.values(), ids=HOST_PORTS.keys())
def test_parse_host_port_valid(text, default_port, expected):
    assert parse_host_port(text, default_port) == expected


# (text, default port)
BAD_HOST_PORTS = {
    "ipv4 no port": ("127.0.0.1", None),
    "name no port": ("mx.example.com", None),
    "bare ipv6 no default": ("::1", None),
    "bracketed ipv6 no default": ("[::1]", None),
    "empty port": ("127.0.0.1:", None),
    "port zero": ("127.0.0.1:0", None),
    "port too high": ("127.0.0.1:65536", None),
    "port not number": ("127.0.0.1:smtp", None),
    "signed port": ("127.0.0.1:+25", None),
    "empty host": (":25", None),
    "empty text": ("", 25),
    "space in host": ("mx example:25", None),
    "unclosed bracket": ("[::1:25", None),
    "text after bracket": ("[::1]x", 25),
    "bracketed ipv4": ("[127.0.0.1]:25", None),
    "bad bare ipv6": ("::g", 25),
    "empty bracketed port": ("[::1]:", None),
}


@pytest.mark.parametrize(("text", "default_port"), BAD_HOST_PORTS.values(), ids=BAD_HOST_PORTS.keys())
def test_parse_host_port_invalid(text, default_port):
    with pytest.raises(ValueError):
        parse_host_port(text, default_port)


@pytest.mark.parametrize(
    ("value", "text"),
    [(HostPort("127.0.0.1", 25), "127.0.0.1:25"), (HostPort("::1", 2525), "[::1]:2525")],
)
def test_host_port_str(value, text):
    assert str(value) == text


@pytest.mark.parametrize("text", ["127.0.0.1:25", "[::1]:2525", "mx.example.com:587"])
def test_host_port_round_trip(text):
    assert str(parse_host_port(text)) == text
