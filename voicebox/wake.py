"""The local wake word: microWakeWord on the processed microphone, in a thread of its own.

`WakeListener.feed(chunk, seq)` runs on the event loop and only copies the chunk into a bounded
queue (oldest dropped and counted when the thread lags). The thread takes 100 ms of chunks at a
time, woken only when they are there (measured here in real time: 1.5 % of a core woken per 20
ms chunk, 0.7 % per 100 ms), and turns the audio into 10 ms features and model probabilities; a
detection (the mean of the model's sliding window over its cutoff) outside the refractory
period calls `on_wake(seq)` on the loop through `call_soon_threadsafe`, `seq` being the number
of the last mic chunk before the word's end, so the supervisor can send what was said after it
and not the word itself. The detection comes 90-350 ms after the word's end, so the listener
keeps the sample span and level of its last chunks and finds the end there (`word_end`: the
pause after the word, or one averaging window back). The refractory period is counted in audio,
not wall time. Audio at another rate than 16 kHz is resampled first.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from voicebox.audio.port import Chunk
from voicebox.audio.resample import StreamResampler
from voicebox.config import WAKE_MODELS, WakeConfig, wake_model_problem
from voicebox.logs import event

log = logging.getLogger("voicebox.wake")

RATE = 16000  # what microWakeWord's features are computed at
QUEUE_CHUNKS = 400  # ~8 s of 20 ms chunks waiting for the thread
FEATURE_STEP = 160  # samples per microWakeWord feature (10 ms)
BATCH_S = 0.1  # audio the thread takes at once: waking for every 20 ms chunk costs 2x the CPU
LOOK_BACK = 7200  # 450 ms: a detection comes 100-350 ms after the word (espeak-ng voices)
PAUSE_GUARD = 960  # 60 ms: a detection comes at least 90 ms after the word's end
PAUSE_DB = 25.0  # a pause: this far under the loudest chunk near the word's end
PAUSE_CHUNKS = 3  # 60 ms
SPANS_KEPT = QUEUE_CHUNKS + 100  # the last chunks' spans: a whole batch and 2 s before it


class WakeError(Exception):
    """The wake word cannot run: the message says what to change."""


def load_model(cfg: WakeConfig) -> Any:
    """The configured microWakeWord model (its cutoff set from wake.threshold), or WakeError."""
    problem = wake_model_problem(cfg.model)
    if problem is not None:
        raise WakeError(f"wake.model: {problem}")
    try:
        from pymicro_wakeword import MicroWakeWord, Model
    except ImportError as exc:
        raise WakeError(
            "conversation.mode wake_word needs the wake-word library: "
            f"pip install 'pymicro-wakeword>=2.5,<3' ({exc})"
        ) from None
    try:
        if cfg.model in WAKE_MODELS:
            model = MicroWakeWord.from_builtin(Model(cfg.model))
        else:
            model = MicroWakeWord.from_config(Path(cfg.model))
    except Exception as exc:  # the library's own errors: a bad tflite, a missing runtime
        why = f"{type(exc).__name__}: {exc}"
        raise WakeError(f"wake.model {cfg.model!r} does not load: {why}") from None
    if cfg.threshold is not None:
        model.probability_cutoff = cfg.threshold
    return model


def new_features() -> Any:
    from pymicro_wakeword import MicroWakeWordFeatures

    return MicroWakeWordFeatures()


class Span(NamedTuple):
    """One mic chunk the detector took: its number, where it ends (16 kHz samples), its level."""

    seq: int
    end: int
    level_db: float


def level_db(chunk: Chunk) -> float:
    """The chunk's RMS in dB full scale (-120 for silence)."""
    if not len(chunk):
        return -120.0
    power = float(np.mean(np.square(chunk, dtype=np.float64))) / 32768.0**2
    return 10.0 * math.log10(max(power, 1e-12))


def word_end(spans: list[Span], detected_at: int, lag: int) -> int:
    """The number of the first chunk after the wake word, the word detected at `detected_at`.

    The first pause in the LOOK_BACK before the detection that starts at least PAUSE_GUARD
    before it (PAUSE_CHUNKS chunks in a row PAUSE_DB under the loudest there; shorter than the
    gap people leave after a wake word, longer than a stop consonant): the word ended there and
    nothing was said yet. With no pause (the question said straight on), the chunk `lag` back.
    """
    if not spans:
        return 0
    near = [s for s in spans if detected_at - LOOK_BACK <= s.end <= detected_at]
    if near:
        quiet = max(s.level_db for s in near) - PAUSE_DB
        run = 0
        for i, s in enumerate(near):
            run = run + 1 if s.level_db <= quiet else 0
            if run == PAUSE_CHUNKS and near[i - run + 1].end <= detected_at - PAUSE_GUARD:
                return near[i - run + 1].seq
    estimate = detected_at - lag
    holding = spans[-1].seq
    for s in reversed(spans):
        if s.end <= estimate:  # this chunk ends before the word does: the later one holds its end
            return holding
        holding = s.seq
    return holding


class WakeDetector:
    """The model over a stream of mic chunks, with the refractory period; no thread, no I/O."""

    def __init__(self, cfg: WakeConfig, model: Any | None = None) -> None:
        self.cfg = cfg
        self.model = model if model is not None else load_model(cfg)
        self.wake_word: str = str(getattr(self.model, "wake_word", cfg.model))
        self._features = new_features()
        self._resampler: StreamResampler | None = None
        self._rate = RATE
        self.samples = 0  # 16 kHz samples processed
        self.heard = 0  # 16 kHz samples the features have consumed (10 ms each)
        self.detected_at = 0  # `heard` at the last detection
        self._last_detection = -(10**12)
        self.detections = 0
        self.refractory_ignored = 0

    @property
    def lag_samples(self) -> int:
        """How long after the word's end a detection comes: the model's averaging window and
        one inference more (okay_nabu: 6 x 30 ms; measured on espeak-ng speech, 160-180 ms)."""
        window = int(getattr(self.model, "sliding_window_size", 5))
        stride = int(getattr(self.model, "stride", 3))
        return (window + 1) * stride * FEATURE_STEP

    def process(self, chunk: Chunk, rate: int = RATE) -> bool:
        """Feed one chunk; True when it completes a detection outside the refractory period."""
        if rate != self._rate:
            self._rate = rate
            self._resampler = StreamResampler(rate, RATE) if rate != RATE else None
        samples = self._resampler.process(chunk) if self._resampler is not None else chunk
        self.samples += len(samples)
        detected = False
        pcm = np.ascontiguousarray(samples, dtype="<i2").tobytes()
        for features in self._features.process_streaming(pcm):
            self.heard += FEATURE_STEP
            if not self.model.process_streaming(features):
                continue
            if self.heard - self._last_detection < self.cfg.refractory_s * RATE:
                self.refractory_ignored += 1
                continue
            self._last_detection = self.detected_at = self.heard
            self.detections += 1
            self.model.reset()  # a fresh window: one word is one detection
            detected = True
        return detected

    def close(self) -> None:
        close = getattr(self.model, "close", None)
        if callable(close):
            close()


class WakeListener:
    """Runs a WakeDetector on the mic chunks fed to it, in its own thread (module docstring)."""

    def __init__(
        self,
        cfg: WakeConfig,
        loop: asyncio.AbstractEventLoop,
        on_wake: Callable[[int], None],
        model: Any | None = None,
    ) -> None:
        self.cfg = cfg
        self._loop = loop
        self._on_wake = on_wake
        self.detector = WakeDetector(cfg, model)
        self._queue: deque[tuple[Chunk, int, int]] = deque()
        self._ready = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="wake", daemon=True)
        self._spans: deque[Span] = deque(maxlen=SPANS_KEPT)
        self.dropped = 0
        self._queued_s = 0.0  # audio waiting in the queue
        self.cpu_s = 0.0  # the thread's CPU time

    @property
    def wake_word(self) -> str:
        return self.detector.wake_word

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.detector.close()

    def feed(self, chunk: Chunk, seq: int, rate: int) -> None:
        """A processed mic chunk (on the loop): queued for the thread, never blocking."""
        with self._ready:
            if len(self._queue) >= QUEUE_CHUNKS:
                old, _, old_rate = self._queue.popleft()
                self._queued_s -= len(old) / old_rate
                self.dropped += 1
            self._queue.append((chunk.copy(), seq, rate))
            self._queued_s += len(chunk) / rate
            if self._queued_s >= BATCH_S:
                self._ready.notify()

    def cpu_share(self) -> float | None:
        """The thread's CPU time per second of audio (0.01: 1 % of one core)."""
        audio_s = self.detector.samples / RATE
        return self.cpu_s / audio_s if audio_s else None

    def snapshot(self) -> dict[str, Any]:
        share = self.cpu_share()
        d = self.detector
        return {
            "model": self.cfg.model,
            "wake_word": d.wake_word,
            "detections": d.detections,
            "refractory_ignored": d.refractory_ignored,
            "dropped_chunks": self.dropped,
            "audio_s": round(d.samples / RATE, 1),
            "cpu_percent": round(share * 100, 3) if share is not None else None,
        }

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._stopped and self._queued_s < BATCH_S:
                    self._ready.wait()
                if self._stopped:
                    return
                batch = list(self._queue)
                self._queue.clear()
                self._queued_s = 0.0
            rate = batch[0][2]
            if any(r != rate for _, _, r in batch):  # a device reopened at another rate
                batch = [b for b in batch if b[2] == batch[-1][2]]
                rate = batch[-1][2]
            t0 = time.thread_time()
            try:
                detected = self.detector.process(np.concatenate([c for c, _, _ in batch]), rate)
            except Exception as exc:  # a model failure must not end the thread silently
                event(log, "wake.failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
                detected = False
            self.cpu_s += time.thread_time() - t0
            first = self.detector.samples - sum(len(c) for c, _, _ in batch) * RATE // rate
            for chunk, seq, _ in batch:
                first += len(chunk) * RATE // rate
                self._spans.append(Span(seq, first, level_db(chunk)))
            if detected:
                self._loop.call_soon_threadsafe(self._on_wake, self.word_end_seq() - 1)

    def word_end_seq(self) -> int:
        """The first chunk after the word (`word_end`): the supervisor sends from it."""
        d = self.detector
        return word_end(list(self._spans), d.detected_at, d.lag_samples)


def detections_in(cfg: WakeConfig, samples: Chunk, chunk: int = 320) -> list[float]:
    """Where the wake word is heard in 16 kHz audio: the end of each detection, in seconds."""
    detector = WakeDetector(cfg)
    found: list[float] = []
    try:
        for start in range(0, len(samples), chunk):
            if detector.process(samples[start : start + chunk]):
                found.append(detector.samples / RATE)
    finally:
        detector.close()
    return found
