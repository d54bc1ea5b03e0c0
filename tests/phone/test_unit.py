"""systemd/voicebox-phone.service: verify silent, exposure <= 2.0, its own runtime directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.appliance.test_unit import settings

UNITS = Path(__file__).resolve().parents[2] / "systemd"
UNIT = UNITS / "voicebox-phone.service"


@pytest.fixture(scope="module")
def testable_unit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("systemd-analyze"), "systemd-analyze is required (scripts/bootstrap.sh)"
    text = UNIT.read_text().replace(
        "ExecStart=/opt/voicebox/venv/bin/python", f"ExecStart={sys.executable}"
    )
    path = tmp_path_factory.mktemp("unit") / "voicebox-phone.service"
    path.write_text(text)
    return path


def test_verify_prints_nothing(testable_unit: Path) -> None:
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(testable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_security_exposure_at_most_2(testable_unit: Path) -> None:
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(testable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for voicebox-phone.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0


def test_unit_contract() -> None:
    s = settings(UNIT.read_text())
    appliance = settings((UNITS / "voicebox.service").read_text())
    assert s["ExecStart"] == [
        "/opt/voicebox/venv/bin/python -m voicebox phone --config /etc/voicebox/config.yaml"
    ]
    assert s["Type"] == ["notify"] and s["WatchdogSec"] == ["30s"]
    assert s["RestartPreventExitStatus"] == ["78 69"]  # a bad config; no phone extra
    assert "twilio_auth_token:/etc/voicebox/credentials/twilio_auth_token" in s["LoadCredential"]
    # Stopping one unit must not remove the other's runtime directory (and socket).
    assert s["RuntimeDirectory"] != appliance["RuntimeDirectory"]
    assert s["PrivateDevices"] == ["yes"] and "DeviceAllow" not in s
    for key in ("NoNewPrivileges", "ProtectSystem", "SystemCallFilter", "RestrictNamespaces"):
        assert s[key] == appliance[key]


def test_install_puts_the_phone_unit_in_place_disabled_and_uninstall_removes_it(
    tmp_path: Path,
) -> None:
    script = UNITS.parent / "scripts" / "install.sh"
    root = tmp_path / "root"

    def install(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["bash", str(script), "--root", str(root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    r = install("--prefix", "/srv/vb")
    assert r.returncode == 0, r.stderr
    unit = root / "etc/systemd/system/voicebox-phone.service"
    assert "ExecStart=/srv/vb/venv/bin/python -m voicebox phone" in unit.read_text()
    assert "enable voicebox-phone" not in r.stdout  # phone.enabled is off by default
    assert install("--uninstall").returncode == 0
    assert not unit.exists()
