"""`voicebox setup --non-interactive`, the in-place config editor and the credential writer."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doctor.simthread import SimThread
from voicebox import config, config_edit, credentials
from voicebox.simulator.server import SimConfig

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config" / "voicebox.yaml"
KEY = "sk-scripted"


@pytest.fixture
def sim() -> Iterator[SimThread]:
    with SimThread(SimConfig(api_key=KEY, agent_ids=frozenset({"agent-ok"}))) as s:
        yield s


def setup(tmp: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ELEVENLABS_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "voicebox", "setup", "--non-interactive",
         "--config", str(tmp / "etc/voicebox/config.yaml"), "--root", str(tmp), *args],
        input=stdin, capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    etc = tmp_path / "etc/voicebox"
    etc.mkdir(parents=True)
    (etc / "config.yaml.example").write_text(SAMPLE.read_text())  # as install.sh leaves it
    return tmp_path


def test_scripted_setup_from_the_sample_checks_and_writes(root: Path, sim: SimThread) -> None:
    proc = setup(
        root, "--agent-id", "agent-ok", "--api-base", sim.url, "--api-key-file", "-",
        "--button-pin", "22", "--led-pin", "none", "--mode", "always_on", stdin=f"  {KEY}\n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK    api key" in proc.stdout and "OK    agent" in proc.stdout
    path = root / "etc/voicebox/config.yaml"
    cfg = config.load(path)
    assert (cfg.agent.agent_id, cfg.agent.api_base) == ("agent-ok", sim.url)
    assert cfg.gpio.button.pin == 22 and cfg.conversation.mode == "always_on"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert "# BCM pin of the push-to-talk button; null for none" in path.read_text()
    cred = root / "etc/voicebox/credentials/elevenlabs_api_key"
    assert cred.read_text() == KEY + "\n" and stat.S_IMODE(cred.stat().st_mode) == 0o600


def test_scripted_setup_with_a_wrong_agent_writes_nothing(root: Path, sim: SimThread) -> None:
    proc = setup(root, "--agent-id", "nope", "--api-base", sim.url, "--api-key-file", "-",
                 stdin=KEY)  # fmt: skip
    assert proc.returncode == 1
    assert "FAIL  agent" in proc.stdout and "unchanged" in proc.stdout
    assert not (root / "etc/voicebox/config.yaml").exists()
    assert not (root / "etc/voicebox/credentials").exists()


def test_scripted_setup_rejects_a_bad_pin_and_an_unknown_device(root: Path) -> None:
    proc = setup(root, "--no-check", "--button-pin", "99")
    assert proc.returncode == 2 and "--button-pin" in proc.stdout
    proc = setup(root, "--no-check", "--input-device", "no-such-mic")
    assert proc.returncode == 1 and "no-such-mic" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (root / "etc/voicebox/config.yaml").exists()


def test_edit_keeps_comments_order_and_other_settings() -> None:
    text = SAMPLE.read_text().replace("idle_close_s: 20.0", "idle_close_s: 45.0")
    new = config_edit.edit(
        text, {"agent.agent_id": "a1", "gpio.led.pin": 12, "gpio.button.pin": None}
    )
    cfg = config.parse(new)
    assert (cfg.agent.agent_id, cfg.gpio.led.pin, cfg.gpio.button.pin) == ("a1", 12, None)
    assert cfg.conversation.idle_close_s == 45.0  # the user's own setting survives
    old_lines, new_lines = text.splitlines(), new.splitlines()
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert len(changed) == 3
    assert changed[1] == (
        "    pin: 17                           # BCM pin of the push-to-talk button; null for none",
        "    pin: null                         # BCM pin of the push-to-talk button; null for none",
    )


def test_edit_refuses_what_is_not_a_mapping() -> None:
    with pytest.raises(config_edit.EditError):
        config_edit.edit("- a list\n", {"agent.agent_id": "x"})
    with pytest.raises(config_edit.EditError):
        config_edit.edit("agent: 3\n", {"agent.agent_id": "x"})


def test_write_atomic_keeps_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    config_edit.write_atomic(path, "a: 1\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.chmod(0o600)
    config_edit.write_atomic(path, "a: 2\n")
    assert path.read_text() == "a: 2\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_credential_store_is_0600_in_a_0700_dir_and_refuses_empty(tmp_path: Path) -> None:
    path = tmp_path / "credentials/elevenlabs_api_key"
    credentials.store(path, " sk-abc \n")
    assert path.read_text() == "sk-abc\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
    with pytest.raises(ValueError):
        credentials.store(path, " \n")
    assert path.read_text() == "sk-abc\n"


def test_scripted_setup_chooses_the_wake_word_even_in_a_config_without_its_section(
    root: Path,
) -> None:
    etc = root / "etc/voicebox"
    (etc / "config.yaml").write_text(
        "agent:\n  agent_id: agent-ok\nconversation:\n  mode: always_on\n"
    )
    proc = setup(root, "--no-check", "--mode", "wake_word", "--wake-model", "hey_jarvis")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = config.load(etc / "config.yaml")
    assert cfg.conversation.mode == "wake_word" and cfg.wake.model == "hey_jarvis"
    proc = setup(root, "--no-check", "--wake-model", "hey_nobody")
    assert proc.returncode == 2 and "--wake-model" in proc.stdout and "hey_nobody" in proc.stdout
    assert config.load(etc / "config.yaml").wake.model == "hey_jarvis"


def test_scripted_setup_sets_the_mute_and_refuses_a_pin_clash(root: Path) -> None:
    path = root / "etc/voicebox/config.yaml"
    proc = setup(root, "--no-check", "--button-pin", "17", "--mute-pin", "22",
                 "--mute-kind", "button", "--long-press", "mute")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = config.load(path)
    assert (cfg.gpio.mute.pin, cfg.gpio.mute.kind) == (22, "button")
    assert cfg.gpio.button.long_press == "mute"
    before = path.read_bytes()
    proc = setup(root, "--no-check", "--mute-pin", "17")  # the talk button's pin
    assert proc.returncode == 78, proc.stdout
    assert "gpio.mute.pin" in proc.stdout and "gpio.button.pin" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert path.read_bytes() == before
