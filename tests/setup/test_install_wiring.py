"""install.sh ends by pointing to `voicebox setup`, or by running `voicebox doctor` on a box that
is already configured; it stores the key with voicebox.credentials and puts `voicebox` on PATH."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install.sh"


def install(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_fresh_install_points_to_setup_and_links_the_command(tmp_path: Path) -> None:
    root = tmp_path / "root"
    r = install(root, "--api-key-stdin", stdin="sk-wiring\n")
    assert r.returncode == 0, r.stderr
    assert "next: sudo voicebox setup" in r.stdout
    assert "voicebox doctor --quiet" not in r.stdout
    link = root / "usr/local/bin/voicebox"
    assert os.readlink(link) == "/opt/voicebox/venv/bin/voicebox"
    cred = root / "etc/voicebox/credentials/elevenlabs_api_key"
    assert cred.read_text() == "sk-wiring\n" and stat.S_IMODE(cred.stat().st_mode) == 0o600


def test_a_configured_box_gets_a_doctor_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = root / "etc/voicebox/config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        (REPO / "config/voicebox.yaml").read_text().replace('agent_id: ""', "agent_id: a1")
    )
    r = install(root)
    assert r.returncode == 0, r.stderr
    assert "checking it: voicebox doctor" in r.stdout
    assert "python -m voicebox doctor --quiet --config /etc/voicebox/config.yaml" in r.stdout
    assert "next: sudo voicebox setup" not in r.stdout
    r = install(root, "--uninstall")
    assert r.returncode == 0 and not (root / "usr/local/bin/voicebox").is_symlink()
