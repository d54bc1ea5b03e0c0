"""File "devices" on a real-time clock, so the daemon runs without a sound card.

`FileSource` feeds a WAV (any rate and channel count, mixed to mono) into a `Capture` one period
at a time, then silence (or the WAV again with loop), reading the file in blocks as it goes.
`FileSink` pulls one period at a time from a
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
from voicebox.audio.resample import StreamResampler, convert

MAX_CATCH_UP = 50  # periods processed back to back before looking at the clock again
FLUSH_PERIODS = 25  # periods between header patches of the output WAV
READ_FRAMES = 4096  # source frames read from an input WAV at a time


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


def _mono(raw: bytes, width: int, channels: int) -> npt.NDArray[np.int16]:
    """Interleaved WAV sample bytes to int16 mono (channels averaged)."""
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)) >> 16
    else:
        x = np.frombuffer(raw, dtype="<i4").astype(np.int32) >> 16
    mono: npt.NDArray[np.int16] = x.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return mono


class WavReader:
    """A WAV file read a block at a time as int16 mono at `rate` (channels averaged, resampled
    as it streams), so memory does not depend on the file's length."""

    def __init__(self, path: str | Path, rate: int | None = None, read_frames: int = READ_FRAMES):
        self.path = str(path)
        self._wav = wave.open(self.path, "rb")  # noqa: SIM115 - kept open while it streams
        try:
            self.channels = self._wav.getnchannels()
            self.width = self._wav.getsampwidth()
            self.src_rate = self._wav.getframerate()
            self.nframes = self._wav.getnframes()
            if self.width not in (1, 2, 3, 4):
                raise ValueError(f"{path}: unsupported sample width {self.width} bytes")
            if self.src_rate <= 0:
                raise ValueError(f"{path}: invalid sample rate {self.src_rate}")
        except BaseException:
            self._wav.close()
            raise
        self.rate = rate or self.src_rate
        self._read_frames = read_frames
        self._resampler = StreamResampler(self.src_rate, self.rate)
        self._pending: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)
        self._offset = 0
        self.frames_read = 0  # source frames read from the file since the last rewind
        self.bytes_read = 0  # sample bytes read from the file, in total
        self.at_end = False  # every sample of the file has been handed out

    def read_into(self, out: npt.NDArray[np.int16]) -> int:
        """Fill `out` from the file; fewer samples only at its end."""
        filled = 0
        while filled < len(out):
            if self._offset >= len(self._pending):
                if self.at_end:
                    break
                self._refill()
                continue
            n = min(len(out) - filled, len(self._pending) - self._offset)
            out[filled : filled + n] = self._pending[self._offset : self._offset + n]
            filled += n
            self._offset += n
        return filled

    def _refill(self) -> None:
        """Read and convert the next block of the file (the resampler may hold it back)."""
        raw = self._wav.readframes(self._read_frames)
        self.bytes_read += len(raw)
        frames = len(raw) // (self.width * self.channels)
        self.frames_read += frames
        last = frames < self._read_frames
        usable = raw[: frames * self.width * self.channels]
        self._pending = self._resampler.process(_mono(usable, self.width, self.channels), last)
        self._offset = 0
        self.at_end = last

    def rewind(self) -> None:
        """Back to the first sample (loop)."""
        self._wav.rewind()
        self._resampler.reset()
        self._pending = self._pending[:0]
        self._offset = 0
        self.frames_read = 0
        self.at_end = False

    def reopened(self) -> WavReader:
        """The same file opened again at the same position (after a read error)."""
        self.close()
        fresh = WavReader(self.path, self.rate, self._read_frames)
        fresh._wav.setpos(min(self.frames_read, fresh._wav.getnframes()))
        fresh.frames_read = self.frames_read
        return fresh

    def close(self) -> None:
        self._wav.close()


def read_wav_mono(path: str | Path, rate: int | None = None) -> tuple[npt.NDArray[np.int16], int]:
    """A whole WAV as int16 mono (channels averaged), resampled to `rate` if given, and its rate."""
    with wave.open(str(path), "rb") as w:
        channels, width, src_rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        if width not in (1, 2, 3, 4):
            raise ValueError(f"{path}: unsupported sample width {width} bytes")
        mono = _mono(w.readframes(w.getnframes()), width, channels)
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
        self.error = None  # a fresh start: an error of the last run is what recovery reopened for
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
    """A WAV played into a Capture in real time; silence (or the WAV again) after its end.

    The file is read as the clock asks for it, one block ahead at most."""

    def __init__(
        self,
        capture: Capture,
        reader: WavReader,
        block_ms: int,
        loop: bool = False,
        clock: PeriodClock | None = None,
    ) -> None:
        self.block = max(1, reader.rate * block_ms // 1000)
        super().__init__("voicebox-file-input", self.block / reader.rate, clock)
        self.name = reader.path
        self.capture = capture
        self.reader = reader
        self.loop = loop
        self._silence: npt.NDArray[np.int16] = np.zeros(self.block, dtype=np.int16)
        self._buf: npt.NDArray[np.int16] = np.zeros(self.block, dtype=np.int16)

    def open(self) -> None:
        if self.error is not None:  # a read failed: start again from a fresh handle
            self.reader = self.reader.reopened()
        super().open()

    def step(self) -> None:
        filled = self.reader.read_into(self._buf)
        while filled < self.block and self.loop and self.reader.nframes:
            self.reader.rewind()
            n = self.reader.read_into(self._buf[filled:])
            if n == 0:
                break
            filled += n
        if filled == 0:
            self.capture.on_block(self._silence, False, *self._stamps())
            return
        self._buf[filled:] = 0
        self.capture.on_block(self._buf, False, *self._stamps())

    def _stamps(self) -> tuple[float, float]:
        """ADC time of this block (heard over the last period) and now, on the device clock."""
        return self.tick_time - self.clock.period, self.tick_time

    def release(self) -> None:
        """Close the file (the engine's stop)."""
        self.close()
        self.reader.close()


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
