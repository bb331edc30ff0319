"""The shipped systemd unit and its companions, checked by systemd's own tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "edgeagent.service"
MAX_EXPOSURE = 2.0


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run the tests through `make test`")
    return found


def unit_lines() -> list[str]:
    return [line.strip() for line in UNIT.read_text().splitlines()]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A file-system tree as an installed gateway has it: the binaries the unit runs,
    the unit itself, and systemd's own units that it orders itself against."""
    tree = tmp_path / "root"
    for line in unit_lines():
        if line.startswith("Exec") and "=" in line:
            command = line.split("=", 1)[1].lstrip("-@:+!").split()[0]
            binary = tree / command.lstrip("/")
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_text("#!/bin/sh\n")
            binary.chmod(0o755)
    (tree / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tree / "etc/systemd/system/edgeagent.service")
    shutil.copytree("/usr/lib/systemd/system", tree / "usr/lib/systemd/system", symlinks=True)
    return tree


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            tool("systemd-analyze"),
            "verify",
            f"--root={root}",
            str(root / "etc/systemd/system/edgeagent.service"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_unit_verifies_clean(root: Path) -> None:
    result = verify(root)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_verify_notices_a_missing_binary(root: Path) -> None:
    """Guards the check above: verify must be looking at the tree we built."""
    (root / "opt/edgeagent/bin/edgeagent").unlink()
    result = verify(root)
    assert result.returncode != 0
    assert "/opt/edgeagent/bin/edgeagent" in result.stderr


def test_security_exposure_is_at_most_two(root: Path) -> None:
    result = subprocess.run(
        [
            tool("systemd-analyze"),
            "security",
            "--offline=yes",
            f"--root={root}",
            "--no-pager",
            "edgeagent.service",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    found = re.search(r"Overall exposure level for edgeagent\.service: (\d+\.\d)", output)
    assert found, output
    exposure = float(found.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= MAX_EXPOSURE, output


@pytest.mark.parametrize(
    ("setting", "why"),
    [
        ("PrivateUsers=yes", "maps dialout away, so serial ports open with EACCES"),
        ("PrivateDevices=yes", "hides /dev/ttyUSB* and /dev/ttyACM*"),
        ("DynamicUser=yes", "the dialout membership comes from sysusers"),
    ],
    ids=["private-users", "private-devices", "dynamic-user"],
)
def test_unit_avoids_settings_that_break_serial_receivers(setting: str, why: str) -> None:
    assert setting not in unit_lines(), why


def test_unit_keeps_what_a_site_relies_on() -> None:
    lines = unit_lines()
    for needed in (
        "Type=notify",
        "SupplementaryGroups=dialout",
        "StateDirectory=edgeagent",
        "ConfigurationDirectory=edgeagent",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert needed in lines, needed
    assert any(line.startswith("WatchdogSec=") for line in lines)
    assert any(line.startswith("LoadCredential=") for line in lines)
    assert any(line.startswith("DeviceAllow=char-ttyUSB") for line in lines)


def test_sysusers_creates_the_user_in_dialout(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/sysusers.d").mkdir(parents=True)
    shutil.copy(SYSTEMD / "edgeagent.sysusers", tmp_path / "usr/lib/sysusers.d/edgeagent.conf")
    result = subprocess.run(
        [tool("systemd-sysusers"), "--dry-run", f"--root={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Creating user 'edgeagent'" in result.stderr + result.stdout
