"""Fixtures of the system test: one booted container per session, voicebox installed in it by
scripts/install.sh as the README says, and the simulator as its own unit.

Run only by `make system-test` (scripts/system-test.sh sets VOICEBOX_SYSTEM_ROOT to a fresh
overlay of the cached Debian 12 root, with a `git archive` of the checkout in /root/voicebox).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.system.box import Box, BoxError
from voicebox.simulator.voice import silence, speech_like

ARCH = os.environ.get("VOICEBOX_SYSTEM_ARCH", "amd64")
SLOW = 6.0 if ARCH != "amd64" else 1.0  # qemu-user emulation: waits scale by this
SIM_UNIT = "voicebox-sim"
CONFIG = "/etc/voicebox/config.yaml"
MIC = "/var/lib/voicebox/mic.wav"
SPEAKER = "/var/lib/voicebox/speaker.wav"
RATE = 16000

FIGURES: dict[str, Any] = {}


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise pytest.UsageError(f"{name} is not set: run the system test with `make system-test`")
    return value


@pytest.fixture(scope="session")
def artefacts() -> Path:
    path = Path(_required("VOICEBOX_SYSTEM_ARTEFACTS"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def sim_port() -> int:
    return int(os.environ.get("VOICEBOX_SYSTEM_SIM_PORT", "28765"))


@pytest.fixture(scope="session")
def box(artefacts: Path) -> Iterator[Box]:
    b = Box(Path(_required("VOICEBOX_SYSTEM_ROOT")), artefacts, boot_timeout_s=120 * SLOW)
    try:
        b.boot()
        FIGURES["container_boot_s"] = round(b.boot_seconds[-1], 2)
        yield b
    finally:
        try:
            if b.leader:
                (artefacts / "journal.txt").write_text(b.journal("-b all"), encoding="utf-8")
        except Exception as exc:  # the journal is an artefact, not the result
            print(f"system test: could not save the journal: {exc}")
        b.poweroff()
        (artefacts / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


class Appliance:
    """The installed appliance: the config file, the simulator unit, the journal."""

    def __init__(self, box: Box, port: int, key: str) -> None:
        self.box = box
        self.port = port
        self.key = key

    def config_text(self, **audio: str) -> str:
        inp = audio.get("input", f"{{backend: file, path: {MIC}, loop: true}}")
        out = audio.get("output", f"{{backend: file, path: {SPEAKER}}}")
        return (
            "# written by the system test, as a user edits it\n"
            "agent:\n"
            "  agent_id: systest-agent\n"
            f"  api_base: http://127.0.0.1:{self.port}\n"
            "audio:\n"
            f"  input: {inp}\n"
            f"  output: {out}\n"
            "conversation:\n"
            "  mode: always_on\n"
            "  reconnect: {initial_s: 0.5}\n"
            "gpio:\n"
            "  button: {pin: null}\n"
            "tuning:\n"
            f"  adaptive: {audio.get('adaptive', 'true')}\n"
        )

    def write_config(self, text: str) -> None:
        self.box.write(CONFIG, text, mode=0o640)  # keeps install.sh's root:voicebox owner

    def start_simulator(self, *faults: str) -> None:
        self.box.sh(
            f"systemctl stop {SIM_UNIT} 2>/dev/null; systemctl reset-failed {SIM_UNIT}"
            " 2>/dev/null; true"
        )
        args = " ".join(f"--fault {shlex.quote(f)}" for f in faults)
        self.box.sh(
            f"systemd-run --unit={SIM_UNIT} --description='voicebox simulator (system test)' "
            f"/opt/voicebox/venv/bin/python -m voicebox simulate --port {self.port} {args}"
        )
        self.box.wait_for(
            "the simulator listening",
            lambda: "sim.listening" in self.box.journal(f"-u {SIM_UNIT} -b"),
            timeout=30 * SLOW,
        )

    def main_pid(self) -> int:
        return int(self.box.prop("voicebox", "MainPID") or 0)

    def wait_active(self, timeout: float = 60.0) -> dict[str, str]:
        def probe() -> dict[str, str] | None:
            p = self.box.show("voicebox", "ActiveState", "SubState", "StatusText", "MainPID")
            return p if p["ActiveState"] == "active" and p["SubState"] == "running" else None

        return self.box.wait_for("voicebox active (running)", probe, timeout * SLOW)

    def wait_journal(self, unit: str, needle: str, after: str, timeout: float = 60.0) -> str:
        def probe() -> str | None:
            text = self.box.journal(f"-u {unit}", after=after)
            return text if needle in text else None

        return self.box.wait_for(f"{needle!r} in the journal of {unit}", probe, timeout * SLOW)


def write_mic_wav(host_path: Path) -> None:
    """6 s, looped by the file backend: an utterance of 1.3 s after 1.5 s of silence."""
    samples = silence(6.0, RATE).copy()
    voiced = speech_like(1.3, RATE, f0=130.0)
    at = int(1.5 * RATE)
    samples[at : at + len(voiced)] = voiced
    host_path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(host_path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())
    host_path.chmod(0o644)


def wav_voiced_seconds(host_path: Path) -> float:
    """Seconds of the WAV whose 20 ms RMS is above -40 dBFS (the agent's voice, not silence)."""
    with wave.open(str(host_path), "rb") as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    block = rate // 50
    n = len(x) // block
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(x[: n * block].reshape(n, block) ** 2, axis=1)) / 32768
    return float(np.count_nonzero(rms > 0.01)) / 50


@pytest.fixture(scope="session")
def installed(box: Box, sim_port: int, artefacts: Path) -> Appliance:
    """voicebox installed as the README says, configured for the simulator, not yet started."""
    key = "sk_systest_" + secrets.token_hex(16)
    box.write("/root/elevenlabs_api_key", key + "\n", mode=0o600)
    t0 = time.monotonic()
    box.sh("apt-get update -qq", timeout=300 * SLOW)
    r = box.sh(
        "cd /root/voicebox && sudo scripts/install.sh --api-key-file ~/elevenlabs_api_key",
        check=False,
        timeout=900 * SLOW,
    )
    FIGURES["install_s"] = round(time.monotonic() - t0, 1)
    (artefacts / "install.log").write_text(r.stdout + r.stderr, encoding="utf-8")
    if r.returncode != 0:
        raise BoxError(f"install.sh exited {r.returncode}:\n{(r.stdout + r.stderr)[-4000:]}")
    app = Appliance(box, sim_port, key)
    app.install_output = r.stdout + r.stderr  # type: ignore[attr-defined]
    write_mic_wav(box.root / MIC.lstrip("/"))
    app.write_config(app.config_text())
    app.start_simulator()
    return app


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    b: Box | None = getattr(item, "funcargs", {}).get("box")
    if b is None:
        for value in getattr(item, "funcargs", {}).values():
            b = getattr(value, "box", None) or b
    if b is None or not b.leader:
        return
    try:
        tail = b.journal("-b -n 80")
        (b.artefacts / f"journal-{item.name}.txt").write_text(b.journal("-b all"), encoding="utf-8")
    except Exception as exc:
        tail = f"(could not read the journal: {exc})"
    report.sections.append(("container journal, last 80 lines", tail))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "figures (measured, not asserted)")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
