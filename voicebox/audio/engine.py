"""`AudioEngine`: the AudioPort over sounddevice streams or file devices, kept open for the
daemon's lifetime and reopened with backoff when a device is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from voicebox.audio import devices
from voicebox.audio.capture import Capture
from voicebox.audio.devices import AudioDeviceError
from voicebox.audio.echo import linear_echo
from voicebox.audio.echo.history import StampedHistory
from voicebox.audio.echo.meters import echo_over_voice
from voicebox.audio.echo.processor import (
    LIBRARY,
    CaptureProcessor,
    ProcessingSettings,
    library_available,
)
from voicebox.audio.files import FileSink, FileSource, WavReader, WavWriter
from voicebox.audio.formats import PCM_16000, AudioFormat
from voicebox.audio.playback import Playback
from voicebox.audio.port import AudioStats, OnChunk
from voicebox.audio.room import Room, RoomSink, RoomSource, build_room
from voicebox.config import AudioConfig
from voicebox.logs import event
from voicebox.volume import configured_level, gain

log = logging.getLogger(__name__)
FILE_OUTPUT_RATE = 16000
CHECK_S = 0.25  # supervisor period
LEVELS_EVERY = 20  # supervisor periods between looks at the echo and voice levels (5 s)
ECHO_OVER_VOICE_HINT = (
    "the agent's echo at the mic drowns the user's voice, so barge-in by voice mostly fails: "
    "lower audio.output.volume, or move the speaker away from the mic"
)


def reopen_delay(attempt: int, first: float = 0.5, cap: float = 30.0) -> float:
    """Backoff before reopen attempt `attempt` (1-based): doubling from `first`, capped."""
    return float(min(cap, first * 2 ** max(0, attempt - 1)))


class _Device(Protocol):
    name: str

    def open(self) -> None: ...
    def close(self) -> None: ...
    @property
    def failed(self) -> bool: ...
    @property
    def portaudio(self) -> bool: ...


class _SdStream:
    """One sounddevice callback stream (mono int16) feeding a Capture or fed by a Playback."""

    portaudio = True

    def __init__(
        self,
        kind: devices.Kind,
        spec: str | int | None,
        rate: int,
        block: int,
        latency: float | str,
        capture: Capture | None = None,
        playback: Playback | None = None,
    ) -> None:
        self.kind = kind
        self.spec = spec
        self.rate = rate
        self.block = block
        self.latency = latency
        self.capture = capture
        self.playback = playback
        self.name = str(spec) if spec is not None else "default"
        self.stream: Any = None
        self.lost = False
        self.output_underflows = 0
        self.buffer_s = 0.0  # the stream's latency: a stand-in when PortAudio gives no stamps

    @property
    def failed(self) -> bool:
        return self.lost or (self.stream is not None and not self.stream.active)

    def open(self) -> None:
        import sounddevice as sd

        index = devices.find_device(self.spec, self.kind)
        self.name = devices.device_name(index)
        cls = sd.InputStream if self.kind == "input" else sd.OutputStream
        cb = self._input_cb if self.kind == "input" else self._output_cb
        self.lost = False
        # Mono first; a device that has no mono mode (hw: stereo codecs) gets its channel count:
        # the mic uses channel 0 and the speaker gets the same samples on every channel.
        most = devices.max_channels(index, self.kind)
        stream: Any = None
        error: Exception | None = None
        for channels in sorted({1, min(2, max(1, most))}):
            try:
                stream = cls(
                    device=index,
                    samplerate=self.rate,
                    blocksize=self.block,
                    channels=channels,
                    dtype="int16",
                    latency=self.latency,
                    callback=cb,
                    finished_callback=self._finished,
                )
                stream.start()
                break
            except sd.PortAudioError as exc:
                error = exc
                if stream is not None:
                    stream.close(ignore_errors=True)
                    stream = None
        if stream is None:
            raise AudioDeviceError(
                f"audio.{self.kind}.device {self.name!r}: cannot open at {self.rate} Hz: {error}"
            ) from error
        self.stream = stream
        self.buffer_s = float(stream.latency)
        event(
            log,
            "audio.stream_opened",
            kind=self.kind,
            device=self.name,
            rate=self.rate,
            blocksize=self.block,
            channels=stream.channels,
            latency=round(float(stream.latency), 4),
        )

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.abort(ignore_errors=True)
            with contextlib.suppress(Exception):
                stream.close(ignore_errors=True)

    def _finished(self) -> None:
        if self.stream is not None:  # not a close() we asked for
            self.lost = True

    def _input_cb(self, indata: npt.NDArray[np.int16], frames: int, t: Any, status: Any) -> None:
        with contextlib.suppress(Exception):  # a raising callback would never be called again
            now = t.currentTime or time.monotonic()
            adc = t.inputBufferAdcTime or now - self.buffer_s
            self.capture.on_block(indata[:, 0], bool(status.input_overflow), adc, now)  # type: ignore[union-attr]

    def _output_cb(self, outdata: npt.NDArray[np.int16], frames: int, t: Any, status: Any) -> None:
        try:
            if status.output_underflow:
                self.output_underflows += 1
            now = t.currentTime or time.monotonic()
            dac = t.outputBufferDacTime or now + self.buffer_s
            self.playback.fill(outdata[:, 0], dac, now)  # type: ignore[union-attr]
            if outdata.shape[1] > 1:
                outdata[:, 1:] = outdata[:, :1]
        except Exception:
            outdata.fill(0)


class AudioEngine:
    """The AudioPort implementation (see voicebox/audio/port.py)."""

    def __init__(
        self,
        cfg: AudioConfig,
        *,
        stall_s: float = 2.0,
        processing: ProcessingSettings | None = None,
    ) -> None:
        self._cfg = cfg
        self._stall_s = stall_s
        self._processing = processing  # None: the mic is delivered as captured
        self._processor: CaptureProcessor | None = None
        self._input_format = PCM_16000
        self._output_format = PCM_16000
        self._chunk_ms = cfg.input.chunk_ms
        self._prebuffer_ms = cfg.output.prebuffer_ms
        self._ring_ms = cfg.output.buffer_ms
        self._volume = gain(configured_level(cfg.output.volume))
        self._echo_over_voice = False  # audio.echo_over_voice was logged and still holds
        self._capture: Capture | None = None
        self._playback: Playback | None = None
        self._input: _Device | None = None
        self._output: _Device | None = None
        self._writer: WavWriter | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._progress: dict[str, tuple[int, float]] = {}
        self._device_errors = 0
        self._recovering = False
        self._stopped = False
        self._pending_latency: float | None = None
        self._idle = asyncio.Event()  # set when a reply finished playing or was interrupted
        self._opened = asyncio.Event()  # set once both devices have opened
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_chunk: OnChunk | None = None
        self._waiting_for: str | None = None
        self._rates: dict[str, int] = {}

    # --- AudioPort ----------------------------------------------------------------------------

    @property
    def input_format(self) -> AudioFormat:
        return self._input_format

    async def start(self, on_chunk: OnChunk) -> None:
        """Open both devices and supervise them. A device that is not there yet (a USB card
        late at boot, a WAV not written yet) is waited for: `waiting_for` says what, and the
        devices open when it appears, as a lost device is reopened."""
        if self._loop is not None:
            return
        for side, sub in (("input", self._cfg.input), ("output", self._cfg.output)):
            if sub.backend == "file" and not sub.path:
                raise AudioDeviceError(
                    f"audio.{side}.path is required with audio.{side}.backend: file"
                )
        self._loop = asyncio.get_running_loop()
        self._on_chunk = on_chunk
        try:
            self._open_all()
        except AudioDeviceError as exc:
            self._waiting_for = exc.problem
            self._recovering = True
            event(
                log,
                "audio.waiting",
                logging.WARNING,
                device=exc.problem,
                candidates=exc.candidates or None,
            )
        else:
            self._opened.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="audio-supervisor")

    @property
    def waiting_for(self) -> str | None:
        """The device the engine waits for (none open yet), or None once it has opened."""
        return self._waiting_for

    async def opened(self) -> None:
        """Return once both devices have opened (at once unless the engine is waiting)."""
        await self._opened.wait()

    def _build(self) -> None:
        """Create the capture, the playback and both devices (raises AudioDeviceError)."""
        assert self._loop is not None and self._on_chunk is not None
        loop = self._loop
        icfg, ocfg = self._cfg.input, self._cfg.output
        reader: WavReader | None = None
        if icfg.backend == "file":
            assert icfg.path is not None
            try:
                reader = WavReader(icfg.path, icfg.sample_rate)
            except (OSError, EOFError, ValueError) as exc:  # wave.Error is an Exception subclass
                raise AudioDeviceError(f"audio.input.path {icfg.path!r}: {exc}") from exc
            except Exception as exc:
                raise AudioDeviceError(f"audio.input.path {icfg.path!r}: not a WAV: {exc}") from exc
            in_rate = reader.rate
        elif icfg.backend == "sounddevice":
            in_rate = icfg.sample_rate or devices.default_rate(
                devices.find_device(icfg.device, "input")
            )
        try:
            if ocfg.backend == "file":
                out_rate = ocfg.sample_rate or FILE_OUTPUT_RATE
            else:
                out_rate = ocfg.sample_rate or devices.default_rate(
                    devices.find_device(ocfg.device, "output")
                )
            room: Room | None = None
            if icfg.backend == "room":  # the room is simulated at the speaker's rate
                room, reader = self._room(out_rate)
                in_rate = out_rate
            capture = Capture(
                loop,
                self._on_chunk,
                in_rate,
                self._input_format.rate,
                self._chunk_ms,
                icfg.queue_ms,
            )
            playback = Playback(out_rate, self._ring_ms, self._prebuffer_ms, self._volume)
            playback.set_format(self._output_format)
            playback.on_finished = lambda: self._post(loop, self._idle.set)
            self._setup_processing(capture, playback)
            out: _Device
            if ocfg.backend == "file":
                assert ocfg.path is not None
                try:
                    self._writer = WavWriter(ocfg.path, out_rate)
                except OSError as exc:
                    raise AudioDeviceError(f"audio.output.path {ocfg.path!r}: {exc}") from exc
                if room is not None:
                    out = RoomSink(playback, self._writer, ocfg.block_ms, room)
                else:
                    out = FileSink(playback, self._writer, ocfg.block_ms)
                out.name = ocfg.path
            else:
                out_block = max(1, out_rate * ocfg.block_ms // 1000)
                out = _SdStream(
                    "output", ocfg.device, out_rate, out_block, ocfg.latency, playback=playback
                )
        except BaseException:
            if reader is not None:
                reader.close()
            raise
        inp: _Device
        if room is not None:
            assert reader is not None
            inp = RoomSource(capture, reader, room, loop=icfg.loop)
            inp.name = f"room:{icfg.path}"
        elif reader is not None:
            inp = FileSource(capture, reader, icfg.chunk_ms, loop=icfg.loop)
        else:
            in_block = max(1, in_rate * icfg.chunk_ms // 1000)
            inp = _SdStream("input", icfg.device, in_rate, in_block, icfg.latency, capture=capture)
        self._capture, self._playback, self._input, self._output = capture, playback, inp, out
        self._rates = {"input": in_rate, "output": out_rate}

    def _open_all(self) -> None:
        """Build (when nothing is built yet) and open both devices; on failure nothing stays
        open or built, so the next attempt starts from the configuration again."""
        built = self._input is not None
        if not built:
            self._build()
        assert self._input is not None and self._output is not None
        try:
            self._output.open()
            self._input.open()
        except BaseException:
            for dev in (self._input, self._output):
                dev.close()
            if not built:
                self._release_files()
                self._capture = self._playback = self._input = self._output = None
                self._writer = None
            raise
        if not built:
            for kind, dev in (("input", self._input), ("output", self._output)):
                if not dev.portaudio:
                    event(
                        log,
                        "audio.stream_opened",
                        kind=kind,
                        backend="file",
                        device=dev.name,
                        rate=self._rates[kind],
                    )

    def set_input_format(self, fmt: AudioFormat) -> None:
        self._input_format = AudioFormat("pcm", fmt.rate)
        if self._capture is not None:
            self._capture.set_rate(fmt.rate)

    @property
    def output_format(self) -> AudioFormat:
        return self._output_format

    def set_output_format(self, fmt: AudioFormat) -> None:
        self._output_format = fmt
        if self._playback is not None:
            self._playback.set_format(fmt)

    def play(self, data: bytes) -> None:
        if self._playback is not None:
            self._playback.play(data)

    def end_reply(self) -> None:
        if self._playback is not None:
            self._playback.end_reply()

    def interrupt(self) -> None:
        if self._playback is not None:
            self._playback.interrupt()
            self._idle.set()

    @property
    def playing(self) -> bool:
        return self._playback is not None and self._playback.playing

    async def drain(self, timeout: float) -> bool:
        """End the current reply and wait until it has played out; False on timeout."""
        pb = self._playback
        if pb is None:
            return True
        pb.end_reply()
        deadline = time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                while pb.playing:
                    self._idle.clear()
                    if pb.playing:
                        await self._idle.wait()
        except TimeoutError:
            return False
        tail = self._output_latency()
        if tail:
            await asyncio.sleep(min(tail, max(0.0, deadline - time.monotonic())))
        return True

    def set_volume(self, volume: float) -> None:
        self._volume = min(1.0, max(0.0, volume))
        if self._playback is not None:
            self._playback.set_volume(self._volume)

    def set_prebuffer_ms(self, ms: int) -> None:
        self._prebuffer_ms = ms
        if self._playback is not None:
            self._playback.set_prebuffer_ms(ms)

    async def stop(self) -> None:
        """Stop the supervisor, close both devices and finalise a file output. Idempotent."""
        self._stopped = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._close_devices()
        self._release_files()
        self._log_processing_summary()

    def _release_files(self) -> None:
        """Close the file devices' files (the input WAV; the output WAV finalised)."""
        if isinstance(self._input, FileSource | RoomSource):
            self._input.release()
        if self._writer is not None:
            self._writer.close()

    def _log_processing_summary(self) -> None:
        """What the processing achieved over the run (once, at stop)."""
        processor, self._processor = self._processor, None
        if processor is not None:
            ps = processor.snapshot()
            event(
                log,
                "audio.processing_summary",
                erle_db=ps.erle_db,
                echo_delay_ms=ps.delay_ms,
                cpu_percent=ps.cpu_percent,
                cpu_s=round(ps.cpu_s, 3),
                resyncs=ps.resyncs,
                resets=ps.resets,
                holds=ps.holds,
                gated_s=ps.gated_s,
                leaks=ps.leaks,
                echo_dbfs=ps.echo_dbfs,
                voice_dbfs=ps.voice_dbfs,
            )

    def _room(self, rate: int) -> tuple[Room, WavReader]:
        """audio.input.backend room: the room, and the input WAV the user says in it."""
        icfg = self._cfg.input
        if self._cfg.output.backend != "file" or not icfg.path:
            raise AudioDeviceError(
                "audio.input.backend room needs audio.input.path and audio.output.backend: file"
            )
        try:
            room = build_room(icfg.room, rate, max(1, rate * icfg.chunk_ms // 1000))
        except Exception as exc:
            path = icfg.room.impulse_response
            raise AudioDeviceError(f"audio.input.room.impulse_response {path!r}: {exc}") from exc
        try:
            reader = WavReader(icfg.path, rate)
        except Exception as exc:
            raise AudioDeviceError(f"audio.input.path {icfg.path!r}: {exc}") from exc
        return room, reader

    def set_processing(self, settings: ProcessingSettings | None) -> None:
        """New processing settings (a reload): a fresh processor from the next mic block."""
        if settings == self._processing:
            return
        self._processing = settings
        self._log_processing_summary()
        capture, playback = self._capture, self._playback
        if capture is not None and playback is not None:
            capture.set_processor(None)
            playback.reference = None
            self._setup_processing(capture, playback)

    def _setup_processing(self, capture: Capture, playback: Playback) -> None:
        """Put the processor in the capture path, fed by what the playback hands the device."""
        settings = self._processing
        if settings is None or not settings.active:
            return
        if not library_available():
            event(log, "audio.processing_unavailable", logging.WARNING, library=LIBRARY)
            return
        playback.reference = StampedHistory(playback.rate) if settings.echo_cancellation else None
        self._processor = CaptureProcessor(
            settings, capture.stamps, playback.reference, playing=lambda: playback.playing
        )
        capture.set_processor(self._processor)
        event(
            log,
            "audio.processing",
            echo_cancellation=settings.echo_cancellation,
            noise_suppression=settings.noise_suppression,
            auto_gain=settings.auto_gain,
            high_pass=settings.high_pass,
            rate=self._processor.rate,
            linear_echo_filter=self._processor.linear_filter,
        )
        if settings.echo_cancellation and not self._processor.linear_filter:
            # AEC3 alone: a user quieter than the agent's echo at the mic barges in less often
            event(
                log, "audio.linear_echo_unavailable", logging.WARNING, package=linear_echo.PACKAGE
            )

    def _reset_stamps(self) -> None:
        """The streams were reopened: their stamps start again (the processor re-aligns)."""
        if self._capture is not None:
            self._capture.stamps.reset()
        if self._playback is not None and self._playback.reference is not None:
            self._playback.reference.reset()

    def stats(self) -> AudioStats:
        c, p = self._capture, self._playback
        s = AudioStats(
            prebuffer_ms=self._prebuffer_ms,
            device_errors=self._device_errors,
            input_device=self._input.name if self._input else "",
            output_device=self._output.name if self._output else "",
        )
        if c is not None:
            s.captured_chunks = c.captured_chunks
            s.dropped_chunks = c.dropped_chunks
            s.input_overflows = c.input_overflows
            s.handoff_lag_ms = round(c.handoff_lag_ms, 3)
        if p is not None:
            s.underruns = p.underruns
            s.ring_overflows = p.ring.dropped
            s.interrupts = p.interrupts
            s.ring_level_ms = round(p.level_ms, 1)
        if isinstance(self._output, _SdStream):
            s.output_underflows = self._output.output_underflows
        if self._processor is not None and c is not None and c.processor is not None:
            ps = self._processor.snapshot()
            s.processing = True
            s.echo_cancellation = ps.echo_cancellation
            s.erle_db = ps.erle_db
            s.echo_delay_ms = ps.delay_ms
            s.processing_cpu_percent = ps.cpu_percent
            s.echo_converged = ps.converged
            s.echo_gated_s = ps.gated_s
            s.processing_cpu_s = round(ps.cpu_s, 3)
            if ps.echo_cancellation and ps.frames:
                s.echo_cancel_share = round(ps.aec_frames / ps.frames, 3)
            s.echo_dbfs = ps.echo_dbfs
            s.voice_dbfs = ps.voice_dbfs
            s.echo_linear_filter = ps.linear_echo
            s.echo_double_talk_s = round(ps.double_talk_frames / 100, 2)  # 10 ms frames
        return s

    # --- tuning and supervision -------------------------------------------------------------

    def set_ring_ms(self, ms: int) -> None:
        """Playback ring capacity; applied when no reply is playing."""
        self._ring_ms = ms
        if self._playback is not None:
            self._playback.set_ring_ms(ms)

    def set_chunk_ms(self, ms: int) -> None:
        """Capture chunk duration; the loop-side re-chunker applies it from the next chunk."""
        self._chunk_ms = ms
        if self._capture is not None:
            self._capture.set_chunk_ms(ms)

    @property
    def recovering(self) -> bool:
        """A device was lost and is being reopened with backoff (alive() is False meanwhile)."""
        return self._recovering

    def alive(self) -> bool:
        """True while both devices are making progress (callbacks counted recently)."""
        if self._stopped or self._capture is None or self._playback is None:
            return False
        now = time.monotonic()
        return not self._recovering and all(
            now - self._seen(key, count, now) < self._stall_s
            for key, count in (
                ("input", self._capture.callbacks),
                ("output", self._playback.callbacks),
            )
        )

    def _seen(self, key: str, count: int, now: float) -> float:
        """When the counter `key` last moved."""
        last = self._progress.get(key)
        if last is None or last[0] != count:
            self._progress[key] = (count, now)
            return now
        return last[1]

    @staticmethod
    def _post(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
        """Run fn on the loop, from a device thread; never raises (the loop may be closed)."""
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn)

    def _output_latency(self) -> float:
        out = self._output
        if isinstance(out, _SdStream) and out.stream is not None:
            return float(out.stream.latency)
        return 0.0

    def _problem(self) -> tuple[_Device, str] | None:
        assert self._capture is not None and self._playback is not None
        assert self._input is not None and self._output is not None
        now = time.monotonic()
        checks = (
            (self._input, self._capture.callbacks, "input"),
            (self._output, self._playback.callbacks, "output"),
        )
        for dev, count, key in checks:
            if dev.failed:
                return dev, "stream_error"
            if now - self._seen(key, count, now) >= self._stall_s:
                return dev, "stalled"
        return None

    def set_latency(self, seconds: float) -> None:
        """Device latency for both sounddevice streams (tuning). Applied by reopening them once
        no reply is playing; file devices have no device buffer, so it does nothing there."""
        if any(isinstance(d, _SdStream) for d in (self._input, self._output)):
            self._pending_latency = seconds

    async def _supervise(self) -> None:
        if self._waiting_for is not None:  # nothing opened at start: wait for the devices
            await self._reopen_with_backoff(self._waiting_for, first_failed=True)
            self._waiting_for = None
            self._opened.set()
        ticks = 0
        while True:
            await asyncio.sleep(CHECK_S)
            ticks += 1
            if ticks % LEVELS_EVERY == 0:
                self._check_echo_over_voice()
            problem = self._problem()
            if problem is not None:
                await self._recover(*problem)
            elif self._pending_latency is not None and not self.playing:
                await self._apply_latency(self._pending_latency)

    def _check_echo_over_voice(self) -> None:
        """Warn (once until it clears) when the echo is too loud for a voice barge-in."""
        processor = self._processor
        if processor is None:
            return
        ps = processor.snapshot()
        over = echo_over_voice(ps)
        if over and not self._echo_over_voice:
            event(
                log,
                "audio.echo_over_voice",
                logging.WARNING,
                echo_dbfs=ps.echo_dbfs,
                voice_dbfs=ps.voice_dbfs,
                volume=self._volume,
                hint=ECHO_OVER_VOICE_HINT,
            )
        self._echo_over_voice = over

    async def _apply_latency(self, seconds: float) -> None:
        """Reopen both streams with a new latency (between replies: never clips a reply)."""
        self._pending_latency = None
        old = [d.latency for d in (self._input, self._output) if isinstance(d, _SdStream)]
        for dev in (self._input, self._output):
            if isinstance(dev, _SdStream):
                dev.latency = seconds
        await self._close_devices()
        try:
            await asyncio.to_thread(self._reopen)
        except Exception as exc:  # the supervise loop sees the dead stream and recovers it
            event(log, "audio.reopen_failed", logging.WARNING, reason="latency", error=str(exc))
            return
        self._progress.clear()
        event(log, "audio.latency_changed", old=old[0] if old else None, new=seconds)

    async def _close_devices(self) -> None:
        for dev in (self._input, self._output):
            if dev is not None:
                await asyncio.to_thread(dev.close)

    async def _recover(self, lost: _Device, reason: str) -> None:
        """Close both devices, re-enumerate, reopen both; back off until it works."""
        self._device_errors += 1
        event(log, "audio.device_lost", logging.WARNING, device=lost.name, reason=reason)
        await self._reopen_with_backoff(lost.name)

    async def _reopen_with_backoff(self, device: str, first_failed: bool = False) -> None:
        """Reopen both devices until it works, doubling the delay (the device-lost path, and
        the wait for a device missing at start: first_failed, that attempt already made).
        Failures name the device, not the device list: audio.waiting listed that once."""
        self._recovering = True
        attempt = 1 if first_failed else 0
        try:
            while True:
                attempt += 1
                delay = reopen_delay(attempt)
                await self._close_devices()
                await asyncio.sleep(delay)
                try:
                    await asyncio.to_thread(self._reopen)
                except Exception as exc:
                    problem = exc.problem if isinstance(exc, AudioDeviceError) else str(exc)
                    event(
                        log,
                        "audio.reopen_failed",
                        logging.WARNING,
                        device=device,
                        attempt=attempt,
                        delay_s=delay,
                        error=problem,
                    )
                    continue
                event(log, "audio.device_reopened", device=device, attempt=attempt, delay_s=delay)
                self._progress.clear()
                return
        finally:
            self._recovering = False

    def _reopen(self) -> None:
        """Runs in a worker thread; stop() may have been called meanwhile."""
        if self._stopped:
            return
        portaudio = "sounddevice" in (self._cfg.input.backend, self._cfg.output.backend)
        if portaudio:
            devices.reinitialize()
        self._reset_stamps()
        self._open_all()
        if self._stopped:  # stop() ran while we were opening: do not leak open streams
            assert self._input is not None and self._output is not None
            self._input.close()
            self._output.close()
            self._release_files()
