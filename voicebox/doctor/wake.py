"""`voicebox doctor`'s wake-word check: the configured model loads and what it costs a core."""

from __future__ import annotations

import time

import numpy as np

from voicebox.config import Config
from voicebox.doctor.report import Check, fail, ok, warn
from voicebox.wake import BATCH_S, RATE, WakeDetector, WakeError

SAMPLE_S = 10.0  # of generated audio run through the detector
CPU_WARN = 0.05  # a detector above 5 % of one core leaves a Pi little for the rest


def check_wake(cfg: Config) -> Check:
    """Load wake.model and run SAMPLE_S of noise through it in the daemon's 100 ms batches, back
    to back: its share of one core (the daemon's, woken between batches, is some 3x this)."""
    try:
        detector = WakeDetector(cfg.wake)
    except WakeError as exc:
        return fail("wake word", str(exc), "fix wake.model (voicebox check-config says where)")
    noise = (np.random.default_rng(7).normal(0, 300, int(SAMPLE_S * RATE))).astype(np.int16)
    try:
        started = time.thread_time()
        step = int(BATCH_S * RATE)
        for i in range(0, len(noise), step):
            detector.process(noise[i : i + step])
        share = (time.thread_time() - started) / SAMPLE_S
    finally:
        detector.close()
    detail = f"{cfg.wake.model} ({detector.wake_word!r}) loads; {share * 100:.2f} % of one core"
    if share > CPU_WARN:
        return warn("wake word", detail, "a lighter model, or a less loaded machine")
    return ok("wake word", detail)
