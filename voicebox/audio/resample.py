"""Sample-rate conversion: the only resampling code in voicebox (soxr, HQ).

`StreamResampler` is stateful, for audio that arrives in chunks (capture, playback); `convert`
is one-shot, for whole clips (announcements, file inputs).
"""

from __future__ import annotations

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


def convert(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    """Resample a whole int16 mono clip."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    out: Samples = soxr.resample(np.ascontiguousarray(samples), from_rate, to_rate, "HQ")
    return out
