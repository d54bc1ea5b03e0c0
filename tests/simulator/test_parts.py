"""The simulator's pure parts (fault grammar, energy VAD, synthetic voice) and its command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from voicebox.audio.formats import AudioFormat
from voicebox.simulator.faults import QUOTA_MESSAGE, Fault, FaultError, parse_fault
from voicebox.simulator.vad import EnergyVad, SpeechEnd, SpeechStart
from voicebox.simulator.voice import silence, speech_bytes, speech_like


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2:close:1012", Fault(2, "close", 1012, reason="service restart")),
        ("1:close:1011:5c", Fault(1, "close", 1011, after_chunks=5, reason="internal error")),
        ("3:close:3000:2.5s:stale: branch", Fault(3, "close", 3000, 2.5, reason="stale: branch")),
        ("1:http:503", Fault(1, "http", 503)),
        ("1:http:429:7", Fault(1, "http", 429, retry_after_s=7.0)),
        ("all:drop", Fault(None, "drop")),
        ("all:drop:3s", Fault(None, "drop", after_s=3.0)),
        ("3:silent", Fault(3, "silent")),
        ("1:malformed:10c", Fault(1, "malformed", after_chunks=10)),
        ("1:quota", Fault(1, "quota", 1002, reason=QUOTA_MESSAGE)),
        ("1:delay:4", Fault(1, "delay", delay_s=4.0)),
    ],
)
def test_fault_grammar(spec: str, expected: Fault) -> None:
    assert parse_fault(spec) == expected


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("close:1012", "N:KIND"),
        ("x:close:1012", "connection number"),
        ("0:close:1012", "connection number"),
        ("1:explode", "unknown kind"),
        ("1:close", "needs a code"),
        ("1:close:1006", "cannot be sent"),
        ("1:close:abc", "close code"),
        ("1:http:200", "HTTP status"),
        ("1:drop:soon", "AFTER"),
        ("1:drop:1:2", "at most one"),
        ("1:delay", "needs seconds"),
        ("1:delay:3c", "seconds"),
    ],
)
def test_fault_grammar_errors_name_the_problem(spec: str, names: str) -> None:
    with pytest.raises(FaultError, match=names) as info:
        parse_fault(spec)
    assert repr(spec) in str(info.value)


def test_faults_apply_to_their_connection() -> None:
    assert parse_fault("2:drop").applies_to(2)
    assert not parse_fault("2:drop").applies_to(1)
    assert all(parse_fault("all:drop").applies_to(n) for n in (1, 2, 99))


def test_vad_finds_one_turn_per_utterance_despite_syllable_gaps() -> None:
    rate = 16000
    audio = np.concatenate(
        [silence(0.5), speech_like(1.2, rate), silence(1.0), speech_like(0.6, rate), silence(1.0)]
    )
    vad = EnergyVad(rate, hangover_ms=600)
    events = []
    for i in range(0, audio.size, 333):  # odd chunk size: frames straddle chunks
        events += vad.feed(audio[i : i + 333])
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd, SpeechStart, SpeechEnd]
    first_start, first_end = events[0], events[1]
    assert isinstance(first_end, SpeechEnd)
    assert 0.45 <= first_start.at_s <= 0.6
    assert 1.0 <= first_end.duration_s <= 1.25
    assert vad.time_s == pytest.approx(audio.size / rate, abs=0.02)


def test_vad_ignores_silence_and_quiet_noise() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(16000 * 2) * 50).astype(np.int16)  # about -56 dBFS
    vad = EnergyVad(16000)
    assert vad.feed(noise) == [] and vad.feed(silence(1.0)) == []


def test_voice_is_deterministic_and_speech_like() -> None:
    a = speech_like(1.0, 16000)
    assert np.array_equal(a, speech_like(1.0, 16000))
    assert a.size == 16000 and a.dtype == np.int16
    frames = a.astype(np.float64).reshape(-1, 320)
    rms = np.sqrt((frames**2).mean(axis=1))
    assert (rms < 30).sum() >= 5  # gaps between syllables
    assert rms.max() > 3000  # loud voiced parts
    assert len(speech_bytes(0.5, AudioFormat.parse("ulaw_8000"))) == 4000
    assert len(speech_bytes(0.5, AudioFormat.parse("pcm_24000"))) == 24000


def _simulate(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "voicebox", "simulate", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def test_simulate_command_serves_and_stops_cleanly_on_sigterm() -> None:
    proc = _simulate("--port", "0", "--api-key", "sk_cli_secret", "--fault", "2:close:1012")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "sim.listening" in line, line
        url = line.split("url=")[1].split()[0]
        req = urllib.request.Request(
            f"{url}/v1/convai/conversation/get-signed-url?agent_id=a",
            headers={"xi-api-key": "sk_cli_secret"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["signed_url"].startswith("ws://127.0.0.1:")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        rest = proc.stderr.read()
        assert "sim.signed_url.issued" in rest and "sim.stopped" in rest
        assert "sk_cli_secret" not in line + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulate_command_rejects_a_bad_fault_spec() -> None:
    proc = _simulate("--fault", "1:explode")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "unknown kind 'explode'" in err and "Traceback" not in err


def test_simulate_help_documents_the_fault_grammar(capsys: pytest.CaptureFixture[str]) -> None:
    from voicebox.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--help"])
    out = capsys.readouterr().out
    for kind in ("close:CODE", "http:STATUS", "drop", "silent", "malformed", "quota", "delay"):
        assert kind in out
