"""The real sounddevice -> PortAudio -> ALSA path with no sound card (file and null PCMs).

Each scenario runs in a subprocess whose HOME holds an .asoundrc, because PortAudio reads the
ALSA configuration when sounddevice is imported. These PCMs are not paced in real time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CHILD = Path(__file__).with_name("alsa_child.py")
RATE = 16000

pytestmark = pytest.mark.slow


def asoundrc(tmp: Path) -> None:
    (tmp / ".asoundrc").write_text(
        'pcm.!default { type asym  playback.pcm "tofile"  capture.pcm "fromfile" }\n'
        f'pcm.tofile {{ type file  slave.pcm "null"  file "{tmp}/out.raw"  format "raw" }}\n'
        f'pcm.fromfile {{ type file  slave.pcm "null"  file "/dev/null"  infile "{tmp}/in.raw"'
        '  format "raw" }\n'
    )


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(tmp)}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120
    )


def scenario(tmp: Path, name: str) -> dict[str, object]:
    proc = run(tmp, str(CHILD), name, str(tmp))
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def tone(seconds: float, hz: float, amp: int = 8000) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (np.sin(2 * np.pi * hz * t) * amp).astype(np.int16)


def find(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Index where needle starts in haystack (first nonzero sample aligned)."""
    first = int(np.flatnonzero(needle)[0])
    start = int(np.flatnonzero(haystack)[0]) - first
    assert start >= 0
    return start


@pytest.fixture
def alsa(tmp_path: Path) -> Path:
    asoundrc(tmp_path)
    tone(2, 440).astype("<i2").tofile(tmp_path / "in.raw")
    return tmp_path


def test_capture_reads_the_waveform_and_playback_writes_it_intact(alsa: Path) -> None:
    reply = tone(1.5, 300) + tone(1.5, 1100, 2000)
    np.save(alsa / "reply.npy", reply)
    result = scenario(alsa, "capture_playback")
    assert result == {"drained": True, "underruns": 0, "errors": 0}
    captured = np.load(alsa / "captured.npy")
    mic = np.fromfile(alsa / "in.raw", dtype="<i2")
    assert np.array_equal(captured[: len(mic)], mic)
    out = np.fromfile(alsa / "out.raw", dtype="<i2")
    start = find(out, reply)
    assert np.array_equal(out[start : start + len(reply)], reply)
    assert not out[start + len(reply) :].any()


def test_interrupt_truncates_playback(alsa: Path) -> None:
    reply = np.full(RATE * 120, 2500, dtype=np.int16)  # 2 minutes (the null PCM runs fast)
    np.save(alsa / "reply.npy", reply)
    result = scenario(alsa, "interrupt")
    assert result["playing"] is False
    out = np.fromfile(alsa / "out.raw", dtype="<i2")
    played = np.flatnonzero(out)
    assert 0 < len(played) < len(reply)
    assert len(played) == played[-1] - played[0] + 1  # one contiguous piece, then silence
    assert (out[played] == 2500).all()


def test_lost_stream_is_reopened_after_portaudio_reinit(alsa: Path) -> None:
    reply = tone(0.5, 700)
    np.save(alsa / "reply.npy", reply)
    result = scenario(alsa, "recover")
    assert result == {"drained": True, "errors": 1, "alive_after": True}
    out = np.fromfile(alsa / "out.raw", dtype="<i2")  # the file PCM was reopened
    start = find(out, reply)
    assert np.array_equal(out[start : start + len(reply)], reply)


def test_latency_change_waits_for_the_reply_then_reopens_both_streams(alsa: Path) -> None:
    reply = tone(1.0, 700)
    np.save(alsa / "reply.npy", reply)
    result = scenario(alsa, "latency")
    assert result["changed_during_reply"] is False  # no reopen while the reply plays
    assert result["drained"] is True and result["errors"] == 0
    assert result["before"] < 0.1  # the 'high' default on the null device is ~35 ms
    for side in ("after_in", "after_out"):  # PortAudio rounds to whole periods
        assert abs(result[side] - 0.25) <= 0.02, result
    # The whole reply reached the device before the streams were reopened: nothing clipped.
    # (out.raw cannot show it: ALSA's file plugin truncates the file when the PCM reopens.)
    assert result["consumed_before_reopen"] == result["reply"] == len(reply)


def test_unknown_device_is_waited_for_and_lists_candidates_once(alsa: Path) -> None:
    result = scenario(alsa, "bad_device")
    assert "no-such-mic" in str(result["error"])
    (line,) = result["log"]  # type: ignore[misc]
    assert "no-such-mic" in line
    assert "'default'" in line and "'fromfile'" in line  # the candidates


def test_a_device_late_at_start_is_opened_when_it_appears(alsa: Path) -> None:
    result = scenario(alsa, "late_device")
    assert "latemic" in str(result["waiting"])
    assert result["input"] == "latemic" and result["chunks"] is True


def test_devices_found_by_substring_or_index(alsa: Path) -> None:
    result = scenario(alsa, "lookup")
    assert result["by_name"] == "fromfile"  # case-insensitive substring
    assert result["by_index"] == result["tofile"]
    assert result["default"] == "default"
    assert "index 999" in str(result["bad_index"]) and "'tofile'" in str(result["bad_index"])


def test_devices_command_lists_the_null_device(tmp_path: Path) -> None:
    (tmp_path / ".asoundrc").write_text("pcm.!default { type null }\n")
    proc = run(tmp_path, "-m", "voicebox", "devices")
    assert proc.returncode == 0, proc.stderr
    assert "inputs:" in proc.stdout and "outputs:" in proc.stdout
    assert any(
        line.lstrip().startswith("*") and "default" in line for line in proc.stdout.splitlines()
    )


def test_devices_command_with_no_devices_prints_the_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    import types

    from voicebox.audio import devices

    no_cards = types.SimpleNamespace(
        query_devices=lambda: []
    )  # what PortAudio gives without /dev/snd
    monkeypatch.setattr(devices, "_sd", lambda: no_cards)
    assert devices.main_devices(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert "no audio devices found" in out and "audio" in out and "/dev/snd" in out


def test_reference_is_what_the_device_got_with_portaudio_stamps(alsa: Path) -> None:
    """The echo canceller's reference through sounddevice -> PortAudio -> ALSA: exactly the
    samples the output callback handed the device (silence included), stamped with PortAudio's
    outputBufferDacTime, on the clock of the capture's inputBufferAdcTime."""
    from voicebox.audio.echo.processor import library_available

    if not library_available():
        pytest.skip("pywebrtc-audio is not installed (make bootstrap installs it)")
    reply = tone(1.0, 500)
    np.save(alsa / "reply.npy", reply)
    result = scenario(alsa, "reference")
    assert result["drained"] is True
    held = np.load(alsa / "reference.npy")
    out = np.fromfile(alsa / "out.raw", dtype="<i2")
    start = int(result["ref_start"])  # type: ignore[call-overload]
    # the reference is sample for sample what reached the device (the file PCM's output)
    assert len(held) > 0 and np.array_equal(held, out[start : start + len(held)])
    # stamps present, on one clock: the DAC time is ahead of the callback, the ADC time behind
    mic_index, mic_time, mic_buffer = result["mic_stamp"]  # type: ignore[misc]
    ref_index, ref_time, ref_buffer = result["ref_stamp"]  # type: ignore[misc]
    assert mic_time > 0 and ref_time > 0 and abs(mic_time - ref_time) < 5.0
    assert 0 <= mic_buffer < 2.0 and 0 <= ref_buffer < 2.0
    # the span chosen for the newest mic sample is one the output has written, within a block
    # of where the stamps put it (the latest output block, minus the buffering)
    chosen = float(result["chosen"])  # type: ignore[arg-type]
    block = RATE * 20 // 1000
    expected = ref_index + (mic_time - ref_time) * RATE + block - 0.005 * RATE
    assert abs(chosen - expected) <= block
    # (these PCMs are not paced, so their stamps drift from their sample counts and the
    # processor re-aligns now and then; on a paced device it does not: see the room tests)
    assert result["frames"] > 0  # type: ignore[operator]
