"""Real speech for the wake-word tests, rendered offline by espeak-ng (scripts/bootstrap.sh)."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import numpy.typing as npt
import pytest

from voicebox.audio.resample import convert

Samples = npt.NDArray[np.int16]


def say(text: str, voice: str = "en-us", speed: int = 140) -> Samples:
    """`text` spoken by espeak-ng at 16 kHz; the test is skipped, saying why, without it."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/bootstrap.sh installs it)")
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)
    return convert(pcm, rate, 16000)
