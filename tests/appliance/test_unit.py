"""systemd/voicebox.service: `systemd-analyze verify` silent, offline security exposure <= 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "voicebox.service"


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.fixture(scope="module")
def testable_unit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unit with ExecStart on this venv's python: verify needs the binary to exist."""
    assert shutil.which("systemd-analyze"), "systemd-analyze is required (scripts/bootstrap.sh)"
    text = UNIT.read_text()
    assert "ExecStart=/opt/voicebox/venv/bin/python " in text
    text = text.replace("ExecStart=/opt/voicebox/venv/bin/python", f"ExecStart={sys.executable}")
    path = tmp_path_factory.mktemp("unit") / "voicebox.service"
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
    m = re.search(r"Overall exposure level for voicebox.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0
    assert r.returncode == 0


def test_unit_contract() -> None:
    s = settings(UNIT.read_text())
    assert s["Type"] == ["notify"]  # not notify-reload: systemd 252
    assert s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == [
        "/opt/voicebox/venv/bin/python -m voicebox run --config /etc/voicebox/config.yaml"
    ]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["WatchdogSec"] == ["30s"]
    assert s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["78"]
    assert s["LoadCredential"] == [
        "elevenlabs_api_key:/etc/voicebox/credentials/elevenlabs_api_key",
        "mqtt:/etc/voicebox/credentials/mqtt",  # a directory: its `password` is mqtt_password
    ]
    assert s["EnvironmentFile"] == ["-/etc/default/voicebox"]
    assert s["User"] == ["voicebox"]
    assert s["SupplementaryGroups"] == ["audio gpio"]
    env = " ".join(s["Environment"]).split()
    for var in (
        "GPIOZERO_PIN_FACTORY=lgpio",
        "LG_WD=/run/voicebox",
        "PYTHONUNBUFFERED=1",
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONFAULTHANDLER=1",
    ):
        assert var in env
    assert s["WorkingDirectory"] == ["/run/voicebox"]
    assert s["RuntimeDirectory"] == ["voicebox"] and s["StateDirectory"] == ["voicebox"]
    assert s["DevicePolicy"] == ["closed"]
    assert s["DeviceAllow"] == ["char-alsa rw", "char-gpiochip rw"]
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    # each of these breaks audio, GPIO or psutil (platform.md §0)
    assert s.get("MemoryDenyWriteExecute", ["no"]) == ["no"]
    assert s.get("PrivateDevices", ["no"]) == ["no"]
    assert "ProcSubset" not in s
    for unknown_on_252 in ("RestartSteps", "RestartMaxDelaySec", "RestartMode", "ImportCredential"):
        assert unknown_on_252 not in s
