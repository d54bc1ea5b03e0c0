"""`MediaStreamPort`: the AudioPort on one Twilio Media Stream.

Caller audio (mu-law 8 kHz from Twilio) is decoded and handed to the conversation as int16 PCM;
agent audio goes back as 20 ms mu-law frames, each `play()` followed by a mark, so what the
caller has actually heard is known from the marks Twilio echoes. `playing` is true while marks are
outstanding; `interrupt()` sends `clear`; `drain()` flushes the last partial frame, marks it and
waits for that mark. With an agent at ulaw_8000 the bytes pass through untouched; other formats
are converted with the audio package's codec and `FrameResampler` (both directions), which holds
back only its ~2.3 ms filter delay, so each chunk's audio goes out with that chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from voicebox.audio import formats
from voicebox.audio.formats import PCM_16000, AudioFormat
from voicebox.audio.port import AudioStats, Chunk, OnChunk
from voicebox.audio.resample import FrameResampler
from voicebox.convai.connection import LatencyStats
from voicebox.phone import media

ULAW_8000 = AudioFormat("ulaw", 8000)
PHONE_RATE = 8000
FRAME_S = media.FRAME_BYTES / PHONE_RATE

# Queues one text frame for Twilio (non-blocking); the float is when the audio arrived.
Send = Callable[[str, float | None], None]


class MediaStreamPort:
    """The AudioPort over a Media Stream (see voicebox/audio/port.py)."""

    def __init__(self, stream_sid: str, send: Send) -> None:
        self._sid = stream_sid
        self._send = send
        self._input_format = AudioFormat("pcm", PHONE_RATE)
        self._output_format = PCM_16000
        self._in_rs: FrameResampler | None = None
        self._out_rs: FrameResampler | None = FrameResampler(16000, PHONE_RATE)
        self._on_chunk: OnChunk | None = None
        self._pending = b""  # mu-law short of a whole frame
        self._marks: dict[str, float] = {}  # outstanding mark -> agent audio seconds up to it
        self._mark_seq = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._volume = 1.0
        self._stopped = False
        self.sent_s = 0.0  # agent audio sent to Twilio
        self.heard_s = 0.0  # agent audio Twilio confirmed played (by marks)
        self._marked_s = 0.0  # sent_s at the last mark
        self._confirmed_s = 0.0  # sent_s up to the last mark echoed (or the last clear)
        self.last_mark: str | None = None
        self.last_mark_at: float | None = None  # monotonic time the last mark came back
        self.clears = 0
        self.frames_in = 0
        self.frames_out = 0
        self.inbound = LatencyStats()  # Twilio frame received -> handed to the conversation

    # --- AudioPort ----------------------------------------------------------------------------

    @property
    def input_format(self) -> AudioFormat:
        return self._input_format

    @property
    def output_format(self) -> AudioFormat:
        return self._output_format

    async def start(self, on_chunk: OnChunk) -> None:
        self._on_chunk = on_chunk

    def set_input_format(self, fmt: AudioFormat) -> None:
        self._input_format = AudioFormat("pcm", fmt.rate)
        self._in_rs = FrameResampler(PHONE_RATE, fmt.rate) if fmt.rate != PHONE_RATE else None

    def set_output_format(self, fmt: AudioFormat) -> None:
        self._output_format = fmt
        self._out_rs = FrameResampler(fmt.rate, PHONE_RATE) if fmt.rate != PHONE_RATE else None

    def play(self, data: bytes) -> None:
        if self._stopped or not data:
            return
        t0 = time.perf_counter()
        fmt = self._output_format
        if fmt == ULAW_8000 and self._volume >= 1.0:
            ulaw = data  # mu-law end to end
        else:
            samples = formats.decode(data, fmt)
            if self._out_rs is not None:
                samples = self._out_rs.process(samples)
            ulaw = formats.ulaw_encode(self._gain(samples))
        self._send_frames(self._pending + ulaw, t0, flush=False)
        self._mark()

    def end_reply(self) -> None:
        if self._stopped:
            return
        tail = b""
        if self._out_rs is not None and self._output_format != ULAW_8000:
            rest = self._out_rs.process(np.zeros(0, np.int16), last=True)
            tail = formats.ulaw_encode(self._gain(rest)) if len(rest) else b""
        if self._pending or tail:
            self._send_frames(self._pending + tail, time.perf_counter(), flush=True)
            self._mark()

    def interrupt(self) -> None:
        """Drop what Twilio has buffered (`clear`) and what we hold."""
        self._pending = b""
        if self._out_rs is not None:
            self._out_rs.reset()
        if self._marks and not self._stopped:
            self.clears += 1
            self._send(media.clear_frame(self._sid), None)
        self._marks.clear()
        self._marked_s = self._confirmed_s = self.sent_s
        self._idle.set()

    @property
    def playing(self) -> bool:
        return bool(self._marks)

    async def drain(self, timeout: float) -> bool:
        """Send the rest of the reply, then wait for its last mark; False on timeout."""
        self.end_reply()
        try:
            async with asyncio.timeout(timeout):
                while self._marks and not self._stopped:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return not self._marks

    def set_volume(self, volume: float) -> None:
        self._volume = min(1.0, max(0.0, volume))

    def set_prebuffer_ms(self, ms: int) -> None:
        """Twilio buffers and paces the audio itself: nothing to pre-roll here."""

    async def stop(self) -> None:
        self._stopped = True
        self._marks.clear()
        self._idle.set()

    def stats(self) -> AudioStats:
        return AudioStats(
            captured_chunks=self.frames_in,
            interrupts=self.clears,
            ring_level_ms=round(max(0.0, self.sent_s - self._confirmed_s) * 1000, 1),
            input_device=f"twilio:{self._sid}",
            output_device=f"twilio:{self._sid}",
        )

    # --- the stream's side ----------------------------------------------------------------------

    def feed(self, ulaw: bytes, t_recv: float) -> None:
        """Caller audio from one `media` message."""
        if self._on_chunk is None or self._stopped:
            return
        self.frames_in += 1
        samples: Chunk = formats.ulaw_decode(ulaw)
        if self._in_rs is not None:
            samples = self._in_rs.process(samples)
        if len(samples):
            self._on_chunk(samples)
            self.inbound.add(time.perf_counter() - t_recv)

    def on_mark(self, name: str) -> None:
        """Twilio played the audio up to mark `name` (and so every mark before it)."""
        heard = self._marks.get(name)
        if heard is None:
            return  # a mark from before a clear, or not ours
        for key in list(self._marks):
            del self._marks[key]
            if key == name:
                break
        self.heard_s += max(0.0, heard - self._confirmed_s)
        self._confirmed_s = max(self._confirmed_s, heard)
        self.last_mark = name
        self.last_mark_at = time.monotonic()
        if not self._marks:
            self._idle.set()

    # --- internals -------------------------------------------------------------------------------

    def _gain(self, samples: Chunk) -> Chunk:
        if self._volume >= 1.0:
            return samples
        out: Chunk = (samples.astype(np.float32) * self._volume).astype(np.int16)
        return out

    def _send_frames(self, ulaw: bytes, t0: float, flush: bool) -> None:
        n = media.FRAME_BYTES
        whole = len(ulaw) - len(ulaw) % n
        if flush and whole < len(ulaw):
            ulaw += bytes([media.SILENCE]) * (n - len(ulaw) % n)
            whole = len(ulaw)
        for i in range(0, whole, n):
            self._send(media.media_frame(self._sid, ulaw[i : i + n]), t0)
        self._pending = ulaw[whole:]
        self.frames_out += whole // n
        self.sent_s += whole / PHONE_RATE

    def _mark(self) -> None:
        if self.sent_s <= self._marked_s:
            return  # nothing new since the last mark
        self._mark_seq += 1
        name = f"a{self._mark_seq}"
        self._marks[name] = self._marked_s = self.sent_s
        self._idle.clear()
        self._send(media.mark_frame(self._sid, name), None)
