"""Wire audio formats (`pcm_16000`, `ulaw_8000`, ...) and the μ-law codec."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

_FORMAT = re.compile(r"^(pcm|ulaw)_(\d+)$")
WIRE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
WIRE_FORMATS = (*(f"pcm_{rate}" for rate in WIRE_RATES), "ulaw_8000")  # what the protocol defines


@dataclass(frozen=True)
class AudioFormat:
    """Mono audio on the wire: 16-bit little-endian PCM or 8-bit μ-law at a sample rate."""

    encoding: Literal["pcm", "ulaw"]
    rate: int

    @property
    def name(self) -> str:
        return f"{self.encoding}_{self.rate}"

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm" else 1

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, text: str) -> AudioFormat:
        """Parse one of the protocol's formats (WIRE_FORMATS); ValueError names what was wrong
        (a rate like pcm_0000 would only fail later, in a resampler on the receive path)."""
        m = _FORMAT.match(text or "") if isinstance(text, str) else None
        if not m or m.group(0) not in WIRE_FORMATS:
            raise ValueError(
                f"unsupported audio format {text!r} (expected one of {', '.join(WIRE_FORMATS)})"
            )
        encoding: Literal["pcm", "ulaw"] = "pcm" if m.group(1) == "pcm" else "ulaw"
        return cls(encoding, int(m.group(2)))


PCM_16000 = AudioFormat("pcm", 16000)

# G.711 μ-law tables, built once.
_BIAS = 0x84
_CLIP = 32635


def _build_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> npt.NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), _CLIP) + _BIAS
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    table: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return table


ULAW_DECODE = _build_decode_table()
ULAW_ENCODE = _build_encode_table()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """μ-law bytes to int16 samples."""
    out: npt.NDArray[np.int16] = ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]
    return out


def ulaw_encode(samples: npt.NDArray[np.int16]) -> bytes:
    """int16 samples to μ-law bytes."""
    return ULAW_ENCODE[samples.astype(np.int32) + 32768].tobytes()


def decode(data: bytes, fmt: AudioFormat) -> npt.NDArray[np.int16]:
    """Wire bytes in `fmt` to int16 samples (an odd trailing PCM byte is dropped)."""
    if fmt.encoding == "ulaw":
        return ulaw_decode(data)
    usable = len(data) - (len(data) % 2)
    return np.frombuffer(data, dtype="<i2", count=usable // 2).astype(np.int16, copy=False)


def encode(samples: npt.NDArray[np.int16], fmt: AudioFormat) -> bytes:
    """int16 samples to wire bytes in `fmt`."""
    if fmt.encoding == "ulaw":
        return ulaw_encode(samples)
    return samples.astype("<i2", copy=False).tobytes()
