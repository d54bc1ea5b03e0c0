"""Numbered speech bursts: a code in the low bits of every sample, so the agent can tell them apart.

`encode_burst(number, samples)` keeps the top 4 bits of each sample (enough for the energy VAD)
and writes a 12-bit code into the rest: even samples carry the burst number (1..2047), odd
samples a flag bit and the position within the burst in 20-sample steps (bursts up to 2.56 s at
16 kHz). A decoder pairs each number sample with the position sample after it, so any chunking
of the stream works and silence (zeros) carries no code. Only a lossless path (pcm at the file's
rate) keeps the code; that is what the chaos bench runs.

`BurstLog` records, per connection, which (number, position) pairs arrived when.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

MAX_NUMBER = 0x7FF
POS_FLAG = 0x800
STEP = 20  # samples per position


def positions(n_samples: int) -> int:
    """How many positions a burst of n_samples carries."""
    return (n_samples + STEP - 1) // STEP


def encode_burst(number: int, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    if not 1 <= number <= MAX_NUMBER:
        raise ValueError(f"burst number must be 1..{MAX_NUMBER}, got {number}")
    if positions(len(samples)) > MAX_NUMBER + 1:
        raise ValueError(f"burst too long: {len(samples)} samples")
    u = samples.astype(np.int16).view(np.uint16) & np.uint16(0xF000)
    idx = np.arange(len(samples))
    low = np.where(idx % 2 == 0, number, POS_FLAG | (idx // STEP)).astype(np.uint16)
    return (u | low).view(np.int16)


def decode(pcm: npt.NDArray[np.int16]) -> list[tuple[int, int, int, int]]:
    """(number, first position, last position, pairs) for each burst number in pcm."""
    if len(pcm) < 2:
        return []
    low = pcm.astype(np.int16).view(np.uint16) & np.uint16(0xFFF)
    a, b = low[:-1], low[1:]
    hit = ((a & POS_FLAG) == 0) & (a != 0) & ((b & POS_FLAG) != 0)
    if not hit.any():
        return []
    numbers = a[hit].astype(np.int64)
    pos = (b[hit] & MAX_NUMBER).astype(np.int64)
    out = []
    for k in np.unique(numbers):
        p = pos[numbers == k]
        out.append((int(k), int(p.min()), int(p.max()), len(p)))
    return out


@dataclass
class BurstLog:
    """Arrivals of burst codes: (loop time, connection, number, first pos, last pos, pairs)."""

    arrivals: list[tuple[float, int, int, int, int, int]] = field(default_factory=list)

    def feed(self, connection: int, pcm: npt.NDArray[np.int16], now: float) -> None:
        for k, first, last, n in decode(pcm):
            self.arrivals.append((now, connection, k, first, last, n))
