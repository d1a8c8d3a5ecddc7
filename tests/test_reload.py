"""Tests for relayd.reload.Reloader with real config files."""

from pathlib import Path

from relayd.config import load_config
from relayd.reload import Reloader, keep_restart_only

BASE = """
[server]
spool_dir = "var/spool"
[smtp]
listen = ["127.0.0.1:2525"]
[routes]
"example.test" = "127.0.0.2"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_reload_applies_new_config(tmp_path):
    path = write(tmp_path / "relayd.toml", BASE)
    reloader = Reloader(path, load_config(path))
    applied = []
    reloader.subscribe(lambda config, keys: applied.append(config))

    write(path, BASE.replace("127.0.0.2", "127.0.0.3"))

    assert reloader.reload() is True
    assert applied[0].routes["example.test"].host == "127.0.0.3"
    assert reloader.config is applied[0]


def test_reload_refuses_invalid_file(tmp_path):
    path = write(tmp_path / "relayd.toml", BASE)
    original = load_config(path)
    reloader = Reloader(path, original)
    applied = []
    reloader.subscribe(lambda config, keys: applied.append(config))

    write(path, BASE + '[delivery]\ntls = "sometimes"\n')

    assert reloader.reload() is False
    assert applied == []
    assert reloader.config is original


def test_reload_refuses_missing_dkim_key(tmp_path):
    path = write(tmp_path / "relayd.toml", BASE)
    reloader = Reloader(path, load_config(path))
    key = f'[[dkim.keys]]\ndomain = "example.com"\nselector = "s1"\nkey_file = "{tmp_path / "absent.key"}"\n'

    write(path, BASE + key)

    assert reloader.reload() is False


def test_reload_without_file_refused():
    example = Path(__file__).resolve().parents[1] / "conf" / "relayd.toml"

    assert Reloader(None, load_config(example)).reload() is False


def test_restart_only_keys_keep_old_values(tmp_path):
    old = load_config(write(tmp_path / "old.toml", BASE))
    new = load_config(write(tmp_path / "new.toml", BASE.replace("2525", "2526").replace("var/spool", "/srv/spool")))

    kept, differed = keep_restart_only(old, new)

    assert differed == ["server.spool_dir", "smtp.listen"]
    assert kept.smtp.listen == old.smtp.listen
    assert kept.server.spool_dir == old.server.spool_dir
    assert kept.routes == new.routes


def test_class_shares_need_restart(tmp_path):
    old = load_config(write(tmp_path / "old.toml", BASE))
    new = load_config(write(tmp_path / "new.toml", BASE + "[classes.auth]\nshare = 0.5\n"))

    kept, differed = keep_restart_only(old, new)

    assert differed == ["classes.*.share"]
    assert kept.shares() == old.shares()
