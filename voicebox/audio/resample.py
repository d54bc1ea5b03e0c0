"""Sample-rate conversion: `StreamResampler` and `convert` (soxr, HQ), and `FrameResampler`.

`StreamResampler` is stateful, for audio that arrives in chunks (capture, playback); `convert`
is one-shot, for whole clips (announcements, file inputs). soxr HQ releases its output in blocks
(60-100 ms when fed 20 ms chunks), so a chunk's audio can wait for later chunks or the flush.
`FrameResampler` (numpy, a windowed-sinc polyphase filter) releases the output of every input
sample after a fixed delay of half its filter (about 2.3 ms); the phone bridge uses it.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import soxr

Samples = npt.NDArray[np.int16]


class StreamResampler:
    """Streaming int16 mono resampler; output of chunked input equals one-shot conversion."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream = (
            None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, "int16")
        )

    def process(self, samples: Samples, last: bool = False) -> Samples:
        """Resample the next chunk; `last=True` flushes the filter tail and resets the state."""
        if self._stream is None:
            return samples
        out: Samples = self._stream.resample_chunk(np.ascontiguousarray(samples), last=last)
        if last:
            self._stream.clear()
        return out

    def reset(self) -> None:
        """Forget buffered input (after an interrupt)."""
        if self._stream is not None:
            self._stream.clear()


class FrameResampler:
    """Streaming int16 mono resampler that holds back only half its filter.

    A Kaiser-windowed sinc low-pass (cutoff at 0.45 of the lower rate, stopband from 0.5 of it,
    60 dB) applied in polyphase form for the ratio L/M of the two rates. Output sample k is the
    signal at time k / to_rate (no shift); it is released once the input reaches half a filter
    past it. So `to_rate / from_rate` output samples per input sample after that delay, and the
    output of chunked input equals one-shot conversion: ceil(n * to_rate / from_rate) samples.
    """

    CUTOFF = 0.45  # -6 dB point, as a fraction of the lower rate
    TRANSITION = 0.1  # transition band width, as a fraction of the lower rate
    STOPBAND_DB = 60.0
    _BLOCK = 4096  # outputs computed at once (bounds the index matrix)

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
        self.from_rate = from_rate
        self.to_rate = to_rate
        g = math.gcd(from_rate, to_rate)
        self._up = to_rate // g  # L
        self._down = from_rate // g  # M
        low = min(from_rate, to_rate)
        # Kaiser's estimate of the length for the attenuation and transition, in input samples.
        length = (self.STOPBAND_DB - 7.95) / (14.36 * self.TRANSITION * low / from_rate)
        self.half = max(1, math.ceil(length / 2))  # H: input samples on each side of an output
        self._taps = self._design(self.CUTOFF * low / from_rate)
        self._buf: npt.NDArray[np.float64] = np.zeros(0)
        self._base = 0  # input index of _buf[0]
        self._n_in = 0  # input samples since the last reset
        self._k = 0  # next output index
        self.reset()

    @property
    def delay_s(self) -> float:
        """How long each input sample's output is held back: half the filter."""
        return 0.0 if self.from_rate == self.to_rate else self.half / self.from_rate

    def _design(self, cutoff: float) -> npt.NDArray[np.float64]:
        """Taps per phase, shape (L, 2H); row p serves outputs p/L of a sample after an input."""
        h = self.half
        beta = 0.1102 * (self.STOPBAND_DB - 8.7)
        phase = np.arange(self._up, dtype=np.float64)[:, None] / self._up
        # Distance (input samples) from the output to inputs base-H+1 .. base+H.
        d = phase - (np.arange(2 * h, dtype=np.float64)[None, :] - (h - 1))
        inside = np.clip(1.0 - (d / h) ** 2, 0.0, None)
        taps = np.sinc(2 * cutoff * d) * np.i0(beta * np.sqrt(inside)) / np.i0(beta)
        taps[np.abs(d) >= h] = 0.0
        taps /= taps.sum(axis=1, keepdims=True)  # unity gain at DC in every phase
        out: npt.NDArray[np.float64] = taps
        return out

    def process(self, samples: Samples, last: bool = False) -> Samples:
        """Resample the next chunk; `last=True` flushes the delay tail (zeros) and resets."""
        if self.from_rate == self.to_rate:
            return samples
        self._buf = np.concatenate((self._buf, np.asarray(samples, dtype=np.float64)))
        self._n_in += len(samples)
        up, down, h = self._up, self._down, self.half
        if last:
            end = -(-self._n_in * up // down)  # ceil: every output up to the last input
            self._buf = np.concatenate((self._buf, np.zeros(h)))
        else:
            end = max(self._k, -(-(self._n_in - h) * up // down))  # those with H inputs ahead
        parts = [
            self._compute(k, min(end, k + self._BLOCK)) for k in range(self._k, end, self._BLOCK)
        ]
        out: Samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        if last:
            self.reset()
        else:
            self._k = end
            keep = (end * down) // up - h + 1  # first input the next output needs
            self._buf = self._buf[keep - self._base :]
            self._base = keep
        return out

    def _compute(self, k0: int, k1: int) -> Samples:
        pos = np.arange(k0, k1, dtype=np.int64) * self._down
        base, phase = pos // self._up, pos % self._up
        first = base - self.half + 1 - self._base
        rows = self._buf[first[:, None] + np.arange(2 * self.half)[None, :]]
        y = (rows * self._taps[phase]).sum(axis=1)
        out: Samples = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
        return out

    def reset(self) -> None:
        """Forget buffered input (after an interrupt, or a flush)."""
        self._buf = np.zeros(self.half, dtype=np.float64)  # silence before the first sample
        self._base = -self.half
        self._n_in = 0
        self._k = 0


def convert(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    """Resample a whole int16 mono clip."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    out: Samples = soxr.resample(np.ascontiguousarray(samples), from_rate, to_rate, "HQ")
    return out
