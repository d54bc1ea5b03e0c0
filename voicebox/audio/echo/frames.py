"""The processing rate, its 10 ms frame, and the per-frame arithmetic the canceller shares."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

RATE = 16000  # processing rate: the session's rate, and a third of the work of 48 kHz
FRAME = RATE // 100  # 10 ms, the module's frame


def frame_powers(
    xs: tuple[Samples, ...], frames: int, scratch: npt.NDArray[np.float64]
) -> list[list[float]]:
    """The mean square of each 10 ms frame of each of xs, in one pass through scratch
    (preallocated, at least len(xs) * frames * FRAME long): at a few frames per block numpy's
    per-call overhead, not the arithmetic, is the cost, so the three signals share each call."""
    n = frames * FRAME
    f = scratch[: len(xs) * n]
    for i, x in enumerate(xs):
        f[i * n : (i + 1) * n] = x[:n]
    np.multiply(f, f, out=f)
    sums: list[float] = np.add.reduce(f.reshape(len(xs) * frames, FRAME), axis=1).tolist()
    return [[p / FRAME for p in sums[i * frames : (i + 1) * frames]] for i in range(len(xs))]


def median(x: npt.NDArray[np.float64]) -> float:
    """np.median's value at a tenth of its cost for a few dozen values (and without the 2 MB of
    numpy code pages its first call faults in)."""
    s = sorted(x.tolist())
    h = len(s) // 2
    return float(s[h]) if len(s) % 2 else (s[h - 1] + s[h]) / 2
