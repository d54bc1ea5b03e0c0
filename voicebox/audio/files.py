"""File "devices" on a real-time clock, so the daemon runs without a sound card.

`FileSource` feeds a WAV (any rate and channel count, mixed to mono) into a `Capture` one period
at a time, then silence (or the WAV again with loop). `FileSink` pulls one period at a time from a
`Playback` and appends it, silence included, to a WAV whose header is patched on every flush, so
the file is valid at any moment, even if the process is killed. Both run in their own thread,
paced by a monotonic clock that catches up without drift.
"""

from __future__ import annotations

import struct
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from voicebox.audio.capture import Capture
from voicebox.audio.playback import Playback
from voicebox.audio.resample import convert

MAX_CATCH_UP = 50  # periods processed back to back before looking at the clock again
FLUSH_PERIODS = 25  # periods between header patches of the output WAV


class PeriodClock:
    """Deadlines every `period` seconds from the first call; `due()` says how many have passed."""

    def __init__(
        self,
        period: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.period = period
        self._clock = clock
        self._sleep = sleep  # None: wait on the stop event
        self._start: float | None = None
        self.ticks = 0  # periods handed out so far

    def due(self) -> int:
        """Periods that are due now (0..MAX_CATCH_UP), counting them as handed out."""
        now = self._clock()
        if self._start is None:
            self._start = now
        elapsed = int((now - self._start) / self.period + 1e-6)  # 1e-6: float rounding
        n = min(elapsed + 1 - self.ticks, MAX_CATCH_UP)
        if n <= 0:
            return 0
        self.ticks += n
        return n

    def deadline(self, tick: int) -> float:
        """When period `tick` (0-based) is due, on the clock (time.monotonic by default)."""
        return (self._start or 0.0) + tick * self.period

    def wait(self, stop: threading.Event) -> None:
        """Sleep until the next deadline (or until stop is set)."""
        assert self._start is not None
        delay = self._start + self.ticks * self.period - self._clock()
        if delay > 0:
            if self._sleep is None:
                stop.wait(delay)
            else:
                self._sleep(delay)


def read_wav_mono(path: str | Path, rate: int | None = None) -> tuple[npt.NDArray[np.int16], int]:
    """A WAV as int16 mono (channels averaged), resampled to `rate` if given, and its rate."""
    with wave.open(str(path), "rb") as w:
        channels, width, src_rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)) >> 16
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.int32) >> 16
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    mono = x.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate is not None and rate != src_rate:
        return convert(mono, src_rate, rate), rate
    return mono, src_rate


class _Paced:
    """A thread that runs `step()` once per period of a PeriodClock until stopped."""

    portaudio = False

    def __init__(self, name: str, period: float, clock: PeriodClock | None) -> None:
        self.name = name  # shown in logs and stats (the engine sets the file path)
        self._thread_name = name
        self.clock = clock or PeriodClock(period)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.tick_time = 0.0  # the device clock: the deadline of the period being processed

    def step(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        """The pacing loop (the thread's body; tests may call it with a fake clock)."""
        try:
            while not self._stop.is_set():
                due = self.clock.due()
                for tick in range(self.clock.ticks - due, self.clock.ticks):
                    self.tick_time = self.clock.deadline(tick)
                    self.step()
                self.clock.wait(self._stop)
        except BaseException as exc:  # reported to the engine's supervisor, not raised
            self.error = exc

    def open(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self._thread_name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop_soon(self) -> None:
        self._stop.set()

    @property
    def failed(self) -> bool:
        return self.error is not None


class FileSource(_Paced):
    """A WAV played into a Capture in real time; silence (or the WAV again) after its end."""

    def __init__(
        self,
        capture: Capture,
        samples: npt.NDArray[np.int16],
        rate: int,
        block_ms: int,
        loop: bool = False,
        clock: PeriodClock | None = None,
    ) -> None:
        self.block = max(1, rate * block_ms // 1000)
        super().__init__("voicebox-file-input", self.block / rate, clock)
        self.capture = capture
        self.samples = samples
        self.loop = loop
        self.pos = 0
        self._silence: npt.NDArray[np.int16] = np.zeros(self.block, dtype=np.int16)
        self._buf: npt.NDArray[np.int16] = np.zeros(self.block, dtype=np.int16)

    def step(self) -> None:
        total = len(self.samples)
        if self.pos >= total and not (self.loop and total):
            self.capture.on_block(self._silence)
            return
        filled = 0
        while filled < self.block:
            if self.pos >= total:
                if not (self.loop and total):
                    break
                self.pos = 0
            n = min(self.block - filled, total - self.pos)
            self._buf[filled : filled + n] = self.samples[self.pos : self.pos + n]
            filled += n
            self.pos += n
        self._buf[filled:] = 0
        self.capture.on_block(self._buf)


class WavWriter:
    """A mono int16 WAV appended to in place, its header patched on every flush."""

    def __init__(self, path: str | Path, rate: int) -> None:
        self.path = Path(path)
        self.rate = rate
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")  # noqa: SIM115 - kept open for the stream's lifetime
        self.frames = 0
        self._f.write(self._header())
        self._f.flush()

    def _header(self) -> bytes:
        data = self.frames * 2
        return (
            b"RIFF"
            + struct.pack("<I", 36 + data)
            + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, self.rate, self.rate * 2, 2, 16)
            + b"data"
            + struct.pack("<I", data)
        )

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        self._f.write(np.ascontiguousarray(samples, dtype="<i2").data)
        self.frames += len(samples)

    def flush(self) -> None:
        """Make the file a valid WAV of everything written so far."""
        if self._f.closed:
            return
        self._f.seek(0)
        self._f.write(self._header())
        self._f.seek(0, 2)
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            self._f.close()


class FileSink(_Paced):
    """A WAV written on the device clock: one frame per sample period, silence included."""

    def __init__(
        self,
        playback: Playback,
        writer: WavWriter,
        block_ms: int,
        clock: PeriodClock | None = None,
    ) -> None:
        self.block = max(1, playback.rate * block_ms // 1000)
        super().__init__("voicebox-file-output", self.block / playback.rate, clock)
        self.playback = playback
        self.writer = writer
        self._buf: npt.NDArray[np.int16] = np.zeros(self.block, dtype=np.int16)
        self._since_flush = 0

    def step(self) -> None:
        # a device with two periods of buffer: what is filled now reaches the DAC that much later
        self.playback.fill(self._buf, self.tick_time + 2 * self.clock.period, self.tick_time)
        self.writer.write(self._buf)
        self._since_flush += 1
        if self._since_flush >= FLUSH_PERIODS:
            self._since_flush = 0
            self.writer.flush()

    def close(self) -> None:
        super().close()
        self.writer.flush()
