"""Mic capture: the device thread copies blocks into a drop-oldest ring and wakes the loop; the
loop resamples to the session's input rate and cuts fixed-duration chunks for `on_chunk`, at
most STEP_MS of audio per loop callback (a backlog is worked off without stalling the loop).

The same `Capture` serves a sounddevice InputStream callback and the file input's clock. With a
`CaptureProcessor` (voicebox/audio/echo/) the loop side runs it on the device-rate
blocks first (echo cancellation needs their stamps), then resamples from its rate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import numpy as np
import numpy.typing as npt

from voicebox.audio.echo.history import StampedHistory
from voicebox.audio.echo.processor import CaptureProcessor
from voicebox.audio.port import OnChunk
from voicebox.audio.resample import StreamResampler
from voicebox.audio.ring import SampleRing
from voicebox.logs import event

log = logging.getLogger(__name__)
LAG_ALPHA = 0.1  # EWMA weight of the newest hand-off delay
STEP_MS = 100  # at most this much audio per loop callback, so a backlog never stalls the loop


class Capture:
    """Hand-off of device blocks to asyncio, re-chunking and resampling on the loop side."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_chunk: OnChunk,
        device_rate: int,
        rate: int,
        chunk_ms: int,
        queue_ms: int,
    ) -> None:
        self._loop = loop
        self._on_chunk = on_chunk
        self.device_rate = device_rate
        self.ring = SampleRing(max(1, device_rate * queue_ms // 1000), "drop_oldest")
        self._pending = False
        self._receive_handle = self._receive  # bound once, not per callback
        # device-thread counters
        self.callbacks = 0
        self.input_overflows = 0
        # loop-side state
        self.rate = rate
        self.chunk_ms = chunk_ms
        self._resampler = StreamResampler(device_rate, rate)
        self._partial: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)
        self.captured_chunks = 0
        self.handoff_lag_ms = 0.0
        self.last_handoff_ms = 0.0
        self._errors_logged = 0
        self.stamps = StampedHistory(device_rate, 0)  # the ADC time of the newest block
        self.processor: CaptureProcessor | None = None

    @property
    def chunk_samples(self) -> int:
        return max(1, self.rate * self.chunk_ms // 1000)

    @property
    def dropped_chunks(self) -> int:
        """Chunks' worth of device samples dropped (oldest first) because the loop fell behind."""
        return math.ceil(self.ring.dropped / max(1, self.device_rate * self.chunk_ms // 1000))

    # --- device thread ------------------------------------------------------------------------

    def on_block(
        self,
        block: npt.NDArray[np.int16],
        overflow: bool = False,
        adc_time: float = math.nan,
        now: float = math.nan,
    ) -> None:
        """Take one device block (mono int16 at device_rate) and, when the device gives them,
        the ADC time of its first sample and the callback's time on the same clock. Never
        raises."""
        try:
            self.callbacks += 1
            if overflow:
                self.input_overflows += 1
            if adc_time == adc_time:  # not NaN
                self.stamps.write(block, adc_time, now)
            self.ring.write(block)
            if not self._pending:
                self._pending = True
                self._loop.call_soon_threadsafe(self._receive_handle, time.monotonic())
        except Exception:  # the loop is closed: nothing to hand to
            self._pending = False

    # --- loop thread --------------------------------------------------------------------------

    @property
    def _source_rate(self) -> int:
        return self.processor.rate if self.processor is not None else self.device_rate

    def set_processor(self, processor: CaptureProcessor | None) -> None:
        """Run this processor on every block from now on (None: deliver the mic as it is)."""
        self.processor = processor
        self._resampler = StreamResampler(self._source_rate, self.rate)
        self._partial = np.zeros(0, dtype=np.int16)

    def set_rate(self, rate: int) -> None:
        """Deliver later chunks at this rate (the session's user_input_audio_format)."""
        if rate != self.rate:
            self.rate = rate
            self._resampler = StreamResampler(self._source_rate, rate)
            self._partial = np.zeros(0, dtype=np.int16)

    def set_chunk_ms(self, ms: int) -> None:
        self.chunk_ms = ms

    def _receive(self, posted: float) -> None:
        self._pending = False
        self.last_handoff_ms = (time.monotonic() - posted) * 1000.0
        self.handoff_lag_ms += LAG_ALPHA * (self.last_handoff_ms - self.handoff_lag_ms)
        step = max(1, self.device_rate * STEP_MS // 1000)
        block = np.empty(min(self.ring.available, step), dtype=np.int16)
        n, first = self.ring.read_indexed(block)
        block = block[:n]
        if self.ring.available and not self._pending:
            # the rest of a backlog waits for the next loop iteration: other callbacks (the
            # WebSocket, the status socket, the watchdog) run in between
            self._pending = True
            self._loop.call_soon(self._receive_handle, time.monotonic())
        if self.processor is not None:
            try:
                block = self.processor.process(block, first)
            except Exception as exc:  # a broken library must not silence the mic
                event(log, "audio.processing_failed", logging.ERROR, error=repr(exc))
                self.set_processor(None)
        resampled = self._resampler.process(block)
        data = np.concatenate((self._partial, resampled)) if len(self._partial) else resampled
        size = self.chunk_samples
        whole = len(data) - len(data) % size
        for start in range(0, whole, size):
            self.captured_chunks += 1
            try:
                self._on_chunk(data[start : start + size].copy())
            except Exception as exc:
                if self._errors_logged < 10:
                    self._errors_logged += 1
                    event(log, "audio.on_chunk_error", logging.ERROR, error=repr(exc))
        self._partial = data[whole:].copy()
