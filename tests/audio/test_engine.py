"""AudioEngine over the file devices: the whole port, supervision and recovery, no sound card."""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from voicebox.audio.devices import AudioDeviceError
from voicebox.audio.engine import AudioEngine, reopen_delay
from voicebox.audio.formats import AudioFormat
from voicebox.config import AudioConfig, InputConfig, OutputConfig


def write_wav(path: Path, data: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.astype("<i2").tobytes())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def file_config(tmp_path: Path, **out: object) -> AudioConfig:
    t = np.arange(48000) / 48000
    write_wav(tmp_path / "in.wav", np.sin(2 * np.pi * 600 * t) * 9000, 48000)
    return AudioConfig(
        InputConfig(backend="file", path=str(tmp_path / "in.wav"), sample_rate=48000),
        OutputConfig(backend="file", path=str(tmp_path / "out.wav"), **out),  # type: ignore[arg-type]
    )


async def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition; the timeout is only a hang guard."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


def test_reopen_delay_doubles_and_caps() -> None:
    assert [reopen_delay(a) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert reopen_delay(30) == 30.0


@pytest.mark.asyncio
async def test_capture_and_playback_through_file_devices(tmp_path: Path) -> None:
    engine = AudioEngine(file_config(tmp_path, prebuffer_ms=40))
    chunks: list[np.ndarray] = []
    await engine.start(chunks.append)
    try:
        assert engine.input_format == AudioFormat("pcm", 16000)
        await wait_for(lambda: len(chunks) >= 10)
        assert all(len(c) == 320 and c.dtype == np.int16 for c in chunks)
        engine.set_input_format(AudioFormat.parse("ulaw_8000"))
        assert engine.input_format == AudioFormat("pcm", 8000)
        n = len(chunks)
        await wait_for(lambda: len(chunks) >= n + 5)
        assert len(chunks[-1]) == 160  # 20 ms at the session's new rate
        await wait_for(engine.alive, 5)

        reply = np.arange(1, 8001, dtype=np.int16)  # 0.5 s, distinct values
        engine.set_output_format(AudioFormat.parse("pcm_16000"))
        assert engine.output_format == AudioFormat("pcm", 16000)
        engine.play(reply[:4000].tobytes())
        engine.play(reply[4000:].tobytes())
        assert engine.playing
        assert await engine.drain(10)
        assert not engine.playing
        stats = engine.stats()
        assert stats.underruns == 0 and stats.ring_overflows == 0 and stats.device_errors == 0
        assert stats.captured_chunks >= 15
        assert stats.input_device.endswith("in.wav") and stats.output_device.endswith("out.wav")
    finally:
        await engine.stop()
        await engine.stop()  # idempotent
    assert not engine.alive()
    out = read_wav(tmp_path / "out.wav")
    start = int(np.flatnonzero(out)[0])
    assert np.array_equal(out[start : start + 8000], reply)  # intact, after leading silence
    assert not out[start + 8000 :].any()


@pytest.mark.asyncio
async def test_interrupt_truncates_the_reply(tmp_path: Path) -> None:
    engine = AudioEngine(file_config(tmp_path, prebuffer_ms=0))
    await engine.start(lambda c: None)
    try:
        reply = np.full(16000 * 5, 3000, dtype=np.int16)
        engine.play(reply.tobytes())
        engine.end_reply()
        await wait_for(lambda: engine.stats().ring_level_ms < 4900)
        engine.interrupt()
        assert not engine.playing
        assert engine.stats().interrupts == 1
        assert await engine.drain(1)
    finally:
        await engine.stop()
    out = read_wav(tmp_path / "out.wav")
    played = int(np.count_nonzero(out))
    assert 0 < played < len(reply)
    last = int(np.flatnonzero(out)[-1])
    assert not out[last + 1 :].any()  # silence after the cut, not the rest of the reply


@pytest.mark.asyncio
async def test_stalled_device_is_reopened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebox.audio.engine")
    engine = AudioEngine(file_config(tmp_path), stall_s=0.3)
    chunks: list[np.ndarray] = []
    await engine.start(chunks.append)
    try:
        await wait_for(engine.alive, 5)
        engine._input.stop_soon()  # type: ignore[union-attr]  # the mic's clock stops
        await wait_for(lambda: engine.stats().device_errors == 1)
        await wait_for(lambda: "audio.device_reopened" in caplog.text)
        n = len(chunks)
        await wait_for(lambda: len(chunks) > n + 5)  # the mic delivers again
        await wait_for(engine.alive, 5)
    finally:
        await engine.stop()
    lost = [r for r in caplog.records if r.getMessage().startswith("audio.device_lost")]
    assert len(lost) == 1 and "reason=stalled" in lost[0].getMessage()
    assert "in.wav" in lost[0].getMessage()
    reopened = [r for r in caplog.records if r.getMessage().startswith("audio.device_reopened")]
    assert "attempt=1" in reopened[0].getMessage() and "delay_s=0.5" in reopened[0].getMessage()


@pytest.mark.asyncio
async def test_bad_file_config_names_the_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicebox.audio.engine")
    with pytest.raises(AudioDeviceError, match="audio.input.path is required"):
        await AudioEngine(AudioConfig(InputConfig(backend="file"))).start(lambda c: None)
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    for name in ("nope.wav", "junk.wav"):  # waited for, named (a file may yet be written)
        out = OutputConfig(backend="file", path=str(tmp_path / "out.wav"))
        engine = AudioEngine(
            AudioConfig(InputConfig(backend="file", path=str(tmp_path / name)), out)
        )
        await engine.start(lambda c: None)
        try:
            assert engine.waiting_for is not None and name in engine.waiting_for
            assert engine.recovering and not engine.alive()
        finally:
            await engine.stop()
        waiting = [r for r in caplog.records if r.getMessage().startswith("audio.waiting")]
        assert name in waiting[-1].getMessage()


@pytest.mark.asyncio
async def test_a_file_input_missing_at_start_is_waited_for_and_opened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The device-lost path opens a device that was not there at start, with backoff."""
    caplog.set_level(logging.INFO, logger="voicebox.audio.engine")
    cfg = file_config(tmp_path)
    wav = tmp_path / "in.wav"
    late = tmp_path / "in.wav.late"
    wav.rename(late)
    engine = AudioEngine(cfg)
    chunks: list[np.ndarray] = []
    await engine.start(chunks.append)
    try:
        assert engine.waiting_for is not None and "in.wav" in engine.waiting_for
        await wait_for(lambda: "audio.reopen_failed" in caplog.text)  # a retry, still missing
        assert not chunks and not engine.alive() and engine.recovering
        engine.play(b"\x00\x01" * 100)  # nothing to play on yet: dropped, not raised
        late.rename(wav)  # the device appears
        await asyncio.wait_for(engine.opened(), 20)
        assert engine.waiting_for is None
        await wait_for(lambda: len(chunks) >= 10)
        await wait_for(engine.alive, 5)
        assert engine.stats().device_errors == 0
    finally:
        await engine.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("audio.waiting") for m in messages) == 1
    reopened = [m for m in messages if m.startswith("audio.device_reopened")]
    assert len(reopened) == 1 and "in.wav" in reopened[0]
    failed = [m for m in messages if m.startswith("audio.reopen_failed")]
    assert "attempt=2" in failed[0]  # attempt 1 was start() itself


def test_engine_implements_the_audio_port_exactly() -> None:
    import inspect

    from voicebox.audio.port import AudioPort

    members = [n for n in vars(AudioPort) if not n.startswith("_")]
    assert {"play", "drain", "stats", "output_format"} <= set(members)
    for name in members:
        want, have = getattr(AudioPort, name), getattr(AudioEngine, name)
        assert isinstance(have, property) == isinstance(want, property), name
        if callable(want):
            assert inspect.signature(have) == inspect.signature(want), name
            assert inspect.iscoroutinefunction(have) == inspect.iscoroutinefunction(want), name


@pytest.mark.asyncio
async def test_a_file_device_error_is_recovered_once_not_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One failed write (a full disk) costs one reopen; the error does not outlive it."""
    caplog.set_level(logging.INFO, logger="voicebox.audio.engine")
    engine = AudioEngine(file_config(tmp_path))
    await engine.start(lambda c: None)
    try:
        await wait_for(engine.alive, 5)
        writer = engine._writer
        assert writer is not None
        real_write = writer.write
        failures = [OSError(28, "No space left on device")]

        def write_once_failing(samples: np.ndarray) -> None:
            if failures:
                raise failures.pop()
            real_write(samples)

        writer.write = write_once_failing  # type: ignore[method-assign]
        await wait_for(lambda: "audio.device_reopened" in caplog.text)
        playback = engine._playback
        assert playback is not None
        periods = playback.callbacks
        await wait_for(lambda: playback.callbacks >= periods + 100)  # 2 s of device clock
        await wait_for(engine.alive, 5)
        assert engine.stats().device_errors == 1
    finally:
        await engine.stop()
    lost = [r for r in caplog.records if r.getMessage().startswith("audio.device_lost")]
    assert len(lost) == 1 and "reason=stream_error" in lost[0].getMessage()


@pytest.mark.asyncio
async def test_engine_start_with_a_long_wav_does_not_load_it(tmp_path: Path) -> None:
    """The file input opens a 10-minute WAV without holding it: start-up's traced peak stays
    far below the file's 19 MB."""
    import tracemalloc

    second = (np.random.default_rng(0).standard_normal(16000) * 3000).astype("<i2").tobytes()
    with wave.open(str(tmp_path / "long.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(second * 600)
    cfg = AudioConfig(
        InputConfig(backend="file", path=str(tmp_path / "long.wav")),
        OutputConfig(backend="file", path=str(tmp_path / "out.wav")),
    )
    engine = AudioEngine(cfg)
    chunks: list[np.ndarray] = []
    tracemalloc.start()
    try:
        await engine.start(chunks.append)
        await wait_for(lambda: len(chunks) >= 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await engine.stop()
    assert peak < 4 * 1024 * 1024
