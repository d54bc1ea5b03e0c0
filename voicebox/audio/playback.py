"""Reply playback: wire bytes in on the loop, a pre-rolled ring out on the device clock.

The same `Playback` feeds a sounddevice OutputStream callback and the file output's clock. The
loop thread decodes and resamples in `play()`; the device thread only copies samples out of the
ring in `fill()`, applies the volume in place and writes silence when there is nothing to play.
Audio queued after `end_reply()` while the ended reply still plays out (an announcement phrase,
then the agent) is a reply of its own behind it, with its own pre-roll and underrun accounting.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from voicebox.audio.echo.history import StampedHistory
from voicebox.audio.formats import PCM_16000, AudioFormat, decode
from voicebox.audio.resample import StreamResampler
from voicebox.audio.ring import SampleRing

UNITY = 32768  # volume 1.0 in Q15


class Playback:
    """Pre-roll gate, underrun accounting, interrupt and volume over one playback ring."""

    def __init__(
        self, rate: int, ring_ms: int, prebuffer_ms: int, volume: float = 1.0, max_block: int = 8192
    ) -> None:
        self.rate = rate
        self.ring = SampleRing(self._samples(ring_ms), "drop_newest")
        self._lock = threading.Lock()
        self._prebuffer = self._samples(prebuffer_ms)
        self.prebuffer_ms = prebuffer_ms
        self._next_ring_ms: int | None = None
        self._gain = np.int32(UNITY)
        self.set_volume(volume)
        self._scratch: npt.NDArray[np.int32] = np.zeros(max_block, dtype=np.int32)
        # reply state, shared with the device thread under _lock
        self._in_reply = False
        self._flowing = False
        self._ended = False
        self._behind = 0  # samples ahead in the ring that belong to an ended reply
        # counters
        self.callbacks = 0
        self.underruns = 0
        self.interrupts = 0
        self.replies_finished = 0
        # loop side
        self._fmt = PCM_16000
        self._resampler = StreamResampler(self._fmt.rate, rate)
        self._carry = b""
        self.on_finished: Callable[[], None] | None = None  # device thread, once per reply
        # what fill() handed the device and when it reaches the DAC: the echo canceller's
        # reference (None when nothing listens)
        self.reference: StampedHistory | None = None

    def _samples(self, ms: int) -> int:
        return max(1, self.rate * ms // 1000)

    # --- loop thread --------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return self._in_reply

    @property
    def level_ms(self) -> float:
        return self.ring.available * 1000.0 / self.rate

    def set_format(self, fmt: AudioFormat) -> None:
        if fmt != self._fmt:
            self._fmt = fmt
            self._resampler = StreamResampler(fmt.rate, self.rate)
            self._carry = b""

    def set_prebuffer_ms(self, ms: int) -> None:
        """Pre-roll: the gate of the next reply, and of the refill after an underrun in this one
        (the tuner raises it on underruns, and that must help at once)."""
        self.prebuffer_ms = max(0, ms)
        with self._lock:
            self._prebuffer = self._samples(self.prebuffer_ms) if self.prebuffer_ms else 0

    def set_ring_ms(self, ms: int) -> None:
        """Ring capacity, applied when no reply is playing."""
        self._next_ring_ms = ms
        if not self._in_reply:
            self._apply_ring_size()

    def set_volume(self, volume: float) -> None:
        self._gain = np.int32(round(min(1.0, max(0.0, volume)) * UNITY))

    def _apply_ring_size(self) -> None:
        if self._next_ring_ms is not None:
            self.ring.resize(self._samples(self._next_ring_ms))
            self._next_ring_ms = None

    def play(self, data: bytes) -> int:
        """Queue wire bytes for the current reply (starting one); returns samples dropped."""
        if self._fmt.encoding == "pcm" and (self._carry or len(data) % 2):
            data = self._carry + data
            cut = len(data) - len(data) % 2
            data, self._carry = data[:cut], data[cut:]
        samples = self._resampler.process(decode(data, self._fmt))
        with self._lock:
            if not self._in_reply:
                self._apply_ring_size()
                self._prebuffer = self._samples(self.prebuffer_ms) if self.prebuffer_ms else 0
                self._in_reply, self._flowing, self._ended = True, False, False
            elif self._ended:  # a new reply behind the one still playing out
                self._prebuffer = self._samples(self.prebuffer_ms) if self.prebuffer_ms else 0
                self._behind, self._ended = self.ring.available, False
                if not self._behind:  # it has just played out: the new one pre-rolls
                    self._flowing = False
                    self.replies_finished += 1
        return self.ring.write(samples) if len(samples) else 0

    def end_reply(self) -> int:
        """No more audio for this reply: flush the resampler tail, play out below the pre-roll."""
        if not self._in_reply:
            return 0
        tail = self._resampler.process(np.zeros(0, dtype=np.int16), last=True)
        self._carry = b""
        dropped = self.ring.write(tail) if len(tail) else 0
        with self._lock:
            self._ended = True
        return dropped

    def interrupt(self) -> int:
        """Drop everything queued; the next device period is silence. Returns samples dropped."""
        with self._lock:
            dropped = self.ring.clear()
            was_playing = self._in_reply
            self._in_reply, self._flowing, self._ended = False, False, False
            self._behind = 0
        self._resampler.reset()
        self._carry = b""
        if was_playing or dropped:
            self.interrupts += 1
        self._apply_ring_size()
        return dropped

    # --- device thread ------------------------------------------------------------------------

    def fill(
        self, out: npt.NDArray[np.int16], dac_time: float = math.nan, now: float = math.nan
    ) -> None:
        """Fill one device period: ring samples while a reply flows, silence otherwise.
        dac_time: when its first sample reaches the DAC; now: the callback's time (same clock)."""
        self.callbacks += 1
        frames = len(out)
        n = 0
        finished = False
        with self._lock:
            if self._behind:  # an ended reply plays out first, below the pre-roll
                self._flowing = True
                n = self.ring.read_into(out[: self._behind])
                self._behind -= n
                if self._behind == 0:
                    self.replies_finished += 1
                    finished = True
                    self._flowing = False  # the reply behind it passes its own pre-roll gate
            if self._in_reply and not self._flowing:
                # A pre-roll the ring cannot hold (a small buffer_ms, a tuner raising it) would
                # hold the reply back until its end: a full ring is pre-rolled enough.
                ready = self.ring.available >= min(self._prebuffer, self.ring.capacity)
                self._flowing = ready or self._ended
            if self._flowing and n < frames:
                n += self.ring.read_into(out[n:])
                if n < frames:
                    if self._ended:
                        if self.ring.available == 0:
                            self._in_reply = self._flowing = self._ended = False
                            self.replies_finished += 1
                            finished = True
                    else:  # ran dry mid-reply: count it and buffer the pre-roll again
                        self.underruns += 1
                        self._flowing = False
        if n < frames:
            out[n:] = 0
        if n and self._gain != UNITY:
            self._scale(out[:n])
        reference = self.reference  # read once: the loop may swap it (a reload)
        if reference is not None and dac_time == dac_time:  # not NaN
            reference.write(out, dac_time, now)
        if finished and self.on_finished is not None:
            self.on_finished()

    def _scale(self, block: npt.NDArray[np.int16]) -> None:
        step = len(self._scratch)
        for i in range(0, len(block), step):
            part = block[i : i + step]
            tmp = self._scratch[: len(part)]
            np.multiply(part, self._gain, out=tmp)
            np.right_shift(tmp, 15, out=tmp)
            part[:] = tmp
