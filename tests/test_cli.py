"""The relayd command as a user runs it: `config check` and start-up on a bad file."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def relayd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relayd", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_config_check_accepts_repository_config():
    result = relayd("config", "check", "--config", "conf/relayd.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "conf/relayd.toml: ok"


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[smtp]\nlisten = ["127.0.0.1:2525"]\nmax_recipents = 5\n', "smtp.max_recipents = 5: unknown key"),
        ('[smtp]\nmax_message_size = "lots"\n', 'smtp.max_message_size = "lots": expected a size'),
        ("[delivery]\nport = 0\n", "delivery.port = 0: expected an integer from 1 to 65535"),
        ('[retry]\ngive_up = "forever"\n', 'retry.give_up = "forever": expected a duration'),
        ("[server\n", "invalid TOML"),
    ],
)
def test_config_check_names_key_and_value(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = relayd("config", "check", "--config", str(path))
    assert result.returncode == 2
    assert expected in result.stderr


def test_serve_refuses_invalid_config(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[delivery]\ntls = "sometimes"\n')
    result = relayd("serve", "--config", str(path))
    assert result.returncode == 2
    assert 'delivery.tls = "sometimes": expected one of "opportunistic", "required", "off"' in result.stderr


def test_missing_config_file(tmp_path):
    result = relayd("config", "check", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "file not found" in result.stderr
