"""`voicebox setup` driven through a real pseudo-terminal (pexpect): devices on ALSA file/null
PCMs, the simulator for the key and agent checks, gpiozero's mock pins. The meter line updates in
place, the key is not echoed, the written config validates and keeps the sample's comments,
Ctrl-C leaves everything as it was."""

from __future__ import annotations

import os
import re
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pexpect
import pytest

from tests.audio.test_alsa import asoundrc
from tests.doctor.simthread import SimThread
from voicebox import config
from voicebox.simulator.server import SimConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config" / "voicebox.yaml"
KEY = "sk-setup-test-key"
RATE = 16000
METER = re.compile(r"\r  level +(-?\d+\.\d) dBFS  peak +(-?\d+\.\d) dBFS  \|[#.]+\|")


@pytest.fixture
def sim() -> Iterator[SimThread]:
    with SimThread(SimConfig(api_key=KEY, agent_ids=frozenset({"agent-ok"}))) as s:
        yield s


@pytest.fixture
def box(tmp_path: Path, sim: SimThread) -> Path:
    asoundrc(tmp_path)
    # 60 s of mic: quiet and loud stretches alternating every half second
    t = np.arange(60 * RATE) / RATE
    loud = (np.floor(t * 2) % 2).astype(bool)
    x = np.where(loud, 12000, 300) * np.sin(2 * np.pi * 300 * t)
    x.astype("<i2").tofile(tmp_path / "in.raw")
    etc = tmp_path / "root/etc/voicebox"
    etc.mkdir(parents=True)
    text = SAMPLE.read_text().replace("api_base: https://api.elevenlabs.io", f"api_base: {sim.url}")
    (etc / "config.yaml").write_text(text)
    return tmp_path


def spawn(box: Path, *args: str) -> pexpect.spawn:
    env = {**os.environ, "HOME": str(box), "GPIOZERO_PIN_FACTORY": "mock", "TERM": "xterm"}
    env.pop("ELEVENLABS_API_KEY", None)
    return pexpect.spawn(
        sys.executable,
        ["-m", "voicebox", "setup", "--config", str(box / "root/etc/voicebox/config.yaml"),
         "--root", str(box / "root"), *args],
        env=env, cwd=str(REPO), encoding="utf-8", timeout=60, dimensions=(40, 120),
        preexec_fn=_terminal_signals,
    )  # fmt: skip


def _terminal_signals() -> None:
    """Ctrl-C as a terminal gives it, even when the runner ignores SIGINT (a background job,
    a pytest-xdist worker): ignored signals are inherited across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def comments(text: str) -> list[str]:
    return [line[line.index("#") :].strip() for line in text.splitlines() if "#" in line]


def test_interactive_setup_writes_a_valid_config_keeping_comments(box: Path) -> None:
    path = box / "root/etc/voicebox/config.yaml"
    child = spawn(box)
    child.expect(r"Microphone \(number or name\) \[\d+\]: ")
    assert "fromfile" in child.before
    child.sendline("fromfile")
    child.expect(r"Listening on 'fromfile' at (\d+) Hz \(device default\)")
    levels = []
    for _ in range(8):
        child.expect(METER)
        levels.append(float(child.match.group(1)))
    assert len(set(levels)) > 1, levels  # the line moves with the mic
    assert max(levels) > -12 and min(levels) < -30
    child.sendline("")
    child.expect(r"Speaker \(number or name\) \[\d+\]: ")
    child.sendline("tofile")
    child.expect(r"Did you hear the tone\? \[Y/n\]: ")
    child.sendline("y")
    child.expect(r"Agent id \(from the agent's page\): ")
    child.sendline("agent-ok")
    child.expect(r"API key \(not shown\): ")
    child.sendline("sk-wrong-key")
    child.expect("FAIL  api key")
    child.expect("Let's try again.")
    child.expect(r"Agent id \(from the agent's page\) \[agent-ok\]: ")
    child.sendline("")
    child.expect(r"API key \(not shown\): ")
    child.sendline(KEY)
    child.expect(r"OK    agent +agent-ok is 'voicebox simulator \(agent-ok\)'")
    child.expect(r"Button BCM pin \(none for no button\) \[17\]: ")
    child.sendline("none")
    child.expect(r"LED BCM pin \(none for no LED\) \[none\]: ")
    child.sendline("27")
    child.expect("blinking the LED three times")
    child.expect(r"Mute switch or button BCM pin \(none for none\) \[none\]: ")
    child.sendline("27")
    child.expect("pin 27 is the talk button's or the LED's")
    child.expect(r"Mute switch or button BCM pin .*: ")
    child.sendline("22")
    child.expect(r"Mute pin: switch \(muted while closed\) or button .* \[switch\]: ")
    child.sendline("button")
    child.expect(r"Mode: push_to_talk, wake_word or always_on \[push_to_talk\]: ")
    child.sendline("always_on")
    child.expect("Wrote .*config.yaml")
    child.expect(pexpect.EOF)
    transcript = child.before
    child.close()
    assert child.exitstatus == 0, transcript
    cfg = config.load(path)
    assert cfg.agent.agent_id == "agent-ok"
    assert cfg.audio.input.device == "fromfile" and cfg.audio.output.device == "tofile"
    assert cfg.gpio.button.pin is None and cfg.gpio.led.pin == 27
    assert cfg.gpio.mute.pin == 22 and cfg.gpio.mute.kind == "button"
    assert cfg.conversation.mode == "always_on"
    written = path.read_text()
    assert comments(written) == comments(SAMPLE.read_text())
    assert KEY not in written
    cred = box / "root/etc/voicebox/credentials/elevenlabs_api_key"
    assert cred.read_text() == KEY + "\n"
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert stat.S_IMODE(cred.parent.stat().st_mode) == 0o700


def test_the_key_is_not_echoed(box: Path) -> None:
    child = spawn(box)
    child.expect(r"Microphone .*: ")
    child.sendline("fromfile")
    child.expect(METER)
    child.sendline("")
    child.expect(r"Speaker .*: ")
    child.sendline("tofile")
    child.expect(r"Did you hear the tone\? \[Y/n\]: ")
    child.sendline("y")
    child.expect(r"Agent id .*: ")
    child.sendline("agent-ok")
    child.expect(r"API key \(not shown\): ")
    child.sendline(KEY)
    child.expect(r"Button BCM pin")
    assert KEY not in child.before
    child.sendintr()
    child.expect(pexpect.EOF)


def test_ctrl_c_leaves_the_config_and_key_untouched(box: Path) -> None:
    path = box / "root/etc/voicebox/config.yaml"
    before = path.read_bytes()
    child = spawn(box)
    child.expect(r"Microphone .*: ")
    child.sendline("fromfile")
    child.expect(METER)
    child.sendintr()
    child.expect("setup interrupted")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "Traceback" not in child.before
    assert path.read_bytes() == before
    assert not (box / "root/etc/voicebox/credentials").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yaml"]  # no temp file left
