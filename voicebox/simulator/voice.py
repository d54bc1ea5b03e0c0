"""Deterministic speech-like audio: harmonics of a gliding pitch, modulated at syllable rate.

Used as the simulated agent's voice and, in tests and the demo, as a simulated user's utterance.
It is not speech, but an energy VAD sees it exactly like speech (voiced syllables and gaps).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from voicebox.audio.formats import AudioFormat, encode


@lru_cache(maxsize=32)
def _speech_like(seconds: float, rate: int, f0: float, level: float, harmonics: int) -> bytes:
    n = max(0, round(seconds * rate))
    t = np.arange(n, dtype=np.float64) / rate
    # Pitch glides +-10 % at 0.7 Hz, like intonation; phase is the integral of frequency.
    freq = f0 * (1.0 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(freq) / rate
    # 1/k harmonics (a band-limited sawtooth, peak below 1.6 for any count) under Nyquist.
    top = [k for k in range(1, harmonics + 1) if k == 1 or k * f0 * 1.1 < 0.45 * rate]
    wave = sum(np.sin(k * phase) / k for k in top)
    # Syllables at 4 Hz with a short gap between them (the envelope is zero ~25 % of the time).
    syllable = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.0, None) ** 0.5
    # Fade in and out over 20 ms so the clip has no clicks.
    fade = np.minimum(1.0, np.minimum(t, (n - 1) / rate - t) / 0.02) if n else t
    samples = wave * syllable * np.clip(fade, 0.0, 1.0) * (level * 32767 / 1.6)
    out: npt.NDArray[np.int16] = np.clip(samples, -32768, 32767).astype(np.int16)
    return out.tobytes()


def speech_like(
    seconds: float,
    rate: int = 16000,
    *,
    f0: float = 140.0,
    level: float = 0.5,
    harmonics: int = 5,
) -> npt.NDArray[np.int16]:
    """`seconds` of speech-like int16 mono samples at `rate`; same arguments, same samples.
    harmonics: 5 keeps it below 1 kHz; a voice's harmonics reach 3-4 kHz (16 to 20 at 180 Hz)."""
    data = _speech_like(round(seconds, 3), rate, f0, level, harmonics)
    return np.frombuffer(data, dtype=np.int16)


def silence(seconds: float, rate: int = 16000) -> npt.NDArray[np.int16]:
    return np.zeros(round(seconds * rate), dtype=np.int16)


def speech_bytes(
    seconds: float, fmt: AudioFormat, *, f0: float = 140.0, harmonics: int = 5
) -> bytes:
    """The speech-like clip encoded in a wire format (PCM or μ-law at the format's rate)."""
    return encode(speech_like(seconds, fmt.rate, f0=f0, harmonics=harmonics), fmt)
