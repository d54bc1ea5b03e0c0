"""Energy voice-activity detection in audio time (no clock): speech start, end after hangover."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class SpeechStart:
    at_s: float  # audio time of the first voiced frame


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    at_s: float  # audio time where the last voiced frame ended
    duration_s: float


class EnergyVad:
    """Frames of `frame_ms`; voiced when RMS >= `threshold_dbfs`.

    Speech starts after `start_ms` of consecutive voiced frames and ends after `hangover_ms` of
    consecutive unvoiced ones, so syllable gaps shorter than the hangover do not split a turn.
    """

    def __init__(
        self,
        rate: int,
        *,
        frame_ms: int = 20,
        threshold_dbfs: float = -40.0,
        start_ms: int = 60,
        hangover_ms: int = 600,
    ) -> None:
        self.frame = max(1, rate * frame_ms // 1000)
        self.frame_s = self.frame / rate
        ref = 32768.0 * 10 ** (threshold_dbfs / 20)
        self._threshold_sq = ref * ref
        self._start_frames = max(1, -(-start_ms // frame_ms))
        self._hang_frames = max(1, -(-hangover_ms // frame_ms))
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames = 0  # frames consumed so far (audio time = frames * frame_s)
        self._voiced_run = 0
        self._unvoiced_run = 0
        self.in_speech = False
        self._start_frame = 0
        self._last_voiced_end = 0

    @property
    def time_s(self) -> float:
        return self._frames * self.frame_s

    def feed(self, samples: npt.NDArray[np.int16]) -> list[SpeechStart | SpeechEnd]:
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        usable = samples.size - samples.size % self.frame
        self._pending = samples[usable:].copy()
        if not usable:
            return []
        frames = samples[:usable].astype(np.float64).reshape(-1, self.frame)
        voiced = (frames * frames).mean(axis=1) >= self._threshold_sq
        events: list[SpeechStart | SpeechEnd] = []
        for v in voiced.tolist():
            self._frames += 1
            if v:
                self._voiced_run += 1
                self._unvoiced_run = 0
                self._last_voiced_end = self._frames
                if not self.in_speech and self._voiced_run >= self._start_frames:
                    self.in_speech = True
                    self._start_frame = self._frames - self._voiced_run
                    events.append(SpeechStart(self._start_frame * self.frame_s))
            else:
                self._voiced_run = 0
                self._unvoiced_run += 1
                if self.in_speech and self._unvoiced_run >= self._hang_frames:
                    self.in_speech = False
                    end = self._last_voiced_end
                    events.append(
                        SpeechEnd(end * self.frame_s, (end - self._start_frame) * self.frame_s)
                    )
        return events
