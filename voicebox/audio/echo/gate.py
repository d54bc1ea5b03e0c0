"""The trust gate: the mic muted while the agent is audible and the canceller is not trusted.

Until AEC3 is trusted (at start, after a device reopen or a re-alignment) the mic is muted
while the agent is audible: half duplex for the first seconds of agent speech, so the agent never
hears itself; full duplex from then on. A fresh canceller lets the first 100-200 ms of echo
through at the room's level, and through PulseAudio the first two seconds' stamps put the
reference 30-50 ms behind the echo, which AEC3 cancels well mid-syllable while every onset
leaks. So trust needs the alignment to have held SETTLE_S and CONVERGED_FRAMES frames showing
the canceller at work (echo suppressed by CONVERGED_DB, or a quiet mic once the agent has spoken
longer than any echo delay); a frame that leaks (above LEAK_DBFS, and found echo by the leak
check) starts the count again. "The agent is audible" is the aligned reference or, when the
engine says so, a reply being played: the gate does not depend on the alignment it protects.
The meters are fed from the same per-frame powers.
"""

from __future__ import annotations

import math

import numpy as np

from voicebox.audio.echo.frames import FRAME, RATE, Samples, frame_powers
from voicebox.audio.echo.leak import LEAK_EVERY, LEAK_POWER, EchoLeakCheck
from voicebox.audio.echo.meters import ErleMeter, LevelRing, ProcessingStats

ACTIVE_DBFS = -50.0  # reference above this: the agent is audible
ACTIVE_POWER = (32768.0 * 10 ** (ACTIVE_DBFS / 20)) ** 2
ACTIVE_HOLD_S = 0.3  # the room's tail keeps echoing this long after the reference stops
CONVERGED_DB = 20.0  # a frame of echo suppressed this much shows the canceller has converged
CONVERGED_FRAMES = 50  # this many such frames (0.5 s of echo) and the canceller is trusted
SETTLE_S = 2.0  # no trust until the alignment has held this long (since a reset or re-alignment)
QUIET_AFTER_FRAMES = 30  # a quiet mic proves no echo only this long into the agent's speech


class EchoGate:
    """Per processed chunk: is the canceller trusted, which frames to mute, and the meters.

    Loop side only; counts frames, gated time and leaks into `stats`.
    """

    def __init__(self, stats: ProcessingStats, reference: bool) -> None:
        self.stats = stats
        self._reference = reference  # is there a far end at all (echo cancellation on)?
        self._far_run = 0  # consecutive frames the agent has been audible (aligned reference)
        self._leak = EchoLeakCheck()
        self._leak_spared = 0  # frames left that the last "not echo" verdict covers
        self._leak_stale = False  # frames went by without AEC3: the leak check starts afresh
        self._active_until = -1.0  # audio time (s) until which the agent counts as audible
        self._audio_s = 0.0
        self.erle = ErleMeter()
        self.echo_level = LevelRing()  # mic frames holding only the agent's echo
        self.voice_level = LevelRing()  # mic frames holding the user, the agent silent
        self._scratch = np.empty(3 * 8 * FRAME)  # meter()'s float copies of far, near, out
        self._good_frames = 0  # frames showing convergence since the last reset or re-alignment
        self._aligned_at = 0.0  # audio time of the last reset or re-alignment

    def meter(self, near: Samples, far: Samples | None, out: Samples, playing: bool) -> None:
        """ERLE and convergence from per-frame powers; mutes `out` (in place) where the agent
        is audible and the canceller is not trusted yet. far None with a reference: AEC3 at
        rest, the agent silent (only the user's level is measured)."""
        frames = len(near) // FRAME
        self.stats.frames += frames
        if len(self._scratch) < 3 * frames * FRAME:
            self._scratch = np.empty(3 * frames * FRAME)
        if far is None:
            self._audio_s += frames * FRAME / RATE
            if self._reference:  # AEC3 at rest: the agent is silent
                self._far_run = 0
                self._leak_stale = True
                near_p, out_p = frame_powers((near, out), frames, self._scratch)
                for p_near, p_out in zip(near_p, out_p, strict=True):
                    if p_out >= ACTIVE_POWER:  # speech left after noise suppression
                        self.voice_level.add(p_near)
            return
        powers = frame_powers((far, near, out), frames, self._scratch)
        if self._leak_stale:  # what it held is from before a quiet spell
            self._leak = EchoLeakCheck()
            self._leak_stale = False
        self._leak.feed(far, out)
        for i, (p_far, p_near, p_out) in enumerate(zip(*powers, strict=True)):
            self._audio_s += FRAME / RATE
            if p_far >= ACTIVE_POWER:
                self._active_until = self._audio_s + ACTIVE_HOLD_S
            audible = self._audio_s <= self._active_until
            self._far_run = self._far_run + 1 if audible else 0
            trusted = self.trusted()
            if not audible:
                if not trusted and playing:
                    out[i * FRAME : (i + 1) * FRAME] = 0
                    self.stats.gated_s += FRAME / RATE
                elif not playing and p_out >= ACTIVE_POWER:
                    self.voice_level.add(p_near)  # the agent silent: the user
                continue
            erle = 10 * math.log10((p_near + 1.0) / (p_out + 1.0))
            if p_near >= ACTIVE_POWER:
                self.erle.add(erle)
            if trusted and p_out < LEAK_POWER and p_near >= ACTIVE_POWER:
                self.echo_level.add(p_near)  # cancelled to quiet: it was echo alone
            if trusted and p_out >= LEAK_POWER:
                if self._leak_spared > 0:
                    self._leak_spared -= 1
                elif self._leak.leaking(i, frames):
                    self._good_frames = 0
                    trusted = False
                    self.stats.leaks += 1
                else:
                    self._leak_spared = LEAK_EVERY - 1
            if not trusted:
                if p_out >= LEAK_POWER:
                    self._good_frames = 0
                elif p_near < ACTIVE_POWER:
                    self._good_frames += self._far_run > QUIET_AFTER_FRAMES
                elif erle >= CONVERGED_DB:
                    self._good_frames += 1
                out[i * FRAME : (i + 1) * FRAME] = 0
                self.stats.gated_s += FRAME / RATE

    def trusted(self) -> bool:
        return (
            self._good_frames >= CONVERGED_FRAMES and self._audio_s - self._aligned_at >= SETTLE_S
        )

    def restart(self) -> None:
        """A new echo path for AEC3 (MDF's output now feeds it): trust it once it has learned."""
        self._good_frames = 0

    def realigned(self) -> None:
        """The reference span moved: trust AEC3 again once it has learned and SETTLE_S held."""
        self._good_frames = 0
        self._aligned_at = self._audio_s

    def reset(self) -> None:
        """A device was reopened: trust and the leak check start over."""
        self.realigned()
        self._leak = EchoLeakCheck()
        self._leak_spared = 0
