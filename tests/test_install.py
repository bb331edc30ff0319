"""`make wheelhouse`, `make install` with no network, upgrade and `make uninstall`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def make(
    tree: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(tree), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_offline_install_upgrade_and_uninstall(tmp_path: Path) -> None:
    # Building the wheel writes build files into the tree: use a copy, not the checkout.
    tree = tmp_path / "source"
    shutil.copytree(
        REPO,
        tree,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "__pycache__", ".*_cache", "artifacts", "build"
        ),
    )
    wheelhouse = tmp_path / "wheelhouse"
    root = tmp_path / "root"
    python = f"INSTALL_PYTHON={sys.executable}"
    make(tree, "wheelhouse", f"WHEELHOUSE={wheelhouse}", python)
    assert any(p.name.startswith("edgeagent-") for p in wheelhouse.glob("*.whl"))

    # No index at all: every wheel must come from the wheelhouse.
    offline = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}
    offline.pop("PIP_FIND_LINKS", None)
    make(tree, "install", f"DESTDIR={root}", f"WHEELHOUSE={wheelhouse}", python, env=offline)

    daemon = root / "opt/edgeagent/bin/edgeagent"
    version = subprocess.run(
        [str(daemon), "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert version.stdout.startswith("edgeagent ")
    for path in (
        "usr/lib/systemd/system/edgeagent.service",
        "usr/lib/sysusers.d/edgeagent.conf",
        "usr/lib/tmpfiles.d/edgeagent.conf",
        "etc/udev/rules.d/60-edgeagent-gnss.rules",
        "usr/share/doc/edgeagent/example.yaml",
    ):
        assert (root / path).is_file(), path
    config = root / "etc/edgeagent/edgeagent.yaml"
    assert config.read_text() == (REPO / "config/example.yaml").read_text()
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    checked = subprocess.run(
        [str(daemon), "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in checked.stderr, "the installed daemon runs its own code"

    # An upgrade keeps the site's configuration and udev rule.
    config.write_text("gateway: {id: site-7}\n")
    rule = root / "etc/udev/rules.d/60-edgeagent-gnss.rules"
    rule.write_text("# site's own rule\n")
    upgraded = make(tree, "install-files", f"DESTDIR={root}")
    assert "kept" in upgraded.stdout
    assert config.read_text() == "gateway: {id: site-7}\n"
    assert rule.read_text() == "# site's own rule\n"

    (root / "var/lib/edgeagent").mkdir(parents=True)
    (root / "var/lib/edgeagent/outbox.db").write_bytes(b"undelivered")
    make(tree, "uninstall", f"DESTDIR={root}")
    assert not (root / "opt/edgeagent").exists()
    assert not (root / "usr/lib/systemd/system/edgeagent.service").exists()
    assert config.exists() and (root / "var/lib/edgeagent/outbox.db").exists()

    make(tree, "uninstall", f"DESTDIR={root}", "PURGE=1")
    assert not (root / "etc/edgeagent").exists()
    assert not (root / "var/lib/edgeagent").exists()
    shutil.rmtree(root)
