"""`voicebox setup` on a box whose service runs: a new API key restarts it (a reload never re-reads
the key, and under LoadCredential= only a start copies the credential in); a config-only change
reloads it, a new audio device restarts it (a reload reopens no device). systemctl is a script on
PATH that records what it was asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def box(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    root = tmp_path / "root"
    (root / "etc/voicebox").mkdir(parents=True)
    (root / "etc/voicebox/config.yaml").write_text("agent:\n  agent_id: a\n")
    (root / "run/systemd/system").mkdir(parents=True)  # systemd runs here
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {log}\n[ "$1" = is-active ] && echo active\nexit 0\n'
    )
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "ELEVENLABS_API_KEY"}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    return root, log, env


def setup(root: Path, env: dict[str, str], *args: str, stdin: str = "") -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "voicebox", "setup", "--non-interactive", "--no-check",
         "--config", str(root / "etc/voicebox/config.yaml"), "--root", str(root), *args],
        input=stdin, capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def verbs(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    log.unlink()
    return [line.split()[0] for line in lines if not line.startswith("is-active")]


def test_a_new_key_restarts_the_running_service(tmp_path: Path) -> None:
    root, log, env = box(tmp_path)
    out = setup(root, env, "--api-key-file", "-", stdin="sk-new\n")
    assert verbs(log) == ["restart"] and "voicebox restarted" in out


def test_a_config_change_alone_reloads_it(tmp_path: Path) -> None:
    root, log, env = box(tmp_path)
    out = setup(root, env, "--agent-id", "b")
    assert verbs(log) == ["reload"] and "voicebox reloaded" in out


def test_the_same_key_again_only_reloads(tmp_path: Path) -> None:
    root, log, env = box(tmp_path)
    setup(root, env, "--api-key-file", "-", stdin="sk-same\n")
    verbs(log)
    setup(root, env, "--api-key-file", "-", stdin="sk-same\n")
    assert verbs(log) == ["reload"]


def test_a_new_audio_device_restarts_it(tmp_path: Path) -> None:
    from tests.audio.test_alsa import asoundrc

    root, log, env = box(tmp_path)
    asoundrc(tmp_path)  # PortAudio lists 'tofile' (a file PCM) among the outputs
    env["HOME"] = str(tmp_path)
    out = setup(root, env, "--output-device", "tofile")
    assert verbs(log) == ["restart"] and "voicebox restarted" in out
    out = setup(root, env, "--output-device", "tofile")  # the same device again
    assert verbs(log) == ["reload"]
