"""The canceller's meters: ERLE, the echo and voice levels at the mic, and the stats reported."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voicebox.audio.echo.frames import RATE
from voicebox.audio.echo.history import MARGIN_MS

ERLE_FRAMES = 500  # ERLE: the median over the last 5 s of frames with the agent audible
ERLE_CAP_DB = 60.0  # a frame suppressed to nothing counts as this much
ERLE_MIN = 100  # and is reported once a second of echo has been heard
LEVEL_FRAMES = 1000  # the echo and voice levels: over the last 10 s of such frames
LEVEL_MIN = 50  # and only once half a second of them is in (a short first request)
VOICE_MARGIN_DB = 0.0  # the user's voice under the echo + this: barge-in by voice mostly fails
LINEAR_VOICE_MARGIN_DB = -10.0  # the same with speexdsp's filter feeding AEC3
FULL_SCALE_POWER = 32768.0**2


@dataclass
class ProcessingStats:
    """Figures for status, the health line and the metrics file."""

    enabled: bool = False
    echo_cancellation: bool = False
    rate: int = RATE
    erle_db: float | None = None  # mic vs processed power while the agent is audible
    delay_ms: float | None = None  # output + input buffering, from the stamps
    aec_hint_ms: float = MARGIN_MS  # what AEC3's estimator is told remains
    cpu_percent: float = 0.0  # of one core, since start
    cpu_s: float = 0.0
    frames: int = 0
    aec_frames: int = 0  # frames through AEC3 (the others had no agent audio to cancel)
    resyncs: int = 0  # the stamps moved the reference span (reopen, latency change, drift)
    resets: int = 0
    holds: int = 0  # mic blocks held back until the output had written their reference
    converged: bool = False  # the canceller is trusted: full duplex
    leaks: int = 0  # frames of lost echo caught after trust (each starts the gate again)
    gated_s: float = 0.0  # mic muted while the agent spoke and the canceller was not yet trusted
    echo_dbfs: float | None = None  # the agent's echo at the mic (frames of echo alone)
    voice_dbfs: float | None = None  # the user's voice at the mic (the agent silent)
    linear_echo: bool = False  # speexdsp's MDF has converged and feeds AEC3
    double_talk_frames: int = 0  # frames sent from MDF's output: the user over the agent


class ErleMeter:
    """ERLE (mic over processed power, dB) of the last ERLE_FRAMES frames of echo, as a median:
    the user talking over the agent (double talk, little "enhancement") is a minority of them
    and does not drag it down."""

    def __init__(self) -> None:
        self._db = np.full(ERLE_FRAMES, np.nan)  # per-frame dB, a ring
        self._n = 0

    def add(self, erle_db: float) -> None:
        self._db[self._n % ERLE_FRAMES] = min(ERLE_CAP_DB, erle_db)
        self._n += 1

    def median_db(self) -> float | None:
        """The median, or None until ERLE_MIN frames are in."""
        if self._n < ERLE_MIN:
            return None
        return round(float(np.nanmedian(self._db)), 1)


class LevelRing:
    """The level (dBFS, mean power) of the last LEVEL_FRAMES frames of one kind, once LEVEL_MIN
    are in: the active level of a voice, as loud syllables weigh on a listener and on AEC3."""

    def __init__(self) -> None:
        self._power = np.zeros(LEVEL_FRAMES)
        self._n = 0

    def add(self, power: float) -> None:
        self._power[self._n % LEVEL_FRAMES] = power
        self._n += 1

    def dbfs(self) -> float | None:
        if self._n < LEVEL_MIN:
            return None
        mean = float(self._power[: min(self._n, LEVEL_FRAMES)].mean())
        return round(10 * math.log10(mean / FULL_SCALE_POWER + 1e-12), 1)


def echo_over_voice(stats: ProcessingStats) -> bool:
    """Is the agent's echo at the mic so much louder than the user's voice that AEC3's suppressor
    takes most of the user's barge-ins for echo? Bench rooms (voice minus echo, as measured here
    -> barge-ins detected), AEC3 alone: +7.6 dB -> 100 %, +4.0 -> 75 %, -2.2 -> 50 %; with
    speexdsp's filter feeding it: -4.4 -> 92 %, -8.4 -> 92 %, -12.4 -> 67 %, -16.4 -> 42 %. Only
    the clear case is reported (below VOICE_MARGIN_DB, or LINEAR_VOICE_MARGIN_DB once the filter
    feeds AEC3), so a warning means voice barge-in mostly fails, not that it might."""
    if stats.echo_dbfs is None or stats.voice_dbfs is None:
        return False
    margin = LINEAR_VOICE_MARGIN_DB if stats.linear_echo else VOICE_MARGIN_DB
    return stats.voice_dbfs - stats.echo_dbfs < margin
