"""The stamped history of a device stream, and the alignment of the far end with the mic.

Device side: `StampedHistory` keeps the newest second or so of one stream's samples (the mic's
blocks, or exactly what the playback callback wrote, volume and silence included) together with
the device time of its newest block (PortAudio's inputBufferAdcTime / outputBufferDacTime, or the
file devices' clock). Writing copies into preallocated arrays under a short lock: nothing
allocates, logs or blocks for long.

Loop side: `ReferenceAlignment` finds the reference span played at the same device time as each
mic block from the two streams' stamps. AEC3's own delay estimator then only has the acoustic
path (plus `MARGIN_MS`) to find; the buffering delay it would otherwise have to guess is taken
from the stamps, so it follows latency changes and device reopens. A stamp is not trusted alone:
through a sound server (ALSA's pulse plugin) one is often 15-40 ms off and the first second's
are off by hundreds of ms, while the sample counts of the two streams keep a steady relation. So
the reference advances by sample count, and the stamps' offset from it, as the median of the
last ALIGN_BLOCKS blocks, re-aligns it only when that median moves: each jump of the reference
is an echo path change AEC3 must re-learn, audibly at the start of the next reply.
"""

from __future__ import annotations

import enum
import math
import threading

import numpy as np

from voicebox.audio.echo.frames import RATE, Samples, median
from voicebox.audio.resample import StreamResampler

MARGIN_MS = 5.0  # the reference is taken this much early (AEC3 lost the small room at 15+)
RESYNC_MS = 12.0  # the offset's median further off than this re-aligns at once
SLEW_MS = 0.5  # smaller offsets are walked back one sample per block (clock drift)
ALIGN_BLOCKS = 32  # the offset is the median of the stamps of this many recent mic blocks
ALIGN_MIN = 16  # and is acted on once this many are in (one stamp is never trusted alone)
HISTORY_S = 2.0  # reference kept on the device side
HOLD_S = 0.1  # a mic block waits at most this long for its reference (a late output thread)


class StampedHistory:
    """The newest `capacity` samples of one device stream and the device time of its blocks.

    One writer (the device thread) and one reader (the loop). Sample index i counts every sample
    ever written; `stamp()` gives the index and device time of the newest block's first sample
    and how far that device time is from the callback's own time (the stream's buffering).
    """

    def __init__(self, rate: int, seconds: float = HISTORY_S) -> None:
        self.rate = rate
        self._buf: Samples = np.zeros(max(0, int(rate * seconds)), dtype=np.int16)  # 0: stamps only
        self._lock = threading.Lock()
        self.total = 0
        # newest stamp: [index, device time, |device time - callback time|]; NaN until the first
        self._stamp = np.full(3, np.nan)
        self.epoch = 0  # bumped by reset(): a new stream, new stamps

    @property
    def capacity(self) -> int:
        return len(self._buf)

    def write(self, block: Samples, device_time: float, now: float) -> None:
        """Append one block (device thread). device_time: when its first sample hits the DAC or
        left the ADC; now: the callback's time on the same clock. Never raises."""
        n = len(block)
        cap = len(self._buf)
        with self._lock:
            index = self.total
            if cap:
                keep = min(n, cap)  # only the newest `cap` samples of a long block are held
                start = (index + n - keep) % cap  # sample i lives at i % cap, as read() expects
                first = min(keep, cap - start)
                self._buf[start : start + first] = block[n - keep : n - keep + first]
                if first < keep:
                    self._buf[: keep - first] = block[n - keep + first :]
            self.total = index + n
            self._stamp[0] = index
            self._stamp[1] = device_time
            self._stamp[2] = abs(device_time - now)

    def stamp(self) -> tuple[int, float, float] | None:
        """(index, device time, buffering seconds) of the newest block, or None before any."""
        with self._lock:
            if math.isnan(self._stamp[1]):
                return None
            return int(self._stamp[0]), float(self._stamp[1]), float(self._stamp[2])

    def read(self, start: int, out: Samples) -> int:
        """Copy samples [start, start+len(out)) into out; zeros where not (or no longer) held.
        Returns how many were real samples."""
        n = len(out)
        cap = len(self._buf)
        with self._lock:
            lo = max(start, self.total - cap)
            hi = min(start + n, self.total)
            if hi <= lo or cap == 0:
                out[:] = 0
                return 0
            out[: lo - start] = 0
            out[hi - start :] = 0
            a = lo % cap
            count = hi - lo
            first = min(count, cap - a)
            out[lo - start : lo - start + first] = self._buf[a : a + first]
            if first < count:
                out[lo - start + first : hi - start] = self._buf[: count - first]
            return count

    def reset(self) -> None:
        """Forget the stamps (the stream was reopened): alignment starts again from new ones."""
        with self._lock:
            self._stamp[:] = np.nan
            self.epoch += 1


class Move(enum.Enum):
    """How taking a block's reference moved the reference span."""

    STARTED = "started"  # the first stamps placed it
    REALIGNED = "realigned"  # the stamps' median said it was off: a new echo path for AEC3


class ReferenceAlignment:
    """The reference (far end) at RATE for each mic block, taken from where the stamps place it.

    Loop side only. `start()` is where the stamps put a mic block's first sample in the
    reference; `take()` advances the reference by sample count from there, and re-aligns it
    when the median of the recent stamp offsets moves.
    """

    def __init__(self, mic: StampedHistory, reference: StampedHistory | None) -> None:
        self.mic = mic
        self.reference = reference
        self._ref_rs = StreamResampler(reference.rate if reference else RATE, RATE)
        self._ref_pos: int | None = None  # reference index of the next sample to take
        self._ref_frac = 0.0
        self._offsets = np.zeros(ALIGN_BLOCKS)  # stamp target minus position, recent blocks
        self._n_offsets = 0
        self._ref_block: Samples = np.zeros(4096, dtype=np.int16)
        self.delay_ms: float | None = None  # output + input buffering, smoothed

    def start(self, mic_index: int) -> float | None:
        """The reference index (fractional) played at the device time of mic sample
        `mic_index`, minus MARGIN_MS; None until both streams have stamps."""
        if self.reference is None:
            return None
        ms, rs = self.mic.stamp(), self.reference.stamp()
        if ms is None or rs is None:
            return None
        m_index, m_time, m_buffer = ms
        r_index, r_time, r_buffer = rs
        t = m_time + (mic_index - m_index) / self.mic.rate - MARGIN_MS / 1000.0
        delay = (m_buffer + r_buffer) * 1000.0
        self.delay_ms = delay if self.delay_ms is None else self.delay_ms * 0.95 + delay * 0.05
        return r_index + (t - r_time) * self.reference.rate

    def ready(self, target: float | None, n_mic: int) -> bool:
        """Has the output written the reference for the n_mic samples from `target` on? (It runs
        ahead of the mic by its latency, but a late output thread must not make it a gap.)"""
        if self.reference is None or target is None:
            return True
        end = target + n_mic * self.reference.rate / self.mic.rate
        return self.reference.total >= math.ceil(end)

    def take(self, target: float | None, n_mic: int) -> tuple[Samples, Move | None]:
        """The reference at RATE for a mic block of n_mic samples whose first one the stamps
        place at reference index `target` (start()), and how the span moved, if it did."""
        block, moved = self._reference_for(target, n_mic)
        return self._ref_rs.process(block), moved

    def _reference_for(self, target: float | None, n_mic: int) -> tuple[Samples, Move | None]:
        """The same at the reference's device rate (the result may be a view of _ref_block)."""
        assert self.reference is not None
        ratio = self.reference.rate / self.mic.rate
        moved = None
        if target is not None:
            if self._ref_pos is None:
                self._resync(round(target))
                moved = Move.STARTED
            elif self._align(target - (self._ref_pos + self._ref_frac)):
                moved = Move.REALIGNED
        if self._ref_pos is None:
            return np.zeros(round(n_mic * ratio), dtype=np.int16), moved
        want = self._ref_frac + n_mic * ratio
        n = int(want)
        self._ref_frac = want - n
        if n > len(self._ref_block):
            self._ref_block = np.zeros(n, dtype=np.int16)
        block = self._ref_block[:n]
        self.reference.read(self._ref_pos, block)
        self._ref_pos += n
        return block, moved

    def _align(self, offset: float) -> bool:
        """Take one block's stamp offset (reference samples); move the reference when the
        median of the recent ones says it is off. True when it jumped (re-aligned)."""
        self._offsets[self._n_offsets % ALIGN_BLOCKS] = offset
        self._n_offsets += 1
        if self._n_offsets < ALIGN_MIN:
            return False
        held = self._offsets[: min(self._n_offsets, ALIGN_BLOCKS)]
        error = median(held)
        assert self.reference is not None and self._ref_pos is not None
        per_ms = self.reference.rate / 1000.0
        if abs(error) > RESYNC_MS * per_ms:
            self._resync(round(self._ref_pos + self._ref_frac + error))
            return True
        if abs(error) > SLEW_MS * per_ms:
            step = 1.0 if error > 0 else -1.0
            self._ref_frac += step
            held -= step  # the offsets were measured from the old position
        return False

    def _resync(self, position: int) -> None:
        self._ref_pos = position
        self._ref_frac = 0.0
        self._n_offsets = 0
        self._ref_rs.reset()

    def reset(self) -> None:
        """A device was reopened: the stamps place the reference afresh."""
        self._ref_rs.reset()
        self._ref_pos = None
        self._ref_frac = 0.0
        self._n_offsets = 0
