"""A fixed-capacity int16 sample ring shared by one producer thread and one consumer thread.

Overflow policy is chosen per ring and always counted in samples:
- ``drop_newest`` (playback): samples that do not fit are discarded; queued audio stays intact.
- ``drop_oldest`` (capture): the oldest queued samples are discarded to make room; fresh audio wins.

Every operation holds a small lock for a few numpy slice copies; nothing allocates in the steady
state, so it is safe to call from an audio callback.
"""

from __future__ import annotations

import threading
from typing import Literal

import numpy as np
import numpy.typing as npt

Overflow = Literal["drop_newest", "drop_oldest"]


class SampleRing:
    """Single-producer/single-consumer ring of int16 samples over one preallocated array."""

    def __init__(self, capacity: int, overflow: Overflow = "drop_newest") -> None:
        if capacity <= 0:
            raise ValueError(f"ring capacity must be positive, got {capacity}")
        self._buf: npt.NDArray[np.int16] = np.zeros(capacity, dtype=np.int16)
        self._overflow = overflow
        self._lock = threading.RLock()  # read_indexed holds it around read_into
        self._read = 0  # index of the oldest sample
        self._size = 0  # samples buffered
        self.dropped = 0  # samples lost to overflow, ever
        self.written = 0  # samples accepted, ever
        self.consumed = 0  # samples read, ever
        self.cleared = 0  # samples discarded by clear(), ever

    @property
    def capacity(self) -> int:
        return len(self._buf)

    @property
    def available(self) -> int:
        """Samples buffered now."""
        return self._size

    def write(self, samples: npt.NDArray[np.int16]) -> int:
        """Append samples; returns how many were dropped by the overflow policy."""
        n = len(samples)
        cap = len(self._buf)
        with self._lock:
            dropped = 0
            free = cap - self._size
            if n > free:
                if self._overflow == "drop_newest":
                    dropped = n - free
                    n = free
                else:
                    if n > cap:  # keep only the newest `cap` samples of this block
                        dropped += n - cap
                        samples = samples[n - cap :]
                        n = cap
                    evict = n - free
                    if evict > 0:
                        evict = min(evict, self._size)
                        self._read = (self._read + evict) % cap
                        self._size -= evict
                        dropped += evict
            if n:
                start = (self._read + self._size) % cap
                first = min(n, cap - start)
                self._buf[start : start + first] = samples[:first]
                if first < n:
                    self._buf[: n - first] = samples[first:n]
                self._size += n
                self.written += n
            self.dropped += dropped
            return dropped

    def read_into(self, out: npt.NDArray[np.int16]) -> int:
        """Move up to len(out) of the oldest samples into out; returns how many."""
        cap = len(self._buf)
        with self._lock:
            n = min(len(out), self._size)
            if n:
                first = min(n, cap - self._read)
                out[:first] = self._buf[self._read : self._read + first]
                if first < n:
                    out[first:n] = self._buf[: n - first]
                self._read = (self._read + n) % cap
                self._size -= n
                self.consumed += n
            return n

    def read_indexed(self, out: npt.NDArray[np.int16]) -> tuple[int, int]:
        """read_into, also returning the index (in samples ever accepted) of the first one."""
        with self._lock:
            first = self.written - self._size
            return self.read_into(out), first

    def clear(self) -> int:
        """Discard everything buffered; returns how many samples were discarded."""
        with self._lock:
            n = self._size
            self._read = 0
            self._size = 0
            self.cleared += n
            return n

    def resize(self, capacity: int) -> None:
        """Change the capacity, keeping the newest samples that fit (call between replies)."""
        if capacity <= 0:
            raise ValueError(f"ring capacity must be positive, got {capacity}")
        with self._lock:
            if capacity == len(self._buf):
                return
            keep = min(self._size, capacity)
            old = np.empty(keep, dtype=np.int16)
            skip = self._size - keep
            start = (self._read + skip) % len(self._buf)
            first = min(keep, len(self._buf) - start)
            old[:first] = self._buf[start : start + first]
            old[first:] = self._buf[: keep - first]
            self.dropped += skip
            self._buf = np.zeros(capacity, dtype=np.int16)
            self._buf[:keep] = old
            self._read = 0
            self._size = keep
