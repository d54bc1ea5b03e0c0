"""Double talk: is the user talking over the agent? Decided per 10 ms frame, pure.

AEC3's residual suppressor takes a user about as loud as the echo for more echo and removes
half of what they say, in 30-150 ms stretches (bench_doubletalk: 81 % of 30 ms windows
delivered, no utterance whole), while speexdsp's MDF output keeps the user whole with the echo
in it 21-24 dB down. The user is talking when both hear more than echo for ONSET_FRAMES frames
in a row: AEC3's output within MARGIN_DB of the mic (echo alone comes out 20-50 dB under it
once AEC3 is trusted), and MDF's output MDF_MARGIN_DB over what MDF leaves of the echo alone (a
baseline learned from frames of echo alone, as it varies with room and voice; it keeps out echo
that AEC3 lost). From then, for HANG_FRAMES after the last such frame and while MDF still hears
more than echo (HOLD_MARGIN_DB), the processor sends MDF's frames instead of AEC3's, so the
stretches AEC3 cuts between the user's loud frames arrive too; the echo after the user stops is
AEC3's again. The first 20-30 ms of an utterance are AEC3's.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

MARGIN_DB = 12.0  # bench_doubletalk and bench_echo: 15-18 dB let the echo of a long room in
HANG_FRAMES = 35  # 350 ms: 200-250 ms left up to 15 % of an utterance cut
QUIET_POWER = 1.0e3  # output under this (-60 dBFS) is nobody talking
ONSET_FRAMES = 3  # frames in a row that start it: 1-2 let the echo of a long room in
MDF_MARGIN_DB = 10.0  # and MDF's output this far over what it leaves of the echo alone
MDF_BASELINE_DB = -10.0  # what MDF leaves of the echo (its output over its estimate), at first
HOLD_MARGIN_DB = 5.0  # in the hangover, MDF's output this far over it
TRACK = 0.02  # the baseline follows frames of echo alone with this weight (~0.5 s)


class DoubleTalk:
    """Feeds on the mic, MDF's output and AEC3's, frame by frame; remembers the onset run, the
    hangover and what MDF leaves of echo alone."""

    def __init__(self, frame: int) -> None:
        self.frame = frame
        self._ratio = 10 ** (-MARGIN_DB / 10)
        self._hang = 0
        self._run = 0
        self.mdf_baseline_db = MDF_BASELINE_DB

    def frames(self, mic: Samples, linear: Samples, processed: Samples) -> npt.NDArray[np.bool_]:
        """One verdict per whole frame of `mic`, MDF's output and AEC3's (equal lengths)."""
        n = min(len(mic), len(linear), len(processed)) // self.frame
        m = mic[: n * self.frame].astype(np.float64).reshape(n, self.frame)
        lin = linear[: n * self.frame].astype(np.float64).reshape(n, self.frame)
        out = processed[: n * self.frame].astype(np.float64).reshape(n, self.frame)
        p_mic = np.mean(m * m, axis=1)
        p_lin = np.mean(lin * lin, axis=1)
        est = m - lin
        p_est = np.mean(est * est, axis=1)
        p_out = np.mean(out * out, axis=1)
        mdf_db = 10 * np.log10((p_lin + 1.0) / (p_est + 1.0))
        passed = (p_out > p_mic * self._ratio) & (p_out > QUIET_POWER)
        verdicts = np.zeros(n, dtype=np.bool_)
        for k in range(n):
            uncancelled = mdf_db[k] > self.mdf_baseline_db + MDF_MARGIN_DB
            heard = bool(passed[k] and uncancelled)
            if not uncancelled and p_est[k] > QUIET_POWER:  # echo alone: what MDF leaves
                self.mdf_baseline_db += TRACK * (float(mdf_db[k]) - self.mdf_baseline_db)
            self._run = self._run + 1 if heard else 0
            started = self._run >= ONSET_FRAMES or (heard and self._hang > 0)
            self._hang = HANG_FRAMES if started else max(0, self._hang - 1)
            # held only while MDF still hears more than echo: not the echo after the user
            verdicts[k] = self._hang > 0 and mdf_db[k] > self.mdf_baseline_db + HOLD_MARGIN_DB
        return verdicts

    def reset(self) -> None:
        self._hang = 0
        self._run = 0
        self.mdf_baseline_db = MDF_BASELINE_DB
