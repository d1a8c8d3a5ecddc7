"""`relayd dkim keygen`, `relayd verify` and `relayd config check` run as commands, with DNS from dnsmasq on loopback."""

import dataclasses
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from relayd.config import load_config
from relayd.dkim.keys import load_key
from relayd.dkim.signer import Signer
from tests.support.dns import DnsServer

ROOT = Path(__file__).resolve().parents[2]
AUTHSERV_ID = "relay.test"
ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
SELECTORS = {"rsa": "s1", "ed25519": "e1"}
SPF_CLIENT = "127.0.0.5"

MESSAGE = (
    b"From: App <app@example.com>\r\n"
    b"To: user@example.net\r\n"
    b"Subject: Your sign-in code\r\n"
    b"Date: Thu, 01 Jan 2026 10:00:00 +0000\r\n"
    b"Message-ID: <code-1@example.com>\r\n"
    b"\r\n"
    b"Your code is 123456.\r\n"
)

RECORD_LINE = re.compile(r"^(\S+)\. IN TXT \( (.*) \)$", re.MULTILINE)
QUOTED = re.compile(r'"([^"]*)"')


def relayd(*args: str, stdin: bytes = b"", cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "relayd", *args], cwd=cwd, input=stdin, capture_output=True, timeout=60
    )
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def keygen(output: Path, algorithm: str = "rsa", selector: str = "s1", domain: str = "example.com"):
    return relayd(
        "dkim", "keygen", "--domain", domain, "--selector", selector, "--algorithm", algorithm, "--output", str(output)
    )


def txt_strings(stdout: str) -> tuple[str, list[str]]:
    """Return the record name and the quoted character-strings of the printed TXT record."""
    match = RECORD_LINE.search(stdout)
    assert match is not None, stdout
    return match.group(1), QUOTED.findall(match.group(2))


def config_snippet(stdout: str) -> str:
    return stdout[stdout.index("[[dkim.keys]]") :]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Keys made by `relayd dkim keygen`, their printed records on dnsmasq, and a config using them."""
    directory = tmp_path_factory.mktemp("dkim-cli")
    runs = {}
    for name, selector in SELECTORS.items():
        output = directory / f"{name}.key"
        runs[name] = SimpleNamespace(path=output, result=keygen(output, name, selector))
        assert runs[name].result.returncode == 0, runs[name].result.stderr

    dns = DnsServer(directory / "dns")
    for run in runs.values():
        record_name, strings = txt_strings(run.result.stdout)
        dns.add_txt(record_name, *strings)
    dns.add_txt("example.com", f"v=spf1 ip4:{SPF_CLIENT} -all")
    dns.add_servfail("servfail.example")
    dns.start()

    config_path = directory / "relayd.toml"
    snippets = "\n".join(config_snippet(run.result.stdout) for run in runs.values())
    config_path.write_text(
        f'[server]\nhostname = "{AUTHSERV_ID}"\n\n'
        f'[dns]\nnameservers = ["{dns.address}"]\ntimeout = "2s"\n\n'
        f"{snippets}"
    )
    config = load_config(config_path)
    keys = {name: load_key(entry) for name, entry in zip(SELECTORS, config.dkim_keys)}
    yield SimpleNamespace(directory=directory, runs=runs, dns=dns, config_path=config_path, keys=keys)
    dns.stop()


def sign(setup, names: list[str], content: bytes = MESSAGE) -> bytes:
    signatures, used = Signer([setup.keys[name] for name in names]).sign(content)
    assert len(used) == len(names)
    return signatures + content


def verify(setup, message: bytes, *args: str) -> subprocess.CompletedProcess:
    return relayd("verify", "--config", str(setup.config_path), *args, stdin=message)


# keygen


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_keygen_file_mode(setup, name):
    run = setup.runs[name]
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o600
    assert f"Wrote the private key to {run.path} (mode 0600)." in run.result.stdout
    assert run.result.stderr == ""


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_keygen_prints_txt_record(setup, name):
    run = setup.runs[name]
    selector = SELECTORS[name]

    record_name, strings = txt_strings(run.result.stdout)
    key = setup.keys[name]

    assert record_name == f"{selector}._domainkey.example.com"
    assert f'{selector}._domainkey.example.com. IN TXT ( "v=DKIM1; k={name}; p=' in run.result.stdout
    assert all(len(text.encode()) <= 255 for text in strings)
    assert "".join(strings) == key.txt_record()


def test_keygen_rsa_record_split(setup):
    _, strings = txt_strings(setup.runs["rsa"].result.stdout)
    # A 2048-bit key's p= value alone is 392 characters, and one string contains at most 255.
    assert len(strings) == 2
    assert len(strings[0]) == 255


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_keygen_prints_config_snippet(setup, name):
    run = setup.runs[name]
    snippet = tomllib.loads(config_snippet(run.result.stdout))
    assert snippet == {
        "dkim": {
            "keys": [
                {
                    "domain": "example.com",
                    "selector": SELECTORS[name],
                    "key_file": str(run.path.resolve()),
                    "algorithm": ALGORITHMS[name],
                }
            ]
        }
    }


def test_keygen_rsa_default_bits(setup):
    key = setup.keys["rsa"]
    assert key.algorithm == "rsa-sha256"
    # A 2048-bit SubjectPublicKeyInfo is 294 DER bytes, so 392 base64 characters.
    assert len(key.public_b64) == 392


def test_keygen_default_file_name(tmp_path):
    result = relayd(
        "dkim", "keygen", "--domain", "example.com", "--selector", "s2", "--algorithm", "ed25519", cwd=tmp_path
    )
    path = tmp_path / "example.com.s2.key"
    assert result.returncode == 0, result.stderr
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_keygen_keeps_existing_file(setup, name):
    run = setup.runs[name]
    before = run.path.read_bytes()

    result = keygen(run.path, name, SELECTORS[name])

    assert result.returncode == 1
    assert f"{run.path} already exists" in result.stderr
    assert result.stdout == ""
    assert run.path.read_bytes() == before
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o600


def test_keygen_rejects_small_bits(tmp_path):
    output = tmp_path / "small.key"
    result = relayd("dkim", "keygen", "--domain", "example.com", "--selector", "s1", "--bits", "512", "--output", str(output))
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert "1024" in result.stderr
    assert not output.exists()


def test_keygen_idn_record_name(tmp_path):
    result = keygen(tmp_path / "idn.key", "ed25519", "s1", "bücher.example")
    assert result.returncode == 0, result.stderr
    assert txt_strings(result.stdout)[0] == "s1._domainkey.xn--bcher-kva.example"


def test_keygen_rejects_bad_selector(tmp_path):
    output = tmp_path / "bad.key"
    result = keygen(output, "ed25519", "bad selector")
    assert result.returncode != 0
    assert not output.exists()


# verify


@pytest.mark.parametrize("names", [["rsa"], ["ed25519"], ["rsa", "ed25519"]], ids=["rsa", "ed25519", "both"])
def test_verify_signed_message(setup, names):
    result = verify(setup, sign(setup, names))
    header = result.stdout.strip()

    assert result.returncode == 0, result.stdout + result.stderr
    assert header.startswith(f"Authentication-Results: {AUTHSERV_ID};")
    assert header.count("dkim=pass header.d=example.com") == len(names)
    for name in names:
        assert f"header.s={SELECTORS[name]}" in header
        assert f"header.a={ALGORITHMS[name]}" in header


def test_verify_lf_line_endings(setup):
    signed = sign(setup, ["rsa"]).replace(b"\r\n", b"\n")
    result = verify(setup, signed)
    assert result.returncode == 0, result.stdout
    assert "dkim=pass header.d=example.com" in result.stdout


def test_verify_tampered_header(setup):
    signed = sign(setup, ["rsa"]).replace(b"Subject: Your sign-in code", b"Subject: Your sign-in cod")
    result = verify(setup, signed)
    assert result.returncode == 1
    assert "dkim=fail header.d=example.com" in result.stdout


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_verify_tampered_body_exit(setup, name):
    signed = sign(setup, [name]).replace(b"123456", b"654321")
    result = verify(setup, signed)
    assert result.returncode == 1
    assert "dkim=pass" not in result.stdout


def test_verify_tampered_body_fail(setup):
    signed = sign(setup, ["ed25519"]).replace(b"123456", b"654321")
    result = verify(setup, signed)
    assert "dkim=fail " in result.stdout
    assert "header.d=example.com" in result.stdout


def test_verify_unsigned_message(setup):
    result = verify(setup, MESSAGE)
    assert result.returncode == 1
    assert "dkim=none" in result.stdout
    assert result.stdout.startswith(f"Authentication-Results: {AUTHSERV_ID};")


def test_verify_unpublished_selector(setup):
    signed = sign(setup, ["ed25519"]).replace(b"s=e1;", b"s=e9;")
    result = verify(setup, signed)
    assert result.returncode == 1
    # dkimpy 1.1.8 returns False when the key record is missing, so relayd reports fail, not permerror.
    assert re.search(r"dkim=(fail|permerror) ", result.stdout) is not None
    assert "header.s=e9" in result.stdout


def test_verify_dns_servfail(setup):
    key = dataclasses.replace(setup.keys["rsa"], domain="servfail.example")
    content = MESSAGE.replace(b"app@example.com", b"app@servfail.example")
    signatures, _ = Signer([key]).sign(content)

    result = verify(setup, signatures + content)

    assert result.returncode == 1
    assert "dkim=temperror" in result.stdout
    assert "header.d=servfail.example" in result.stdout


@pytest.mark.parametrize(
    "client, spf, code",
    [(SPF_CLIENT, "spf=pass", 0), ("127.0.0.6", "spf=fail", 1)],
    ids=["listed", "unlisted"],
)
def test_verify_adds_spf(setup, client, spf, code):
    result = verify(setup, sign(setup, ["rsa"]), "--ip", client, "--mail-from", "app@example.com")

    assert result.returncode == code, result.stdout + result.stderr
    assert "dkim=pass header.d=example.com" in result.stdout
    assert f"; {spf} " in result.stdout
    assert "smtp.mailfrom=app@example.com" in result.stdout
    assert "query[TXT] example.com from 127.0.0.1" in setup.dns.read_log()


# config check


def test_config_check_accepts_keys(setup):
    result = relayd("config", "check", "--config", str(setup.config_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{setup.config_path}: ok"


def test_config_check_readable_key(setup, tmp_path):
    exposed = tmp_path / "exposed.key"
    exposed.write_bytes(setup.runs["ed25519"].path.read_bytes())
    exposed.chmod(0o644)
    config = tmp_path / "relayd.toml"
    config.write_text(
        setup.config_path.read_text().replace(str(setup.runs["ed25519"].path.resolve()), str(exposed))
    )

    result = relayd("config", "check", "--config", str(config))

    assert result.returncode == 2
    assert f"chmod 600 {exposed}" in result.stderr
    assert "e1._domainkey.example.com" in result.stderr


def test_config_check_missing_key(setup, tmp_path):
    config = tmp_path / "relayd.toml"
    config.write_text(setup.config_path.read_text().replace(str(setup.runs["rsa"].path.resolve()), str(tmp_path / "gone.key")))
    result = relayd("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert "relayd dkim keygen" in result.stderr


def test_key_lookups_reach_dnsmasq(setup):
    log = setup.dns.read_log()
    assert "query[TXT] s1._domainkey.example.com from 127.0.0.1" in log
    assert "query[TXT] e1._domainkey.example.com from 127.0.0.1" in log
