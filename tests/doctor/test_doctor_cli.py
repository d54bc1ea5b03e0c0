"""`voicebox doctor` end to end in a subprocess: real PortAudio on ALSA file/null PCMs (HOME holds
the .asoundrc), the simulator on loopback, a temporary root for the system files, gpiozero's mock
pin factory. Exit 0 when nothing fails, 1 otherwise, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.audio.test_alsa import asoundrc
from tests.doctor.simthread import SimThread
from voicebox.simulator.server import SimConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-doctor-test"
RATE = 16000


@pytest.fixture
def sim() -> Iterator[SimThread]:
    config = SimConfig(api_key=KEY, agent_ids=frozenset({"agent-ok"}))
    with SimThread(config) as s:
        yield s


def mic(path: Path, kind: str, seconds: float = 4.0) -> None:
    n = int(RATE * seconds)
    rng = np.random.default_rng(1)
    if kind == "silence":
        x = np.zeros(n)
    elif kind == "clipping":
        x = np.sign(np.sin(2 * np.pi * 200 * np.arange(n) / RATE)) * 32767.0
    else:  # a quiet room (-60 dBFS) with a spoken-level tone burst in the middle
        x = rng.normal(0, 32768 * 10 ** (-60 / 20), n)
        mid = slice(n // 3, n // 3 + RATE // 2)
        x[mid] += 8000 * np.sin(2 * np.pi * 300 * np.arange(RATE // 2) / RATE)
    np.clip(x, -32768, 32767).astype("<i2").tofile(path)


def make_root(root: Path) -> None:
    gid = os.getgid()
    files = {
        "etc/passwd": "voicebox:x:999:999::/nonexistent:/bin/false\n",
        "etc/group": f"audio:x:{gid}:voicebox\ngpio:x:997:voicebox\nvoicebox:x:999:\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    unit = root / "etc/systemd/system/voicebox.service"
    unit.parent.mkdir(parents=True)
    shutil.copy(REPO / "systemd/voicebox.service", unit)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / "voicebox.service").symlink_to("/etc/systemd/system/voicebox.service")
    cred = root / "etc/voicebox/credentials/elevenlabs_api_key"
    cred.parent.mkdir(parents=True, mode=0o700)
    cred.write_text(KEY + "\n")
    cred.chmod(0o600)
    (root / "dev/snd").mkdir(parents=True)
    (root / "dev/snd/pcmC0D0c").touch()
    (root / "dev/snd/pcmC0D0c").chmod(0o660)
    (root / "var/log/journal").mkdir(parents=True)
    (root / "var/lib/voicebox").mkdir(parents=True)


def write_config(tmp: Path, url: str, agent_id: str = "agent-ok") -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"agent:\n  agent_id: {agent_id}\n  api_base: {url}\n"
        "audio:\n"
        f"  input: {{device: fromfile, sample_rate: {RATE}}}\n"
        f"  output: {{device: tofile, sample_rate: {RATE}}}\n"
        "announcements: {enabled: false}\n"
        "paths: {state_dir: /var/lib/voicebox}\n"  # read under --root
    )
    return path


def doctor(tmp: Path, config: Path, *extra: str) -> tuple[int, dict[str, dict[str, str]], str]:
    env = {**os.environ, "HOME": str(tmp), "GPIOZERO_PIN_FACTORY": "mock"}
    env.pop("ELEVENLABS_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "voicebox", "doctor", "--config", str(config), "--root",
         str(tmp / "root"), *extra],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr + proc.stdout
    if "--json" not in extra:
        return proc.returncode, {}, proc.stdout
    data = json.loads(proc.stdout)
    names = [c["name"] for c in data["checks"]]
    assert len(names) == len(set(names)), names
    return proc.returncode, {c["name"]: c for c in data["checks"]}, proc.stdout


@pytest.fixture
def box(tmp_path: Path) -> Path:
    asoundrc(tmp_path)
    make_root(tmp_path / "root")
    mic(tmp_path / "in.raw", "room")
    return tmp_path


def test_a_healthy_box_exits_0_with_only_cannot_check_warnings(box: Path, sim: SimThread) -> None:
    rc, checks, _ = doctor(box, write_config(box, sim.url), "--json")
    failed = {n: c for n, c in checks.items() if c["status"] == "fail"}
    assert rc == 0, failed
    for name in (
        "config",
        "api key",
        "agent",
        "overrides",
        "dns",
        "tcp",
        "clock",
        "unit",
        "enabled",
        "service user",
        "device nodes",
        "journal",
        "button",
        "free space",
    ):
        assert checks[name]["status"] == "ok", checks[name]  # fmt: skip
    assert "/etc/voicebox/credentials/elevenlabs_api_key" in checks["api key"]["detail"]
    # mic: the -60 dBFS room and the burst's peak (8000 / 32768 = -12.2 dBFS)
    level = checks["mic level"]
    assert level["status"] == "ok", level
    assert "'fromfile' at 16000 Hz" in level["detail"]
    floor = float(level["detail"].split("floor ")[1].split(" dBFS")[0])
    peak = float(level["detail"].split("peak ")[1].split(" dBFS")[0])
    assert -64 < floor < -56 and -13.5 < peak < -11
    # speaker: a 440 Hz tone at -12 dBFS reached the output file
    assert checks["speaker"]["status"] == "ok"
    out = np.fromfile(box / "out.raw", dtype="<i2").astype(float)
    assert 0.2 < np.max(np.abs(out)) / 32768 < 0.3
    spectrum = np.abs(np.fft.rfft(out[np.abs(out) > 0]))
    assert abs(np.argmax(spectrum) * RATE / (2 * (len(spectrum) - 1)) - 440) < 5
    # this machine has no systemd, Pi firmware or thermal sensor: said, as warnings
    for name in ("systemd", "lgpio", "temperature", "power"):
        assert checks[name]["status"] == "warn" and checks[name]["fix"]


def test_text_output_is_one_line_per_check_and_quiet_skips_the_tone(
    box: Path, sim: SimThread
) -> None:
    rc, _, out = doctor(box, write_config(box, sim.url), "--quiet")
    lines = out.strip().splitlines()
    assert rc == 0
    assert lines[-1].endswith("0 failures")
    assert all(line.split()[0] in ("OK", "WARN", "FAIL") for line in lines[:-1])
    assert all("->" in line for line in lines[:-1] if not line.startswith("OK"))
    assert any("tone skipped: --quiet" in line for line in lines)
    assert not (box / "out.raw").exists() or not np.fromfile(box / "out.raw", "<i2").any()


def test_bad_key_unknown_agent_and_service_down_exit_1(box: Path, sim: SimThread) -> None:
    (box / "root/etc/voicebox/credentials/elevenlabs_api_key").write_text("sk-wrong\n")
    rc, checks, out = doctor(box, write_config(box, sim.url), "--json", "--quiet")
    assert (
        rc == 1 and checks["api key"]["status"] == "fail" and "401" in checks["api key"]["detail"]
    )
    assert "sk-wrong" not in out
    (box / "root/etc/voicebox/credentials/elevenlabs_api_key").write_text(KEY)
    rc, checks, _ = doctor(box, write_config(box, sim.url, "agent-nope"), "--json", "--quiet")
    assert rc == 1 and checks["agent"]["status"] == "fail" and "404" in checks["agent"]["detail"]
    rc, checks, _ = doctor(box, write_config(box, "http://127.0.0.1:9"), "--json", "--quiet")
    assert rc == 1 and checks["service"]["status"] == "fail" and checks["tcp"]["status"] == "fail"


def test_silent_and_clipping_mics_warn(box: Path, sim: SimThread) -> None:
    config = write_config(box, sim.url)
    mic(box / "in.raw", "silence")
    _, checks, _ = doctor(box, config, "--json", "--quiet")
    assert checks["mic level"]["status"] == "warn"
    assert "digital silence" in checks["mic level"]["detail"]
    mic(box / "in.raw", "clipping")
    _, checks, _ = doctor(box, config, "--json", "--quiet")
    assert "clipping" in checks["mic level"]["detail"]


def test_invalid_config_fails_with_its_errors_and_the_host_checks_still_run(box: Path) -> None:
    config = box / "bad.yaml"
    config.write_text("agent:\n  agent_idd: x\n")
    rc, checks, _ = doctor(box, config, "--json")
    assert rc == 1
    assert checks["config"]["status"] == "fail"
    assert (
        "bad.yaml:2: agent.agent_idd: unknown key (did you mean 'agent_id'?)"
        in (checks["config"]["detail"])
    )
    assert checks["unit"]["status"] == "ok" and "skipped" in checks
    # no file at all: the rest runs on the defaults instead of being skipped
    rc, checks, _ = doctor(box, box / "absent.yaml", "--json", "--quiet")
    assert rc == 1 and "no such file" in checks["config"]["detail"]
    assert "setup" in checks["config"]["fix"]
    assert checks["agent"]["status"] == "fail" and "skipped" not in checks and "dns" in checks
