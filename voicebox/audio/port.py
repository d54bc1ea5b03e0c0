"""The audio port: the one interface between the audio engine and the conversation engine.

The conversation engine never imports sounddevice; it sees only this (in the spirit of the
official SDK's AudioInterface). Captured audio arrives on the event loop as int16 mono PCM at
`input_format.rate`; agent audio goes in as wire bytes in the format set by `set_output_format`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voicebox.audio.formats import AudioFormat

Chunk = npt.NDArray[np.int16]
OnChunk = Callable[[Chunk], None]


@dataclass
class AudioStats:
    """Counters of the audio engine (monotonic since start)."""

    captured_chunks: int = 0
    dropped_chunks: int = 0  # capture queue full: oldest dropped
    input_overflows: int = 0  # PortAudio input_overflow flags
    underruns: int = 0  # ring empty inside a reply
    output_underflows: int = 0  # PortAudio output_underflow flags
    ring_overflows: int = 0  # samples dropped because the ring was full
    interrupts: int = 0
    device_errors: int = 0  # streams lost and reopened
    handoff_lag_ms: float = 0.0  # EWMA callback-to-loop hand-off delay
    ring_level_ms: float = 0.0  # buffered playback right now
    prebuffer_ms: int = 0  # current pre-roll
    input_device: str = ""
    output_device: str = ""
    # capture-path processing (voicebox/audio/echo/); None while not measured
    processing: bool = False
    echo_cancellation: bool = False
    erle_db: float | None = None  # echo return loss enhancement while only the agent speaks
    echo_delay_ms: float | None = None  # output + input buffering, from the device stamps
    processing_cpu_percent: float = 0.0  # of one core
    echo_converged: bool = False  # the canceller is trusted: full duplex (else the mic is muted
    # while the agent speaks)
    echo_gated_s: float = 0.0  # mic muted while the agent spoke, the canceller not yet trusted
    processing_cpu_s: float = 0.0  # thread CPU time spent processing, since the processor began
    echo_cancel_share: float | None = None  # of mic frames through AEC3 (agent audio to cancel)
    echo_dbfs: float | None = None  # the agent's echo at the mic, echo alone
    voice_dbfs: float | None = None  # the user's voice at the mic, the agent silent
    echo_linear_filter: bool = False  # speexdsp's MDF converged and feeds AEC3
    echo_double_talk_s: float = 0.0  # sent from MDF's output: the user talking over the agent


class AudioPort(Protocol):
    """What the conversation engine needs from audio."""

    @property
    def input_format(self) -> AudioFormat:
        """Format of the chunks passed to on_chunk (always PCM; the rate follows the session)."""
        ...

    @property
    def output_format(self) -> AudioFormat:
        """The format `play` bytes are decoded as (set by the session)."""
        ...

    async def start(self, on_chunk: OnChunk) -> None:
        """Open the streams (once; kept open) and deliver mic chunks to on_chunk on the loop."""
        ...

    def set_input_format(self, fmt: AudioFormat) -> None:
        """The session's user_input_audio_format: later chunks are resampled to its rate."""
        ...

    def set_output_format(self, fmt: AudioFormat) -> None:
        """The session's agent_output_audio_format: how `play` bytes are decoded."""
        ...

    def play(self, data: bytes) -> None:
        """Queue agent audio (wire bytes in the output format) for the current reply."""
        ...

    def end_reply(self) -> None:
        """No more audio for this reply is coming: play it out even below the pre-roll."""
        ...

    def interrupt(self) -> None:
        """Drop queued audio now; silence follows within one device period."""
        ...

    @property
    def playing(self) -> bool:
        """True while a reply is audible (ring not drained)."""
        ...

    async def drain(self, timeout: float) -> bool:
        """Wait until queued audio has played; False on timeout."""
        ...

    def set_volume(self, volume: float) -> None:
        """Output gain 0..1."""
        ...

    def set_prebuffer_ms(self, ms: int) -> None:
        """Pre-roll for the next reply (adaptive tuning)."""
        ...

    async def stop(self) -> None:
        """Stop and close the streams; file outputs are finalised."""
        ...

    def stats(self) -> AudioStats:
        """A snapshot of the counters."""
        ...
