"""File devices: the period clock, WAV input/output, and a WAV that stays valid if killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from voicebox.audio.files import (
    FileSink,
    FileSource,
    PeriodClock,
    WavReader,
    WavWriter,
    read_wav_mono,
)
from voicebox.audio.playback import Playback


class FakeTime:
    """A clock that only moves when the paced thread sleeps (or the test jumps it)."""

    def __init__(self, stop_at: float, on_stop: list[threading.Event]) -> None:
        self.now = 100.0
        self.stop_at = 100.0 + stop_at
        self.on_stop = on_stop

    def clock(self) -> float:
        return self.now

    def sleep(self, dt: float) -> None:
        self.now += dt
        if self.now >= self.stop_at:
            for ev in self.on_stop:
                ev.set()


def write_wav(path: Path, data: np.ndarray, rate: int, width: int = 2) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if data.ndim == 1 else data.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def test_period_clock_catches_up_without_drift() -> None:
    now = [0.0]
    clock = PeriodClock(0.02, clock=lambda: now[0], sleep=lambda dt: None)
    assert clock.due() == 1  # the first period starts at once
    assert clock.due() == 0
    now[0] = 0.019
    assert clock.due() == 0
    now[0] = 0.1005  # late: periods 1..5 are all due now
    assert clock.due() == 5
    now[0] = 100.0  # a long stall is worked off in bounded steps, none lost
    total = 0
    while (n := clock.due()) > 0:
        assert n <= 50
        total += n
    assert clock.ticks == 5001 == 6 + total


def test_file_sink_writes_one_frame_per_period_including_silence(tmp_path: Path) -> None:
    pb = Playback(16000, ring_ms=2000, prebuffer_ms=0)
    writer = WavWriter(tmp_path / "out.wav", 16000)
    fake = FakeTime(2.0, [])
    clock = PeriodClock(0.02, clock=fake.clock, sleep=fake.sleep)
    sink = FileSink(pb, writer, 20, clock=clock)
    fake.on_stop.append(sink._stop)
    reply = np.full(4000, 1234, dtype=np.int16)
    pb.play(reply.tobytes())
    pb.end_reply()
    sink.run()  # the thread body, on the controlled clock
    sink.close()
    assert writer.frames == clock.ticks * 320 == 32000  # 2 s of wall clock at 16 kHz
    with wave.open(str(writer.path)) as w:
        assert (w.getnframes(), w.getframerate(), w.getnchannels()) == (32000, 16000, 1)
        data = np.frombuffer(w.readframes(32000), dtype="<i2")
    assert (data[:4000] == 1234).all() and not data[4000:].any()


def test_wav_header_is_valid_after_each_flush(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "x.wav", 8000)
    with wave.open(str(writer.path)) as w:
        assert w.getnframes() == 0
    writer.write(np.arange(100, dtype=np.int16))
    writer.flush()
    writer.write(np.arange(50, dtype=np.int16))
    with wave.open(str(writer.path)) as w:  # sizes patched at the last flush
        assert w.getnframes() == 100
    writer.close()
    with wave.open(str(writer.path)) as w:
        assert w.getnframes() == 150


def test_output_wav_valid_after_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "killed.wav"
    script = textwrap.dedent(
        f"""
        import asyncio
        from voicebox.config import AudioConfig, InputConfig, OutputConfig
        from voicebox.audio.engine import AudioEngine
        async def main():
            cfg = AudioConfig(
                InputConfig(backend="file", path={str(tmp_path / "in.wav")!r}),
                OutputConfig(backend="file", path={str(out)!r}),
            )
            await AudioEngine(cfg).start(lambda c: None)
            print("started", flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
        """
    )
    write_wav(tmp_path / "in.wav", np.zeros(1600, dtype=np.int16), 16000)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while out.stat().st_size < 44 + 16000 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # default action: no cleanup runs
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    with wave.open(str(out)) as w:
        frames = w.getnframes()
        assert w.getframerate() == 16000
        assert len(w.readframes(frames)) == frames * 2
    assert frames >= 320
    assert os.path.getsize(out) >= 44 + frames * 2


def test_wav_input_of_any_layout_is_mixed_and_resampled(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    left = (np.sin(2 * np.pi * 500 * t) * 10000).astype(np.int16)
    stereo = np.stack([left, left // 2], axis=1)  # channels are averaged
    write_wav(tmp_path / "s.wav", stereo, 44100)
    mono, rate = read_wav_mono(tmp_path / "s.wav")
    assert rate == 44100 and np.array_equal(
        mono, ((left.astype(int) + left // 2) / 2).astype(np.int16)
    )
    resampled, rate = read_wav_mono(tmp_path / "s.wav", 16000)
    assert rate == 16000 and abs(len(resampled) - 16000) <= 1
    peak = int(np.argmax(np.abs(np.fft.rfft(resampled[:16000].astype(float)))))
    assert abs(peak - 500) <= 1
    u8 = np.array([128, 255, 0], dtype=np.uint8)
    write_wav(tmp_path / "u8.wav", u8, 8000, width=1)
    assert read_wav_mono(tmp_path / "u8.wav")[0].tolist() == [0, 127 << 8, -32768]


class Blocks:
    """Records what a FileSource hands to its capture."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []

    def on_block(self, block: np.ndarray, overflow: bool = False, *stamps: float) -> None:
        self.blocks.append(block.copy())


@pytest.mark.parametrize("loop", [False, True])
def test_file_source_feeds_then_silence_or_repeats(loop: bool, tmp_path: Path) -> None:
    rec = Blocks()
    data = np.arange(1, 501, dtype=np.int16)
    write_wav(tmp_path / "in.wav", data, 16000)
    fake = FakeTime(0.2, [])
    clock = PeriodClock(0.02, clock=fake.clock, sleep=fake.sleep)
    reader = WavReader(tmp_path / "in.wav")
    src = FileSource(rec, reader, 20, loop=loop, clock=clock)  # type: ignore[arg-type]
    fake.on_stop.append(src._stop)
    src.run()
    fed = np.concatenate(rec.blocks)
    assert len(fed) == clock.ticks * 320 == 10 * 320  # 0.2 s of wall clock
    assert np.array_equal(fed[:500], data)
    if loop:
        assert np.array_equal(fed[500:1000], data)
    else:
        assert not fed[500:].any()


def test_wav_reader_streams_what_the_whole_file_holds(tmp_path: Path) -> None:
    t = np.arange(44100 * 2) / 44100
    left = (np.sin(2 * np.pi * 500 * t) * 10000).astype(np.int16)
    write_wav(tmp_path / "s.wav", np.stack([left, left // 2], axis=1), 44100)
    whole, _ = read_wav_mono(tmp_path / "s.wav")
    reader = WavReader(tmp_path / "s.wav", read_frames=1000)
    out = np.zeros(len(whole) + 100, dtype=np.int16)
    parts = [reader.read_into(out[i : i + 333]) for i in range(0, len(out), 333)]
    assert sum(parts) == len(whole) and reader.at_end
    assert np.array_equal(out[: len(whole)], whole)  # mixing is exact, block by block
    resampled = WavReader(tmp_path / "s.wav", 16000, read_frames=1000)
    got = np.zeros(40000, dtype=np.int16)
    n = sum(resampled.read_into(got[i : i + 320]) for i in range(0, len(got), 320))
    assert abs(n - 32000) <= 1  # 2 s at 16 kHz, the filter's tail included
    peak = int(np.argmax(np.abs(np.fft.rfft(got[:16000].astype(float)))))
    assert abs(peak - 500) <= 1
    reader.close()
    resampled.close()


def test_file_source_memory_does_not_depend_on_the_file_length(tmp_path: Path) -> None:
    """Feeding a long WAV holds one read block, not the file: the peak of traced allocations
    and the bytes read ahead of the clock are the same for 10 s and for 10 minutes."""
    import tracemalloc

    from voicebox.audio import files

    rng = np.random.default_rng(0)
    second = (rng.standard_normal(16000) * 3000).astype("<i2")
    for name, seconds in (("short.wav", 10), ("long.wav", 600)):
        with wave.open(str(tmp_path / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(second.tobytes() * seconds)

    def feed(name: str) -> tuple[int, int]:
        rec = Blocks()
        tracemalloc.start()
        try:
            fake = FakeTime(2.0, [])
            clock = PeriodClock(0.02, clock=fake.clock, sleep=fake.sleep)
            reader = WavReader(tmp_path / name)
            src = FileSource(rec, reader, 20, clock=clock)  # type: ignore[arg-type]
            fake.on_stop.append(src._stop)
            src.run()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        fed = sum(len(b) for b in rec.blocks)
        ahead = reader.bytes_read - fed * 2
        reader.close()
        return peak, ahead

    short_peak, short_ahead = feed("short.wav")
    long_peak, long_ahead = feed("long.wav")
    block_bytes = files.READ_FRAMES * 2
    assert 0 <= long_ahead <= block_bytes and 0 <= short_ahead <= block_bytes
    # What was fed (2 s of 20 ms copies, recorded by the test) is the same for both files.
    assert long_peak < short_peak + 256 * 1024
    assert long_peak < 4 * 1024 * 1024  # the file is 19 MB
