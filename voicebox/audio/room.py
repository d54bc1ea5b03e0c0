"""A simulated room: what a microphone next to the speaker would hear, in real time.

The mic hears the user's WAV, plus what the speaker actually played convolved with a room
impulse response (a delay, then an exponentially decaying tail, at a level relative to the
speaker), plus noise. `Room` holds the speaker's recent output on the device clock and computes
each mic block from it (FFT overlap-save, so a 300 ms tail costs little). The file devices that
use it live in voicebox/audio/files.py (`audio.input.backend: room`).
"""

from __future__ import annotations

import math
import threading
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voicebox.audio.capture import Capture
from voicebox.audio.echo.history import StampedHistory
from voicebox.audio.files import FileSink, PeriodClock, WavWriter, _Paced, read_wav_mono
from voicebox.audio.playback import Playback
from voicebox.config import RoomConfig

Samples = npt.NDArray[np.int16]


def impulse_response(
    rate: int,
    delay_ms: float = 40.0,
    tail_ms: float = 250.0,
    echo_db: float = -6.0,
    seed: int = 1,
    direct_db: float | None = None,
) -> npt.NDArray[np.float64]:
    """A room: silence for delay_ms, then the direct path and a decaying noise tail (60 dB down
    after tail_ms), in all echo_db relative to the speaker. direct_db: the direct path's energy
    relative to the tail's (a speaker beside the mic in one box: well above 0); None: a tail
    only (a far, reverberant path, the harshest case)."""
    rng = np.random.default_rng(seed)
    d = int(rate * delay_ms / 1000)
    n = max(1, int(rate * tail_ms / 1000))
    t = np.arange(n)
    tail = rng.standard_normal(n) * np.exp(-t * (6.9 / n))
    if direct_db is None:
        tail[0] = abs(tail[0]) + 1.0  # a small direct path first
    else:
        tail[0] = 0.0
        tail /= math.sqrt(float(np.dot(tail, tail)))
        tail[0] = 10 ** (direct_db / 20)
    h = np.zeros(d + n)
    h[d:] = tail
    h *= 10 ** (echo_db / 20) / math.sqrt(float(np.dot(h, h)))
    return h


class Room:
    """The acoustic path from the speaker to the mic, at one rate.

    `speaker` is written by the output device (what it played and when, on the device clock);
    `hear(t, user, out)` fills out with the mic signal of the block starting at device time t.
    """

    def __init__(
        self,
        rate: int,
        ir: npt.NDArray[np.float64],
        block: int,
        noise_dbfs: float = -70.0,
        seed: int = 2,
    ) -> None:
        self.rate = rate
        self.block = block
        self.ir = ir
        self.speaker = StampedHistory(rate, max(2.0, 2 * len(ir) / rate + 1.0))
        self._fft = 1 << math.ceil(math.log2(len(ir) + block))
        self._h = np.fft.rfft(ir, self._fft)
        self._past: Samples = np.zeros(self._fft, dtype=np.int16)
        self._rng = np.random.default_rng(seed)
        self._noise_rms = 32768.0 * 10 ** (noise_dbfs / 20) if noise_dbfs > -150 else 0.0
        nonzero = np.flatnonzero(ir)
        self._lead = int(nonzero[0]) if len(nonzero) else len(ir)  # samples before any echo
        self._played = threading.Condition()
        self.waits = 0  # mic blocks that waited for the speaker thread (a loaded machine)

    def play(self, block: Samples, dac_time: float, now: float) -> None:
        """The speaker played `block` from dac_time on (its device thread)."""
        self.speaker.write(block, dac_time, now)
        with self._played:
            self._played.notify_all()

    def _wait_for(self, index: int, timeout: float) -> None:
        """Sound is causal: a mic block is not heard before the speaker played what it echoes
        (the speaker thread may run late on a loaded machine)."""
        with self._played:
            if self.speaker.total > index:
                return
            self.waits += 1
            self._played.wait_for(lambda: self.speaker.total > index, timeout)

    def echo(self, t: float) -> npt.NDArray[np.float64]:
        """The speaker's sound reaching the mic during the block starting at device time t."""
        stamp = self.speaker.stamp()
        if stamp is None:
            return np.zeros(self.block)
        index, when, _ = stamp
        end = index + round((t - when) * self.rate) + self.block
        if end - self._lead - 1 >= self.speaker.total:
            self._wait_for(end - self._lead - 1, 0.5)
        self.speaker.read(end - self._fft, self._past)
        y = np.fft.irfft(np.fft.rfft(self._past) * self._h, self._fft)
        tail: npt.NDArray[np.float64] = y[-self.block :]
        return tail

    def hear(self, t: float, user: Samples, out: Samples) -> None:
        """The mic block starting at device time t: user + echo + noise, clipped to int16."""
        mix = self.echo(t)
        mix = mix + user
        if self._noise_rms:
            mix += self._rng.standard_normal(len(mix)) * self._noise_rms
        np.clip(mix, -32768, 32767, out=mix)
        out[:] = mix


def build_room(cfg: RoomConfig, rate: int, block: int) -> Room:
    """The room audio.input.room describes (its impulse response WAV, or a synthetic one)."""
    if cfg.impulse_response:
        samples, _ = read_wav_mono(cfg.impulse_response, rate)
        ir = samples.astype(np.float64) / 32768.0
    else:
        ir = impulse_response(rate, cfg.delay_ms, cfg.tail_ms, cfg.echo_db, cfg.seed, cfg.direct_db)
    return Room(rate, ir, block, cfg.noise_dbfs, cfg.seed + 1)


class _Reader(Protocol):
    nframes: int

    def read_into(self, out: Samples) -> int: ...
    def rewind(self) -> None: ...
    def close(self) -> None: ...


class RoomSink(FileSink):
    """The file output, whose every period also sounds in the room (same DAC stamps)."""

    def __init__(
        self,
        playback: Playback,
        writer: WavWriter,
        block_ms: int,
        room: Room,
        clock: PeriodClock | None = None,
    ) -> None:
        super().__init__(playback, writer, block_ms, clock)
        self.room = room

    def step(self) -> None:
        super().step()
        self.room.play(self._buf, self.tick_time + 2 * self.clock.period, self.tick_time)


class RoomSource(_Paced):
    """The mic in the room: the user's WAV (then silence, or again with loop) plus the echo of
    what the RoomSink played, plus noise, one period at a time."""

    def __init__(
        self,
        capture: Capture,
        reader: _Reader,
        room: Room,
        loop: bool = False,
        clock: PeriodClock | None = None,
    ) -> None:
        self.block = room.block
        super().__init__("voicebox-room-input", room.block / room.rate, clock)
        self.capture = capture
        self.reader = reader
        self.room = room
        self.loop = loop
        self._user: Samples = np.zeros(self.block, dtype=np.int16)
        self._buf: Samples = np.zeros(self.block, dtype=np.int16)

    def step(self) -> None:
        n = self.reader.read_into(self._user)
        while n < self.block and self.loop and self.reader.nframes:
            self.reader.rewind()
            got = self.reader.read_into(self._user[n:])
            if got == 0:
                break
            n += got
        self._user[n:] = 0
        adc = self.tick_time - self.clock.period  # the block was heard over the last period
        self.room.hear(adc, self._user, self._buf)
        self.capture.on_block(self._buf, False, adc, self.tick_time)

    def release(self) -> None:
        """Close the user's WAV (the engine's stop)."""
        self.close()
        self.reader.close()
