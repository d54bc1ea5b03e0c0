"""Synthetic rooms driven through the processor as a device timeline would (tests and bench).

The speaker's sample n reaches the DAC at OUT_DAC0 + n/rate; mic sample m left the ADC at
m/rate; each side's blocks are written into its StampedHistory with those stamps, in the order
the callbacks would run, and the mic blocks are processed as the loop would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from voicebox.audio.echo.history import StampedHistory
from voicebox.audio.echo.processor import CaptureProcessor, ProcessingSettings
from voicebox.audio.resample import convert
from voicebox.audio.room import impulse_response

RATE = 16000
BLOCK_MS = 20  # device blocks
BLOCK = RATE * BLOCK_MS // 1000
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
    mic_rate: int = RATE,
    out_rate: int = RATE,
    block_ms: float = BLOCK_MS,
) -> Run:
    """Play `far` through a room into the mic (with `near` the user's voice) and process it.
    `far` and `near` are at RATE; the devices run at mic_rate and out_rate (the room and the
    mic at mic_rate); `Run.mic` and `Run.echo` are given back at RATE, like `Run.out`."""
    n = len(far)
    if mic_rate != RATE:
        far_m = convert(far.astype(np.float32), RATE, mic_rate).astype(np.float64)
        near_m = None if near is None else convert(near.astype(np.float32), RATE, mic_rate)
    else:
        far_m, near_m = far, near
    n_m = len(far_m)
    h = impulse_response(mic_rate, delay_ms, tail_ms, echo_db, seed=seed, direct_db=direct_db)
    dac0 = out_latency + in_latency + 0.011  # the speaker starts a little after the mic
    shift = round(dac0 * mic_rate)  # mic index of the speaker's sample 0 at the DAC
    played = np.zeros(n_m + shift)
    played[shift:] = far_m
    echo = _convolve(played, h)[:n_m]
    if delay_jump_at_s is not None:
        h2 = impulse_response(mic_rate, delay_ms + jump_ms, tail_ms, echo_db, seed, direct_db)
        echo2 = _convolve(played, h2)[:n_m]
        at = int(delay_jump_at_s * mic_rate)
        echo[at:] = echo2[at:]
    rng = np.random.default_rng(seed + 10)
    user = near_m[:n_m] if near_m is not None else 0.0
    mic_f = echo + rng.standard_normal(n_m) * noise + user
    mic = np.clip(mic_f, -32768, 32767).astype(np.int16)
    far_o = far if out_rate == RATE else convert(far.astype(np.float32), RATE, out_rate)
    far16 = np.clip(far_o, -32768, 32767).astype(np.int16)
    mic_h, ref_h = StampedHistory(mic_rate, 0), StampedHistory(out_rate)
    proc = CaptureProcessor(settings or ProcessingSettings(), mic_h, ref_h)
    outs = []
    in_block = round(mic_rate * block_ms / 1000)
    out_block = round(out_rate * block_ms / 1000)
    next_out = 0  # speaker sample index of the next output block
    for start in range(0, n_m - in_block + 1, in_block):
        adc = start / mic_rate
        now = adc + in_block / mic_rate + in_latency  # the input callback fires
        while True:  # output callbacks due by now (each runs out_latency before its DAC time)
            dac = dac0 + next_out / out_rate
            if dac - out_latency > now:
                break
            blk = far16[next_out : next_out + out_block]
            if len(blk) < out_block:
                blk = np.zeros(out_block, dtype=np.int16)
            ref_h.write(blk, dac + stamp_error_s, dac - out_latency)
            next_out += out_block
        mic_h.write(mic[start : start + in_block], adc, now)
        outs.append(proc.process(mic[start : start + in_block], start))
    out = np.concatenate(outs)
    if mic_rate != RATE:
        mic = convert(mic, mic_rate, RATE)
        echo = convert(echo.astype(np.float32), mic_rate, RATE).astype(np.float64)
    m = min(len(out), len(mic), n)
    return Run(mic=mic[:m], out=out[:m], echo=echo[:m], processor=proc)


def _convolve(x: npt.NDArray[np.float64], h: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Linear convolution by one FFT (np.convolve is slow at 48 kHz lengths)."""
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y: npt.NDArray[np.float64] = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)
    return y[:n]


def db(x: npt.NDArray[np.generic]) -> float:
    f = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(np.mean(f * f) + 1e-9))
