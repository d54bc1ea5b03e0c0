"""The capture processor: WebRTC echo cancellation (AEC3), noise suppression, gain (AGC2) and
high-pass on the mic, with the far end taken from what the speaker was handed; its settings.

`CaptureProcessor` takes each mic block, gets the reference span played at the same device time
(`history.ReferenceAlignment`), resamples both to `RATE` and runs the WebRTC module in 10 ms
frames; `gate.EchoGate` mutes what the canceller cannot yet be trusted with and meters it.

Where libspeexdsp is installed, its MDF filter (`linear_echo`) runs ahead of AEC3 over a 250 ms
tail: AEC3's own linear filter is short, and a long or loud echo left to its suppressor takes a
quieter user with it. MDF adapts from the start but feeds AEC3 only once it takes LINEAR_ON_DB
off the echo (while it learns it can add echo); that switch is a new echo path for AEC3, so trust
starts again. Bench: barge-ins detected in the large and loud rooms 75 / 42 % -> 100 / 92 %.
Once MDF feeds AEC3, a frame where the user talks over the agent (`double_talk`) is sent from
MDF's output, not AEC3's, whose residual suppressor would take half of the user's words.

AEC3 is most of the cost (about 0.8 % of a core here at 16 kHz, fed a reference dithered by one
step: digital silence after speech made it six times that): while the aligned reference has
been silent for IDLE_S and no reply is being played, the mic goes through a second module with
the same settings but no AEC3, which is then neither fed nor reset and keeps what it learned of
the room for the next reply. AGC2 runs apart, after either, so its gain does not jump at a switch.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from voicebox.audio.echo import linear_echo
from voicebox.audio.echo.double_talk import DoubleTalk
from voicebox.audio.echo.frames import FRAME, RATE, Samples, median
from voicebox.audio.echo.gate import ACTIVE_POWER, EchoGate
from voicebox.audio.echo.history import (
    HOLD_S,
    MARGIN_MS,
    Move,
    ReferenceAlignment,
    StampedHistory,
)
from voicebox.audio.echo.meters import ProcessingStats
from voicebox.audio.resample import StreamResampler

if TYPE_CHECKING:
    from voicebox.config import Config

SILENT_PEAK = 8  # reference samples within +-8 (-72 dBFS) are silence: nothing to cancel
DITHER_SAMPLES = 1 << 14  # the reference's +-1 LSB dither, cycled (about a second at RATE)
IDLE_S = 0.6  # AEC3 runs until the reference has been silent this long (a room's delay + tail)
GATE_HOLD_S = 0.6  # after a reply was handed to the device, its echo can still arrive this long
LINEAR_ON_DB = 10.0  # MDF's output feeds AEC3 once it takes this much off the echo (median)
LINEAR_BLOCKS = 100  # over this many recent mic blocks with the agent's echo in them
NS_LEVELS = {"low": 0, "moderate": 1, "high": 2, "very_high": 3}
LIBRARY = "pywebrtc-audio"
_MODULE = "pywebrtc_audio"


def library_available() -> bool:
    """True when the WebRTC binding can be imported."""
    return importlib.util.find_spec(_MODULE) is not None


def echo_cancellation_wanted(setting: str, mode: str, button_mode: str) -> bool:
    """Resolve `audio.processing.echo_cancellation`: auto is on whenever the mic is live while
    the agent can be heard (always_on and wake_word, or push_to_talk with a toggle button); in
    hold mode the mic is live only while held, and pressing already cuts the agent."""
    if setting in ("on", "off"):
        return setting == "on"
    return mode in ("always_on", "wake_word") or button_mode == "toggle"


def processing_settings(cfg: Config) -> ProcessingSettings:
    """audio.processing resolved against the conversation mode and the button."""
    p = cfg.audio.processing
    echo = echo_cancellation_wanted(
        p.echo_cancellation, cfg.conversation.mode, cfg.gpio.button.mode
    )
    return ProcessingSettings(echo, p.noise_suppression, p.auto_gain, p.high_pass)


@dataclass(frozen=True)
class ProcessingSettings:
    """What the processor runs (resolved from audio.processing and the conversation mode)."""

    echo_cancellation: bool = True
    noise_suppression: str = "moderate"  # off or a key of NS_LEVELS
    auto_gain: bool = False
    high_pass: bool = True

    @property
    def active(self) -> bool:
        return (
            self.echo_cancellation
            or self.noise_suppression != "off"
            or self.auto_gain
            or self.high_pass
        )


def _apm(settings: ProcessingSettings, echo: bool) -> Any:
    """The WebRTC module for `settings`, with or without AEC3; gain runs apart (`_gain`)."""
    from pywebrtc_audio import AudioProcessor

    ns = settings.noise_suppression
    return AudioProcessor(
        sample_rate=RATE,
        num_channels=1,
        echo_cancellation=echo,
        noise_suppression=ns != "off",
        high_pass_filter=settings.high_pass,
        ns_level=NS_LEVELS.get(ns, 1),
        stream_delay_ms=int(MARGIN_MS) if echo else 0,
    )


def _gain(settings: ProcessingSettings) -> Any:
    """AGC2 on its own, after either module: one gain state, so switching costs no level step."""
    if not settings.auto_gain:
        return None
    from pywebrtc_audio import GainController

    return GainController(sample_rate=RATE, num_channels=1)


class CaptureProcessor:
    """Mic blocks in (device rate, with their sample index), processed audio out at RATE.

    Runs on one thread (the event loop): the WebRTC module is not thread-safe.
    """

    def __init__(
        self,
        settings: ProcessingSettings,
        mic: StampedHistory,
        reference: StampedHistory | None,
        clock: Any = time.thread_time,
        playing: Callable[[], bool] | None = None,
    ) -> None:
        self.rate = RATE
        self.settings = settings
        self.mic = mic
        self.reference = reference if settings.echo_cancellation else None
        self._clock = clock
        self._playing = playing  # the engine: is a reply being handed to the device?
        self._playing_until = -1.0  # monotonic time until which a reply's echo may arrive
        self._apm = _apm(settings, echo=self.reference is not None)
        # AEC3 is most of the cost: with the reference silent past any echo tail, the mic goes
        # through a module without it; AEC3 is not fed then and keeps its state
        self._plain = _apm(settings, echo=False) if self.reference is not None else None
        self._gain = _gain(settings)
        self._linear_on = False  # MDF's output, not the mic, goes to AEC3
        self._double_talk = DoubleTalk(FRAME)
        self._linear_db = np.zeros(LINEAR_BLOCKS)  # what MDF took off the echo, recent blocks
        self._linear_n = 0
        # speexdsp's MDF ahead of AEC3 (voicebox/audio/echo/linear_echo.py), when installed
        self._linear = (
            linear_echo.LinearEchoFilter(RATE, FRAME)
            if self.reference is not None and linear_echo.available()
            else None
        )
        self._far_quiet_s = math.inf  # audio seconds the aligned reference has been silent
        rng = np.random.default_rng(0)
        self._dither: Samples = rng.integers(-1, 2, DITHER_SAMPLES).astype(np.int16)
        self._dither_at = 0
        self._mic_rs = StreamResampler(mic.rate, RATE)
        self._alignment = ReferenceAlignment(mic, self.reference)
        self._near = np.zeros(0, dtype=np.int16)  # mic at RATE, not yet a whole frame
        self._far = np.zeros(0, dtype=np.int16)  # reference at RATE, aligned with _near
        self._epochs = (mic.epoch, reference.epoch if reference else 0)
        self._held: tuple[Samples, int] | None = None
        self._t0 = time.monotonic()
        self.stats = ProcessingStats(
            enabled=True,
            echo_cancellation=settings.echo_cancellation,
            aec_hint_ms=MARGIN_MS if settings.echo_cancellation else 0.0,
        )
        self._gate = EchoGate(self.stats, reference=self.reference is not None)

    @property
    def linear_filter(self) -> bool:
        """Does speexdsp's MDF run ahead of AEC3 (echo cancellation on, libspeexdsp found)?"""
        return self._linear is not None

    def reference_start(self, mic_index: int) -> float | None:
        """The reference index (fractional) played at the device time of mic sample
        `mic_index`, minus MARGIN_MS; None until both streams have stamps."""
        return self._alignment.start(mic_index)

    def process(self, block: Samples, mic_index: int) -> Samples:
        """Process one mic block (device rate) whose first sample has index mic_index; returns
        the processed audio at RATE so far (whole 10 ms frames; the rest waits)."""
        t = self._clock()
        if self._playing is not None and self._playing():
            self._playing_until = time.monotonic() + GATE_HOLD_S
        try:
            if self._held is not None:  # the mic held back last time comes first
                held, held_index = self._held
                self._held = None
                block, mic_index = np.concatenate((held, block)), held_index
            target = self._alignment.start(mic_index)
            if not self._alignment.ready(target, len(block)) and (
                len(block) < HOLD_S * self.mic.rate
            ):
                self._held = (block.copy(), mic_index)
                self.stats.holds += 1
                return np.zeros(0, dtype=np.int16)
            return self._process(block, mic_index, target)
        finally:
            self.stats.cpu_s += self._clock() - t

    def _process(self, block: Samples, mic_index: int, target: float | None) -> Samples:
        epochs = (self.mic.epoch, self.reference.epoch if self.reference else 0)
        if epochs != self._epochs:
            self._epochs = epochs
            self.reset()
        far = None
        if self.reference is not None:  # first: a resync restarts _far against the old _near
            far, moved = self._alignment.take(target, len(block))
            if moved is not None:
                self._far = np.zeros(len(self._near), dtype=np.int16)
            if moved is Move.REALIGNED:
                self.stats.resyncs += 1
                self._gate.realigned()  # a new echo path for AEC3: trust it once it has learned
        near = self._mic_rs.process(block)
        self._near = np.concatenate((self._near, near)) if len(self._near) else near
        if far is not None:
            self._far = np.concatenate((self._far, far))  # a copy: far may be a reused buffer
            if len(self._near) - len(self._far) > RATE // 10:  # a stalled reference: silence
                pad = np.zeros(len(self._near) - len(self._far), dtype=np.int16)
                self._far = np.concatenate((self._far, pad))
        # soxr hands out its output in bursts (up to 40 ms behind its input, at a different
        # phase per rate): a frame waits until both sides have it, as inserting silence into
        # the reference would move it against the mic
        ready = len(self._near) if far is None else min(len(self._near), len(self._far))
        whole = ready - ready % FRAME
        if whole == 0:
            return np.zeros(0, dtype=np.int16)
        near_frames = self._near[:whole]
        far_frames = self._far[:whole] if self.reference is not None else None
        playing = time.monotonic() <= self._playing_until
        out: Samples
        if far_frames is None:
            out = self._apm.process(near_frames)
        elif self._echo_possible(far_frames, playing):
            near_in = near_frames
            if self._linear is not None:  # adapts from the start; feeds AEC3 once it works
                linear = self._linear.process(near_frames, far_frames)
                if self._linear_on:
                    near_in = linear
                else:
                    self._linear_check(near_frames, far_frames, linear)
            out = self._apm.process(near_in, self._dithered(far_frames))
            self.stats.aec_frames += whole // FRAME
            if self._linear_on:  # the user over the agent: MDF's frames, not AEC3's
                talking = self._double_talk.frames(near_frames, near_in, out)
                out.reshape(-1, FRAME)[talking] = near_in.reshape(-1, FRAME)[talking]
                self.stats.double_talk_frames += int(talking.sum())
        else:
            assert self._plain is not None
            out = self._plain.process(near_frames)
            far_frames = None  # no agent audio: nothing to meter or gate
        if self._gain is not None:
            out = self._gain.process(out)
        self._gate.meter(near_frames, far_frames, out, playing)
        self._near = self._near[whole:]  # a view: the next block concatenates anew
        if self.reference is not None:
            self._far = self._far[whole:]
            if len(self._far) > len(self._near) + RATE // 10:  # more than 100 ms ahead: drift
                self._far = self._far[len(self._far) - len(self._near) :]
        return out

    def _linear_check(self, near: Samples, far: Samples, linear: Samples) -> None:
        """Has MDF converged? Until then (at first: tens of dB of echo it adds while it learns,
        through AEC3) AEC3 gets the mic itself. Switching is a new echo path for AEC3, so its
        trust starts again: the mic is muted while the agent speaks until it has re-learned."""
        p_far, p_near, p_lin = (
            float(np.dot(x, x.astype(np.float64))) / max(1, len(x)) for x in (far, near, linear)
        )
        if p_far < ACTIVE_POWER or p_near < ACTIVE_POWER:
            return
        self._linear_db[self._linear_n % LINEAR_BLOCKS] = 10 * math.log10(
            (p_near + 1.0) / (p_lin + 1.0)
        )
        self._linear_n += 1
        if self._linear_n >= LINEAR_BLOCKS and median(self._linear_db) >= LINEAR_ON_DB:
            self._linear_on = True
            self._gate.restart()

    def _dithered(self, far: Samples) -> Samples:
        """far plus +-1 LSB of noise (-96 dBFS), for AEC3: digital silence after speech lets
        its filter states decay into subnormal floats, which cost x86 tens of times the normal
        arithmetic (AEC3 took 5 % of a core on a reply with pauses, 0.7 % dithered)."""
        n = len(far)
        if n > len(self._dither):  # a backlog worked off at once
            self._dither = np.resize(self._dither, n)
        if self._dither_at + n > len(self._dither):
            self._dither_at = 0
        wide = far.astype(np.int32)
        wide += self._dither[self._dither_at : self._dither_at + n]
        self._dither_at += n
        return np.clip(wide, -32768, 32767).astype(np.int16)

    def _echo_possible(self, far: Samples, playing: bool) -> bool:
        """Can the mic hold echo of the agent? A reply being played, or reference above
        SILENT_PEAK within the last IDLE_S (the room's delay and tail, with room to spare)."""
        if int(far.max()) > SILENT_PEAK or int(far.min()) < -SILENT_PEAK:
            self._far_quiet_s = 0.0
        else:
            self._far_quiet_s += len(far) / RATE
        return playing or self._far_quiet_s < IDLE_S

    def reset(self) -> None:
        """A device was reopened: new stamps, a new acoustic path maybe; start over."""
        self._apm.reset()
        if self._linear is not None:
            self._linear.reset()
            self._linear_on = False
            self._linear_n = 0
        self._double_talk.reset()
        if self._plain is not None:
            self._plain.reset()
        if self._gain is not None:
            self._gain.reset()
        self._far_quiet_s = math.inf
        self._mic_rs.reset()
        self._alignment.reset()
        self._near = np.zeros(0, dtype=np.int16)
        self._far = np.zeros(0, dtype=np.int16)
        self._gate.reset()
        self.stats.resets += 1

    def snapshot(self) -> ProcessingStats:
        s = self.stats
        elapsed = max(1e-9, time.monotonic() - self._t0)
        s.cpu_percent = round(100.0 * s.cpu_s / elapsed, 3)
        delay_ms = self._alignment.delay_ms
        s.delay_ms = None if delay_ms is None else round(delay_ms, 1)
        s.converged = self.reference is not None and self._gate.trusted()
        s.gated_s = round(s.gated_s, 2)
        s.echo_dbfs = self._gate.echo_level.dbfs()
        s.voice_dbfs = self._gate.voice_level.dbfs()
        s.linear_echo = self._linear_on
        erle_db = self._gate.erle.median_db()
        if erle_db is not None:  # a second of echo heard
            s.erle_db = erle_db
        return ProcessingStats(**vars(s))
