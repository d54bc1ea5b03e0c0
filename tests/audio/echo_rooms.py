"""Synthetic rooms driven through the processor as a device timeline would (tests and bench).

The speaker's sample n reaches the DAC at OUT_DAC0 + n/rate; mic sample m left the ADC at
m/rate; each side's blocks are written into its StampedHistory with those stamps, in the order
the callbacks would run, and the mic blocks are processed as the loop would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from voicebox.audio.processing import CaptureProcessor, ProcessingSettings, StampedHistory
from voicebox.audio.room import impulse_response

RATE = 16000
BLOCK = 320  # 20 ms device blocks
OUT_LATENCY = 0.100  # output buffering: DAC time - callback time
IN_LATENCY = 0.030  # input buffering: callback time - ADC time


def speech_like(
    seconds: float, rate: int = RATE, seed: int = 0, level: float = 6000.0
) -> npt.NDArray[np.float64]:
    """Voiced bursts of filtered noise with a pitch-like buzz: speech's level envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    buzz = np.sign(np.sin(2 * np.pi * (110 + 20 * seed % 60) * t)) * 0.4
    x = np.convolve(rng.standard_normal(n) + buzz, np.ones(6) / 6, "same")
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t + seed)
    env = np.where(syllables > 0.25, syllables, 0.05)
    y: npt.NDArray[np.float64] = x * env * level
    return y


@dataclass
class Run:
    mic: npt.NDArray[np.int16]
    out: npt.NDArray[np.int16]
    echo: npt.NDArray[np.float64]
    processor: CaptureProcessor
    rate: int = RATE
    marks: dict[str, float] = field(default_factory=dict)


def run_room(
    far: npt.NDArray[np.float64],
    near: npt.NDArray[np.float64] | None = None,
    *,
    delay_ms: float = 40.0,
    tail_ms: float = 250.0,
    echo_db: float = -6.0,
    direct_db: float | None = None,
    noise: float = 20.0,
    settings: ProcessingSettings | None = None,
    delay_jump_at_s: float | None = None,
    jump_ms: float = 40.0,
    out_latency: float = OUT_LATENCY,
    in_latency: float = IN_LATENCY,
    stamp_error_s: float = 0.0,
    seed: int = 3,
) -> Run:
    """Play `far` through a room into the mic (with `near` the user's voice) and process it."""
    rate = RATE
    n = len(far)
    h = impulse_response(rate, delay_ms, tail_ms, echo_db, seed=seed, direct_db=direct_db)
    dac0 = out_latency + in_latency + 0.011  # the speaker starts a little after the mic
    shift = round(dac0 * rate)  # mic index of the speaker's sample 0 at the DAC
    played = np.zeros(n + shift)
    played[shift:] = far
    echo = np.convolve(played, h)[: n + shift][:n]
    if delay_jump_at_s is not None:
        h2 = impulse_response(rate, delay_ms + jump_ms, tail_ms, echo_db, seed, direct_db)
        echo2 = np.convolve(played, h2)[:n]
        at = int(delay_jump_at_s * rate)
        echo[at:] = echo2[at:]
    rng = np.random.default_rng(seed + 10)
    mic_f = echo + rng.standard_normal(n) * noise + (near if near is not None else 0.0)
    mic = np.clip(mic_f, -32768, 32767).astype(np.int16)
    far16 = np.clip(far, -32768, 32767).astype(np.int16)
    mic_h, ref_h = StampedHistory(rate), StampedHistory(rate)
    proc = CaptureProcessor(settings or ProcessingSettings(), mic_h, ref_h)
    outs = []
    next_out = 0  # speaker sample index of the next output block
    for start in range(0, n - BLOCK + 1, BLOCK):
        adc = start / rate
        now = adc + BLOCK / rate + in_latency  # the input callback fires
        while True:  # output callbacks due by now (each runs out_latency before its DAC time)
            dac = dac0 + next_out / rate
            if dac - out_latency > now:
                break
            blk = far16[next_out : next_out + BLOCK]
            if len(blk) < BLOCK:
                blk = np.zeros(BLOCK, dtype=np.int16)
            ref_h.write(blk, dac + stamp_error_s, dac - out_latency)
            next_out += BLOCK
        mic_h.write(mic[start : start + BLOCK], adc, now)
        outs.append(proc.process(mic[start : start + BLOCK], start))
    out = np.concatenate(outs)
    return Run(mic=mic[: len(out)], out=out, echo=echo[: len(out)], processor=proc)


def db(x: npt.NDArray[np.generic]) -> float:
    f = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(np.mean(f * f) + 1e-9))
