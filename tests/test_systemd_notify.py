"""Tests for relayd.systemd.notify against a real Unix datagram socket."""

import os
import socket

from relayd.systemd import notify


def test_notify_without_socket_sends_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    assert notify("READY=1") is False


def test_notify_to_path(monkeypatch, tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))

        assert notify("READY=1", "STATUS=Accepting mail") is True
        assert listener.recv(4096) == b"READY=1\nSTATUS=Accepting mail"


def test_notify_to_abstract_socket(monkeypatch):
    name = f"relayd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        assert notify("STOPPING=1") is True
        assert listener.recv(4096) == b"STOPPING=1"


def test_notify_to_missing_socket_fails_quietly(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent.sock"))

    assert notify("READY=1") is False
