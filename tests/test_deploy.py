"""The files operators deploy: the systemd unit, the Dockerfile, alert rules and the Grafana dashboard.

systemd-analyze and promtool check what they can without a running
systemd or Prometheus. No Docker engine runs here, so the Dockerfile is
checked by reading it.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from relayd import metrics

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "relayd.service"
DOCKERFILE = ROOT / "Dockerfile"
RULES = ROOT / "conf" / "prometheus" / "relayd-alerts.yml"
RULES_TEST = ROOT / "tests" / "prometheus" / "relayd-alerts-test.yml"
DASHBOARD = ROOT / "conf" / "grafana" / "relayd-dashboard.json"
RELAYD = Path(sys.executable).with_name("relayd")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run `make system-packages` as root")
    return path


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_starts_documented_command():
    settings = unit_settings()

    assert settings["Type"] == ["notify"]
    assert settings["ExecStart"] == ["/usr/local/bin/relayd serve --config /etc/relayd/relayd.toml"]
    assert settings["User"] == ["relayd"]
    assert settings["ReadWritePaths"] == ["/var/spool/relayd"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["SystemCallFilter"][0] == "@system-service"


def test_unit_passes_verify(tmp_path):
    # verify checks that ExecStart exists; the copy points at this checkout's relayd.
    copy = tmp_path / "relayd.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/relayd", str(RELAYD)))

    result = run(tool("systemd-analyze"), "verify", str(copy))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_unit_security_exposure_at_most_2():
    result = run(tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20", str(UNIT))
    found = re.search(r"Overall exposure level for relayd\.service: (\d+\.\d)", result.stdout)

    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0
    assert result.returncode == 0


def test_sysusers_and_tmpfiles_make_private_spool(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)

    users = run(tool("systemd-sysusers"), f"--root={root}", str(ROOT / "systemd" / "relayd.sysusers"))
    assert users.returncode == 0, users.stderr
    entry = next(line for line in (root / "etc" / "passwd").read_text().splitlines() if line.startswith("relayd:"))
    uid = int(entry.split(":")[2])

    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles needs root to give the spool to the relayd user")
    files = run(tool("systemd-tmpfiles"), "--create", f"--root={root}", str(ROOT / "systemd" / "relayd.tmpfiles"))
    assert files.returncode == 0, files.stderr
    spool = (root / "var" / "spool" / "relayd").stat()
    assert spool.st_uid == uid
    assert oct(spool.st_mode & 0o777) == "0o700"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile(keyword: str) -> list[str]:
    return [rest for found, rest in dockerfile_instructions() if found == keyword]


def test_dockerfile_slim_python_base():
    (base,) = dockerfile("FROM")

    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base)


def test_dockerfile_runs_as_relayd():
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")

    assert dockerfile("USER")[-1] == "relayd"
    assert "RUN" not in keywords[last_user:], "nothing runs as root after USER"


def test_dockerfile_spool_ports_and_config():
    container_config = tomllib.loads((ROOT / "conf" / "relayd.container.toml").read_text())
    smtp_ports = {address.rpartition(":")[2] for address in container_config["smtp"]["listen"]}
    http_port = container_config["http"]["listen"].rpartition(":")[2]

    assert json.loads(dockerfile("VOLUME")[0]) == [container_config["server"]["spool_dir"]]
    assert set(dockerfile("EXPOSE")[0].split()) == smtp_ports | {http_port} == {"2525", "2580"}
    assert json.loads(dockerfile("CMD")[0]) == ["serve", "--config", "/etc/relayd/relayd.toml"]
    assert "conf/relayd.container.toml /etc/relayd/relayd.toml" in dockerfile("COPY")


def test_dockerfile_copies_existing_files():
    for arguments in dockerfile("COPY"):
        *sources, _ = shlex.split(arguments)
        for source in sources:
            assert (ROOT / source).exists(), source


def test_container_config_is_valid():
    result = run(str(RELAYD), "config", "check", "--config", "conf/relayd.container.toml")

    assert result.returncode == 0, result.stderr


def healthcheck_command() -> list[str]:
    (healthcheck,) = dockerfile("HEALTHCHECK")
    return json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())


def test_dockerfile_healthcheck_asks_healthz():
    command = healthcheck_command()

    assert command[:2] == ["python", "-c"]
    assert "'/healthz'" in command[2]
    assert "2580" in command[2]


def test_alert_rules_pass_promtool():
    result = run(tool("promtool"), "check", "rules", str(RULES))

    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_as_tested():
    result = run(tool("promtool"), "test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)

    assert result.returncode == 0, result.stdout + result.stderr


def exported_names() -> set[str]:
    names = set()
    for family in metrics.REGISTRY.collect():
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
    return names


def referenced_names(text: str) -> set[str]:
    return set(re.findall(r"\brelayd_[a-z0-9_]+", text))


def test_alert_rules_use_exported_metrics():
    unknown = referenced_names(RULES.read_text()) - exported_names()

    assert unknown == set()


def test_dashboard_uses_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]

    assert len(expressions) > 10
    assert referenced_names("\n".join(expressions)) - exported_names() == set()


def test_dashboard_panels_do_not_overlap():
    dashboard = json.loads(DASHBOARD.read_text())
    taken: set[tuple[int, int]] = set()

    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert not cells & taken, panel["title"]
        taken |= cells
