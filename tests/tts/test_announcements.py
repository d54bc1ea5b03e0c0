"""Announcements: cache, live synthesis, offline tone, the wait/interrupt rule, prefetch."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.tts.conftest import KEY, RecordingPort, Sim, make_config
from voicebox.announcements import (
    HEADER,
    Announcer,
    PhraseCache,
    cache_dir,
    cache_key,
    prefetch,
    tone,
)
from voicebox.audio.formats import AudioFormat, ulaw_decode
from voicebox.config import Secret
from voicebox.simulator.tts import word_tone

READY = word_tone("Ready.", 16000).astype("<i2").tobytes()


def sources(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage().split("source=")[1].split()[0]
        for r in caplog.records
        if r.getMessage().startswith("announcement ")
    ]


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voicebox")


@pytest.mark.asyncio
async def test_miss_then_hit(sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = RecordingPort()
    announcer = Announcer(make_config(tmp_path, sim.base), port, Secret(KEY))
    await announcer.announce("ready")
    await announcer.announce("ready")
    assert sources(caplog) == ["tts", "cache"]
    assert len(sim.tts_requests) == 1
    assert port.played() == READY * 2
    assert port.names() == ["output_format", "play", "end_reply", "output_format"] * 2
    assert KEY not in caplog.text


@pytest.mark.parametrize("damage", ["truncate", "flip", "header", "empty"])
@pytest.mark.asyncio
async def test_corrupt_cache_file_is_resynthesised(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    cfg = make_config(tmp_path, sim.base)
    assert await prefetch(cfg, Secret(KEY)) == {
        "Ready.": "synthesised",
        "Reconnecting.": "synthesised",
        cfg.announcements.degraded: "synthesised",
        "Back online.": "synthesised",
    }
    path = PhraseCache(cache_dir(cfg)).path(cache_key(cfg, "Ready.", "pcm_16000"))
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[:-100]
    elif damage == "flip":
        blob[HEADER.size + 500] ^= 0x40
    elif damage == "header":
        blob[:4] = b"RIFF"
    else:
        blob = bytearray()
    path.write_bytes(bytes(blob))
    port = RecordingPort()
    await Announcer(cfg, port, Secret(KEY)).announce("ready")
    assert sources(caplog) == ["tts"]
    assert port.played() == READY
    assert len(sim.tts_requests) == 5
    assert PhraseCache(cache_dir(cfg)).load(cache_key(cfg, "Ready.", "pcm_16000"), 16000) == READY


@pytest.mark.asyncio
async def test_cached_phrase_plays_without_network(
    sim: Sim, tmp_path: Path, dead_base: str, caplog: pytest.LogCaptureFixture
) -> None:
    await prefetch(make_config(tmp_path, sim.base), Secret(KEY))
    port = RecordingPort()
    await Announcer(make_config(tmp_path, dead_base), port, Secret(KEY)).announce("ready")
    assert sources(caplog) == ["cache"] and port.played() == READY


@pytest.mark.asyncio
async def test_offline_and_uncached_plays_a_tone(
    tmp_path: Path, dead_base: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = RecordingPort()
    announcer = Announcer(make_config(tmp_path, dead_base), port, Secret(KEY))
    await announcer.announce("reconnecting")
    await announcer.announce("degraded")
    assert sources(caplog) == ["tone", "tone"]
    assert port.played() == tone("reconnecting", 16000) + tone("degraded", 16000)
    assert sum("tts.failed" in r.getMessage() for r in caplog.records) == 1  # then offline hold
    assert not announcer.busy()
    assert KEY not in caplog.text


def test_tones_are_deterministic_and_distinct() -> None:
    assert tone("ready", 16000) == tone("back_online", 16000)
    assert tone("degraded", 16000) != tone("ready", 16000)
    beeps = np.frombuffer(tone("ready", 16000), dtype="<i2")
    assert np.abs(beeps).max() > 5000 and beeps[0] == 0


@pytest.mark.asyncio
async def test_no_key_plays_a_tone_without_asking(sim: Sim, tmp_path: Path) -> None:
    port = RecordingPort()
    await Announcer(make_config(tmp_path, sim.base), port, None).announce("ready")
    assert port.played() == tone("ready", 16000) and sim.tts_requests == []
    cfg = make_config(tmp_path, sim.base)
    phrases = ("Ready.", "Reconnecting.", cfg.announcements.degraded, "Back online.")
    assert await prefetch(cfg, None) == dict.fromkeys(phrases, "failed: no API key")


@pytest.mark.asyncio
async def test_disabled_and_unknown_events_are_silent(sim: Sim, tmp_path: Path) -> None:
    port = RecordingPort()
    announcer = Announcer(make_config(tmp_path, sim.base), port, Secret(KEY))
    await announcer.announce("rollover")  # null phrase by default
    await announcer.announce("no_such_event")
    announcer.update_config(make_config(tmp_path, sim.base, **{"announcements.enabled": False}))
    await announcer.announce("ready")
    assert port.calls == [] and sim.tts_requests == []


async def until(condition: object, what: str) -> None:
    """Hang guard only: poll an observable condition."""
    for _ in range(2000):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.asyncio
async def test_wait_rule_never_overlaps_the_agent(sim: Sim, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, sim.base)
    port = RecordingPort(playing=True)
    announcer = Announcer(cfg, port, Secret(KEY))
    task = asyncio.create_task(announcer.announce("ready"))
    await until(lambda: sim.tts_requests and sim.tts_requests[0].close_code, "synthesis done")
    await asyncio.sleep(0.2)
    assert announcer.busy() and port.calls == []  # waiting; drain() not used to wait
    port.finish_agent()
    await task
    assert port.names() == ["output_format", "play", "end_reply", "output_format"]
    assert not announcer.busy()


@pytest.mark.asyncio
async def test_interrupt_rule_cuts_the_agent_first(sim: Sim, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, sim.base, **{"announcements.rule": "interrupt"})
    port = RecordingPort(playing=True)
    await Announcer(cfg, port, Secret(KEY)).announce("ready")
    assert port.names() == ["interrupt", "output_format", "play", "end_reply", "output_format"]


@pytest.mark.asyncio
async def test_announcements_are_spoken_one_at_a_time(sim: Sim, tmp_path: Path) -> None:
    port = RecordingPort()
    announcer = Announcer(make_config(tmp_path, sim.base), port, Secret(KEY))
    await asyncio.gather(announcer.announce("reconnecting"), announcer.announce("back_online"))
    plays = [data for name, data in port.calls if name == "play"]
    assert len(plays) == 2
    assert port.names() == ["output_format", "play", "end_reply", "output_format"] * 2


@pytest.mark.asyncio
async def test_played_in_the_sessions_format_when_the_port_tells_it(
    sim: Sim, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, sim.base, **{"audio.output.sample_rate": 24000})
    port = RecordingPort(output_format=AudioFormat("ulaw", 8000))
    await Announcer(cfg, port, Secret(KEY)).announce("ready")
    assert port.names() == ["play", "end_reply"]  # the session's format is never touched
    assert sim.tts_requests[0].query["output_format"] == "pcm_24000"
    played = ulaw_decode(port.played())
    expected = word_tone("Ready.", 8000)
    assert abs(len(played) - len(expected)) <= 2
    # same pitch after 24k -> 8k + μ-law: the spectra peak at the same bin
    n = min(len(played), len(expected))
    peak = np.argmax(np.abs(np.fft.rfft(played[:n])))
    assert abs(peak - np.argmax(np.abs(np.fft.rfft(expected[:n])))) <= 1


@pytest.mark.asyncio
async def test_wait_rule_drops_rather_than_talks_over_a_long_reply(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import voicebox.announcements

    monkeypatch.setattr(voicebox.announcements, "WAIT_LIMIT_S", 0.05)
    port = RecordingPort(playing=True)
    announcer = Announcer(make_config(tmp_path, sim.base), port, Secret(KEY))
    await announcer.announce("back_online")
    assert "play" not in port.names() and not announcer.busy()
    assert any(r.getMessage().startswith("announcement.dropped") for r in caplog.records)


@pytest.mark.asyncio
async def test_non_pcm_synthesis_format_falls_back_to_the_tone(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path, sim.base, **{"tts.output_format": "ulaw_8000"})
    port = RecordingPort()
    await Announcer(cfg, port, Secret(KEY)).announce("degraded")
    assert port.played() == tone("degraded", 16000) and sim.tts_requests == []
    assert sources(caplog) == ["tone"]
    assert (await prefetch(cfg, Secret(KEY)))["Ready."].startswith("failed: tts.output_format")
