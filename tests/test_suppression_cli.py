"""`relayd suppression` run in-process against a state store under tmp_path."""

import io
import shlex
import subprocess
import sys

import pytest

from relayd.cli import main
from tests.support.daemon import ROOT


@pytest.fixture
def config_file(tmp_path):
    def write(name: str) -> str:
        path = tmp_path / f"{name}.toml"
        # Nothing listens on the discard port, so no daemon hears of the changes.
        path.write_text(f'[server]\nspool_dir = "{tmp_path / name}"\n\n[http]\nlisten = "127.0.0.1:9"\n')
        return str(path)

    return write


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["suppression", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_add_list_remove(capsys, config_file):
    config = config_file("a")

    assert run(capsys, "add", "User@Example.com", "--reason", "asked to stop", "--config", config)[:2] == (
        0,
        "added user@example.com\n",
    )
    status, out, _ = run(capsys, "list", "--config", config)
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["ADDRESS", "SOURCE", "CREATED", "EXPIRES", "REASON"]
    assert row.startswith("user@example.com  manual")
    assert row.endswith("never    asked to stop")

    assert run(capsys, "remove", "user@EXAMPLE.com", "--config", config)[:2] == (0, "removed user@example.com\n")
    status, _, err = run(capsys, "remove", "user@example.com", "--config", config)
    assert status == 1
    assert err == "relayd: user@example.com is not on the suppression list\n"
    assert run(capsys, "list", "--config", config)[1].splitlines()[1:] == []


def test_add_with_ttl_shows_expiry(capsys, config_file):
    config = config_file("a")

    run(capsys, "add", "a@example.com", "--ttl", "30d", "--config", config)

    row = run(capsys, "list", "--config", config)[1].splitlines()[1]
    assert "never" not in row


def test_export_import_round_trip(capsys, config_file, tmp_path):
    source, target = config_file("source"), config_file("target")
    run(capsys, "add", "a@example.com", "--ttl", "1d", "--config", source)
    run(capsys, "add", "b@example.com", "--reason", 'quoted "reason", with comma', "--config", source)
    exported = tmp_path / "list.csv"

    status, _, err = run(capsys, "export", str(exported), "--config", source)
    assert (status, err) == (0, "exported 2 addresses\n")
    status, _, err = run(capsys, "import", str(exported), "--config", target)
    assert status == 0
    assert err.startswith("imported 2 addresses\n")

    status, out, _ = run(capsys, "export", "--config", target)
    assert status == 0
    assert out == exported.read_text()
    assert out.splitlines()[0] == "address,reason,source,created_at,expires_at"


def test_import_from_standard_input(capsys, config_file, monkeypatch):
    config = config_file("a")
    monkeypatch.setattr("sys.stdin", io.StringIO("address,reason\nx@example.com,from a file\n"))

    assert run(capsys, "import", "-", "--config", config)[0] == 0

    assert "x@example.com" in run(capsys, "list", "--config", config)[1]


def test_invalid_import_changes_nothing(capsys, config_file, tmp_path):
    config = config_file("a")
    bad = tmp_path / "bad.csv"
    bad.write_text("address\nok@example.com\nbroken\n")

    status, _, err = run(capsys, "import", str(bad), "--config", config)

    assert status == 2
    assert err == "relayd: line 3: invalid address 'broken': the address has no @domain part\n"
    assert run(capsys, "list", "--config", config)[1].splitlines()[1:] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "not an address"), "relayd: invalid address 'not an address'"),
        (("add", "a@example.com", "--ttl", "soon"), "relayd: --ttl 'soon': expected a duration"),
        (("import", "/nonexistent/list.csv"), "relayd: /nonexistent/list.csv: No such file or directory"),
    ],
)
def test_bad_arguments_create_no_store(capsys, config_file, tmp_path, args, message):
    config = config_file("a")

    status, _, err = run(capsys, *args, "--config", config)

    assert status in (1, 2)
    assert err.startswith(message)
    assert not (tmp_path / "a").exists()


def test_dkim_key_files_not_read(capsys, tmp_path):
    # The suppression commands only need the state store, so a key file
    # that relayd's user cannot read (here: one that does not exist) is no obstacle.
    path = tmp_path / "keys.toml"
    path.write_text(
        f'[server]\nspool_dir = "{tmp_path / "spool"}"\n\n[http]\nlisten = "127.0.0.1:9"\n\n'
        '[[dkim.keys]]\ndomain = "example.com"\nselector = "s1"\nkey_file = "/nonexistent/example.com.s1.key"\n'
    )

    status, out, err = run(capsys, "add", "a@example.com", "--config", str(path))

    assert status == 0
    assert out == "added a@example.com\n"
    assert "example.com.s1.key" not in err


def test_change_without_a_daemon_ends_with_a_note(capsys, config_file):
    status, out, err = run(capsys, "add", "a@example.com", "--config", config_file("a"))
    assert status == 0
    assert out == "added a@example.com\n"
    assert err.startswith("relayd: note: the change is stored; a running daemon applies it within a second (")
    assert "cannot reach relayd at http://127.0.0.1:9: " in err


def test_listing_does_not_call_the_daemon(capsys, config_file):
    assert run(capsys, "list", "--config", config_file("a"))[2] == ""


def test_list_into_closed_pipe_is_quiet(capsys, config_file, tmp_path):
    config = config_file("a")
    listing = tmp_path / "many.csv"
    listing.write_text("address\n" + "".join(f"user{n}@example.com\n" for n in range(20000)))
    assert run(capsys, "import", str(listing), "--config", config)[0] == 0

    # `head -1` exits after one line, while relayd still has most of the list to write.
    pipeline = subprocess.run(
        f"{shlex.quote(sys.executable)} -m relayd suppression list --config {shlex.quote(config)} | head -1",
        shell=True, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert pipeline.stdout.split() == ["ADDRESS", "SOURCE", "CREATED", "EXPIRES", "REASON"]
    assert pipeline.stderr == ""
