"""The leak check: is a loud processed frame echo the canceller lost, or the user talking?

Once the canceller is trusted, a loud processed frame while the agent is audible is either the
user talking over it or echo the canceller lost (the path moved: through PulseAudio an underrun
shifts it by tens of ms without the stamps showing it). `EchoLeakCheck` tells them apart by
correlation with the reference; a leak is muted and trust starts again (`gate`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from voicebox.audio.echo.frames import FRAME, RATE, Samples

LEAK_DBFS = -45.0  # a processed frame this loud while the agent is audible starts it again
LEAK_POWER = (32768.0 * 10 ** (LEAK_DBFS / 20)) ** 2
LEAK_LAG_S = 0.25  # how far behind the aligned reference a leaking echo is looked for
LEAK_WINDOW = 16 * (RATE // 100)  # the newest 160 ms of processed audio is compared
LEAK_CORRELATION = 0.7  # processed audio this correlated with the reference is the agent's voice
LEAK_EVERY = 4  # a frame found not to be echo spares the check for the next 3 (its FFTs are the
# costliest part while the user talks over the agent; under qemu they starved the event loop)


def _halved(x: Samples) -> npt.NDArray[np.float64]:
    """x at half its rate: each pair of samples summed (the first dropped when x is odd)."""
    y = x[len(x) % 2 :].astype(np.float64)
    halved: npt.NDArray[np.float64] = y[0::2] + y[1::2]
    return halved


class EchoLeakCheck:
    """Is the newest processed audio the agent's own voice? The largest normalised
    cross-correlation of its last LEAK_WINDOW samples with the reference over the LEAK_LAG_S
    before them (an FFT only when asked: frames the canceller did not silence). 160 ms: over
    40 ms two different synthetic voices correlate up to 0.98, over 160 ms at most 0.61, while
    echo through a room stays above 0.72 (95 % of windows). Computed at half the rate (pairs of
    samples summed): the voice below 4 kHz is what correlates, at a third of the cost."""

    def __init__(self) -> None:
        self._span = int(LEAK_LAG_S * RATE) + LEAK_WINDOW
        self._far: Samples = np.zeros(self._span, dtype=np.int16)
        self._out: Samples = np.zeros(LEAK_WINDOW, dtype=np.int16)
        self._n = 1 << ((self._span + LEAK_WINDOW) // 2 - 1).bit_length()
        self._far_ctx, self._out_ctx = self._far, self._out

    def feed(self, far: Samples, out: Samples) -> None:
        """Append one chunk of reference and processed audio (whole frames)."""
        self._far_ctx = np.concatenate((self._far, far))
        self._out_ctx = np.concatenate((self._out, out))
        self._far = self._far_ctx[-self._span :]
        self._out = self._out_ctx[-LEAK_WINDOW:]

    def leaking(self, frame: int, frames: int) -> bool:
        """Frame `frame` of the `frames` fed last: is it echo?"""
        end = len(self._out_ctx) - (frames - 1 - frame) * FRAME
        w = _halved(self._out_ctx[end - LEAK_WINDOW : end])
        fend = len(self._far_ctx) - (frames - 1 - frame) * FRAME
        f = _halved(self._far_ctx[max(0, fend - self._span) : fend])
        ww = float(np.dot(w, w))
        win = len(w)
        if len(f) < win or ww <= 0.0:
            return False
        c = np.fft.irfft(np.fft.rfft(f, self._n) * np.conj(np.fft.rfft(w, self._n)), self._n)
        c = c[: len(f) - win + 1]
        cs = np.concatenate(([0.0], np.cumsum(f * f)))
        energy = cs[win:] - cs[: len(cs) - win]
        ncc = np.abs(c) / np.sqrt(energy * ww + 1.0)
        return bool(ncc.max() >= LEAK_CORRELATION)
