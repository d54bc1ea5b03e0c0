"""Capture-path processing: WebRTC echo cancellation (AEC3), noise suppression, gain (AGC2) and
high-pass on the mic, with the far-end reference taken from what the speaker was handed.

Device side: `StampedHistory` keeps the newest second or so of one stream's samples (the mic's
blocks, or exactly what the playback callback wrote, volume and silence included) together with
the device time of its newest block (PortAudio's inputBufferAdcTime / outputBufferDacTime, or the
file devices' clock). Writing copies into preallocated arrays under a short lock: nothing
allocates, logs or blocks for long.

Loop side: `CaptureProcessor` takes each mic block, finds the reference span played at the same
device time from the two streams' stamps, resamples both to `RATE` and runs the WebRTC module in
10 ms frames. AEC3's own delay estimator then only has the acoustic path (plus `MARGIN_MS`) to
find; the buffering delay it would otherwise have to guess is taken from the stamps, so it
follows latency changes and device reopens. A stamp is not trusted alone: through a sound server
(ALSA's pulse plugin) one is often 15-40 ms off and the first second's are off by hundreds of ms,
while the sample counts of the two streams keep a steady relation. So the reference advances by
sample count, and the stamps' offset from it, as the median of the last ALIGN_BLOCKS blocks,
re-aligns it only when that median moves: each jump of the reference is an echo path change
AEC3 must re-learn, audibly at the start of the next reply.

Until AEC3 is trusted (at start, after a device reopen or a re-alignment) the mic is muted
while the agent is audible: half duplex for the first seconds of agent speech, so the agent never
hears itself; full duplex from then on. A fresh canceller lets the first 100-200 ms of echo
through at the room's level, and through PulseAudio the first two seconds' stamps put the
reference 30-50 ms behind the echo, which AEC3 cancels well mid-syllable while every onset
leaks. So trust needs the alignment to have held SETTLE_S and CONVERGED_FRAMES frames showing
the canceller at work (echo suppressed by CONVERGED_DB, or a quiet mic once the agent has spoken
longer than any echo delay); a frame that leaks (above LEAK_DBFS) starts the count again. "The
agent is audible" is the aligned reference or, when the engine says so, a reply being played
(GATE_HOLD_S after): the gate does not depend on the alignment it protects.

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

Once trusted, a loud processed frame while the agent is audible is either the user talking over
it or echo the canceller lost (the path moved: through PulseAudio an underrun shifts it by tens
of ms without the stamps showing it). `EchoLeakCheck` tells them apart by correlation with the
reference; a leak is muted and trust starts again.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from voicebox.audio.echo import linear_echo
from voicebox.audio.echo.double_talk import DoubleTalk
from voicebox.audio.resample import StreamResampler

if TYPE_CHECKING:
    from voicebox.config import Config

Samples = npt.NDArray[np.int16]

RATE = 16000  # processing rate: the session's rate, and a third of the work of 48 kHz
FRAME = RATE // 100  # 10 ms, the module's frame
MARGIN_MS = 5.0  # the reference is taken this much early (AEC3 lost the small room at 15+)
RESYNC_MS = 12.0  # the offset's median further off than this re-aligns at once
SLEW_MS = 0.5  # smaller offsets are walked back one sample per block (clock drift)
ALIGN_BLOCKS = 32  # the offset is the median of the stamps of this many recent mic blocks
ALIGN_MIN = 16  # and is acted on once this many are in (one stamp is never trusted alone)
HISTORY_S = 2.0  # reference kept on the device side
HOLD_S = 0.1  # a mic block waits at most this long for its reference (a late output thread)
ACTIVE_DBFS = -50.0  # reference above this: the agent is audible
ACTIVE_HOLD_S = 0.3  # the room's tail keeps echoing this long after the reference stops
ERLE_FRAMES = 500  # ERLE: the median over the last 5 s of frames with the agent audible
ERLE_CAP_DB = 60.0  # a frame suppressed to nothing counts as this much
CONVERGED_DB = 20.0  # a frame of echo suppressed this much shows the canceller has converged
CONVERGED_FRAMES = 50  # this many such frames (0.5 s of echo) and the canceller is trusted
LEAK_DBFS = -45.0  # a processed frame this loud while the agent is audible starts it again
SETTLE_S = 2.0  # no trust until the alignment has held this long (since a reset or re-alignment)
QUIET_AFTER_FRAMES = 30  # a quiet mic proves no echo only this long into the agent's speech
SILENT_PEAK = 8  # reference samples within +-8 (-72 dBFS) are silence: nothing to cancel
DITHER_SAMPLES = 1 << 14  # the reference's +-1 LSB dither, cycled (about a second at RATE)
IDLE_S = 0.6  # AEC3 runs until the reference has been silent this long (a room's delay + tail)
GATE_HOLD_S = 0.6  # after a reply was handed to the device, its echo can still arrive this long
LEAK_LAG_S = 0.25  # how far behind the aligned reference a leaking echo is looked for
LEAK_WINDOW = 16 * (RATE // 100)  # the newest 160 ms of processed audio is compared
LEAK_CORRELATION = 0.7  # processed audio this correlated with the reference is the agent's voice
LEAK_EVERY = 4  # a frame found not to be echo spares the check for the next 3 (its FFTs are the
# costliest part while the user talks over the agent; under qemu they starved the event loop)
LEVEL_FRAMES = 1000  # the echo and voice levels: over the last 10 s of such frames
LEVEL_MIN = 50  # and only once half a second of them is in (a short first request)
VOICE_MARGIN_DB = 0.0  # the user's voice under the echo + this: barge-in by voice mostly fails
LINEAR_VOICE_MARGIN_DB = -10.0  # the same with speexdsp's filter feeding AEC3
FULL_SCALE_POWER = 32768.0**2
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


@dataclass
class ProcessingStats:
    """Figures for status, the health line and the metrics file."""

    enabled: bool = False
    echo_cancellation: bool = False
    rate: int = RATE
    erle_db: float | None = None  # mic vs processed power while the agent is audible
    delay_ms: float | None = None  # output + input buffering, from the stamps
    aec_hint_ms: float = MARGIN_MS  # what AEC3's estimator is told remains
    cpu_percent: float = 0.0  # of one core, since start
    cpu_s: float = 0.0
    frames: int = 0
    aec_frames: int = 0  # frames through AEC3 (the others had no agent audio to cancel)
    resyncs: int = 0  # the stamps moved the reference span (reopen, latency change, drift)
    resets: int = 0
    holds: int = 0  # mic blocks held back until the output had written their reference
    converged: bool = False  # the canceller is trusted: full duplex
    leaks: int = 0  # frames of lost echo caught after trust (each starts the gate again)
    gated_s: float = 0.0  # mic muted while the agent spoke and the canceller was not yet trusted
    echo_dbfs: float | None = None  # the agent's echo at the mic (frames of echo alone)
    voice_dbfs: float | None = None  # the user's voice at the mic (the agent silent)
    linear_echo: bool = False  # speexdsp's MDF has converged and feeds AEC3
    double_talk_frames: int = 0  # frames sent from MDF's output: the user over the agent


class StampedHistory:
    """The newest `capacity` samples of one device stream and the device time of its blocks.

    One writer (the device thread) and one reader (the loop). Sample index i counts every sample
    ever written; `stamp()` gives the index and device time of the newest block's first sample
    and how far that device time is from the callback's own time (the stream's buffering).
    """

    def __init__(self, rate: int, seconds: float = HISTORY_S) -> None:
        self.rate = rate
        self._buf: Samples = np.zeros(max(0, int(rate * seconds)), dtype=np.int16)  # 0: stamps only
        self._lock = threading.Lock()
        self.total = 0
        # newest stamp: [index, device time, |device time - callback time|]; NaN until the first
        self._stamp = np.full(3, np.nan)
        self.epoch = 0  # bumped by reset(): a new stream, new stamps

    @property
    def capacity(self) -> int:
        return len(self._buf)

    def write(self, block: Samples, device_time: float, now: float) -> None:
        """Append one block (device thread). device_time: when its first sample hits the DAC or
        left the ADC; now: the callback's time on the same clock. Never raises."""
        n = len(block)
        cap = len(self._buf)
        with self._lock:
            index = self.total
            if cap:
                keep = min(n, cap)  # only the newest `cap` samples of a long block are held
                start = (index + n - keep) % cap  # sample i lives at i % cap, as read() expects
                first = min(keep, cap - start)
                self._buf[start : start + first] = block[n - keep : n - keep + first]
                if first < keep:
                    self._buf[: keep - first] = block[n - keep + first :]
            self.total = index + n
            self._stamp[0] = index
            self._stamp[1] = device_time
            self._stamp[2] = abs(device_time - now)

    def stamp(self) -> tuple[int, float, float] | None:
        """(index, device time, buffering seconds) of the newest block, or None before any."""
        with self._lock:
            if math.isnan(self._stamp[1]):
                return None
            return int(self._stamp[0]), float(self._stamp[1]), float(self._stamp[2])

    def read(self, start: int, out: Samples) -> int:
        """Copy samples [start, start+len(out)) into out; zeros where not (or no longer) held.
        Returns how many were real samples."""
        n = len(out)
        cap = len(self._buf)
        with self._lock:
            lo = max(start, self.total - cap)
            hi = min(start + n, self.total)
            if hi <= lo or cap == 0:
                out[:] = 0
                return 0
            out[: lo - start] = 0
            out[hi - start :] = 0
            a = lo % cap
            count = hi - lo
            first = min(count, cap - a)
            out[lo - start : lo - start + first] = self._buf[a : a + first]
            if first < count:
                out[lo - start + first : hi - start] = self._buf[: count - first]
            return count

    def reset(self) -> None:
        """Forget the stamps (the stream was reopened): alignment starts again from new ones."""
        with self._lock:
            self._stamp[:] = np.nan
            self.epoch += 1


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


def _powers(
    xs: tuple[Samples, ...], frames: int, scratch: npt.NDArray[np.float64]
) -> list[list[float]]:
    """The mean square of each 10 ms frame of each of xs, in one pass through scratch
    (preallocated, at least len(xs) * frames * FRAME long): at a few frames per block numpy's
    per-call overhead, not the arithmetic, is the cost, so the three signals share each call."""
    n = frames * FRAME
    f = scratch[: len(xs) * n]
    for i, x in enumerate(xs):
        f[i * n : (i + 1) * n] = x[:n]
    np.multiply(f, f, out=f)
    sums: list[float] = np.add.reduce(f.reshape(len(xs) * frames, FRAME), axis=1).tolist()
    return [[p / FRAME for p in sums[i * frames : (i + 1) * frames]] for i in range(len(xs))]


def _median(x: npt.NDArray[np.float64]) -> float:
    """np.median's value at a tenth of its cost for a few dozen values (and without the 2 MB of
    numpy code pages its first call faults in)."""
    s = sorted(x.tolist())
    h = len(s) // 2
    return float(s[h]) if len(s) % 2 else (s[h - 1] + s[h]) / 2


ACTIVE_POWER = (32768.0 * 10 ** (ACTIVE_DBFS / 20)) ** 2
LEAK_POWER = (32768.0 * 10 ** (LEAK_DBFS / 20)) ** 2


def _halved(x: Samples) -> npt.NDArray[np.float64]:
    """x at half its rate: each pair of samples summed (the first dropped when x is odd)."""
    y = x[len(x) % 2 :].astype(np.float64)
    halved: npt.NDArray[np.float64] = y[0::2] + y[1::2]
    return halved


class LevelRing:
    """The level (dBFS, mean power) of the last LEVEL_FRAMES frames of one kind, once LEVEL_MIN
    are in: the active level of a voice, as loud syllables weigh on a listener and on AEC3."""

    def __init__(self) -> None:
        self._power = np.zeros(LEVEL_FRAMES)
        self._n = 0

    def add(self, power: float) -> None:
        self._power[self._n % LEVEL_FRAMES] = power
        self._n += 1

    def dbfs(self) -> float | None:
        if self._n < LEVEL_MIN:
            return None
        mean = float(self._power[: min(self._n, LEVEL_FRAMES)].mean())
        return round(10 * math.log10(mean / FULL_SCALE_POWER + 1e-12), 1)


def echo_over_voice(stats: ProcessingStats) -> bool:
    """Is the agent's echo at the mic so much louder than the user's voice that AEC3's suppressor
    takes most of the user's barge-ins for echo? Bench rooms (voice minus echo, as measured here
    -> barge-ins detected), AEC3 alone: +7.6 dB -> 100 %, +4.0 -> 75 %, -2.2 -> 50 %; with
    speexdsp's filter feeding it: -4.4 -> 92 %, -8.4 -> 92 %, -12.4 -> 67 %, -16.4 -> 42 %. Only
    the clear case is reported (below VOICE_MARGIN_DB, or LINEAR_VOICE_MARGIN_DB once the filter
    feeds AEC3), so a warning means voice barge-in mostly fails, not that it might."""
    if stats.echo_dbfs is None or stats.voice_dbfs is None:
        return False
    margin = LINEAR_VOICE_MARGIN_DB if stats.linear_echo else VOICE_MARGIN_DB
    return stats.voice_dbfs - stats.echo_dbfs < margin


class EchoLeakCheck:
    """Is the newest processed audio the agent's own voice? The largest normalised
    cross-correlation of its last LEAK_WINDOW samples with the reference over the LEAK_LAG_S
    before them (an FFT only when asked: frames the canceller did not silence). 160 ms: over
    40 ms two different synthetic voices correlate up to 0.98, over 160 ms at most 0.61, while
    echo through a room stays above 0.72 (95 % of windows). Computed at half the rate (pairs of
    samples summed): the voice below 4 kHz is what correlates, at a third of the cost."""

    def __init__(self) -> None:
        self._span = int(LEAK_LAG_S * RATE) + LEAK_WINDOW
        self._far: Samples = np.zeros(self._span, dtype=np.int16)
        self._out: Samples = np.zeros(LEAK_WINDOW, dtype=np.int16)
        self._n = 1 << ((self._span + LEAK_WINDOW) // 2 - 1).bit_length()
        self._far_ctx, self._out_ctx = self._far, self._out

    def feed(self, far: Samples, out: Samples) -> None:
        """Append one chunk of reference and processed audio (whole frames)."""
        self._far_ctx = np.concatenate((self._far, far))
        self._out_ctx = np.concatenate((self._out, out))
        self._far = self._far_ctx[-self._span :]
        self._out = self._out_ctx[-LEAK_WINDOW:]

    def leaking(self, frame: int, frames: int) -> bool:
        """Frame `frame` of the `frames` fed last: is it echo?"""
        end = len(self._out_ctx) - (frames - 1 - frame) * FRAME
        w = _halved(self._out_ctx[end - LEAK_WINDOW : end])
        fend = len(self._far_ctx) - (frames - 1 - frame) * FRAME
        f = _halved(self._far_ctx[max(0, fend - self._span) : fend])
        ww = float(np.dot(w, w))
        win = len(w)
        if len(f) < win or ww <= 0.0:
            return False
        c = np.fft.irfft(np.fft.rfft(f, self._n) * np.conj(np.fft.rfft(w, self._n)), self._n)
        c = c[: len(f) - win + 1]
        cs = np.concatenate(([0.0], np.cumsum(f * f)))
        energy = cs[win:] - cs[: len(cs) - win]
        ncc = np.abs(c) / np.sqrt(energy * ww + 1.0)
        return bool(ncc.max() >= LEAK_CORRELATION)


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
        self._far_run = 0  # consecutive frames the agent has been audible (aligned reference)
        self._leak = EchoLeakCheck()
        self._leak_spared = 0  # frames left that the last "not echo" verdict covers
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
        self._leak_stale = False  # frames went by without AEC3: the leak check starts afresh
        self._mic_rs = StreamResampler(mic.rate, RATE)
        self._ref_rs = StreamResampler(reference.rate if reference else RATE, RATE)
        self._near = np.zeros(0, dtype=np.int16)  # mic at RATE, not yet a whole frame
        self._far = np.zeros(0, dtype=np.int16)  # reference at RATE, aligned with _near
        self._ref_pos: int | None = None  # reference index of the next sample to take
        self._ref_frac = 0.0
        self._offsets = np.zeros(ALIGN_BLOCKS)  # stamp target minus position, recent blocks
        self._n_offsets = 0
        self._epochs = (mic.epoch, reference.epoch if reference else 0)
        self._ref_block: Samples = np.zeros(4096, dtype=np.int16)
        self._held: tuple[Samples, int] | None = None
        self._t0 = time.monotonic()
        # meters
        self._active_until = -1.0  # audio time (s) until which the agent counts as audible
        self._audio_s = 0.0
        self._erle = np.full(ERLE_FRAMES, np.nan)  # per-frame dB, a ring
        self._echo_level = LevelRing()  # mic frames holding only the agent's echo
        self._voice_level = LevelRing()  # mic frames holding the user, the agent silent
        self._scratch = np.empty(3 * 8 * FRAME)  # _meter's float copies of far, near, out
        self._active_frames = 0
        self._good_frames = 0  # frames showing convergence since the last reset or re-alignment
        self._aligned_at = 0.0  # audio time of the last reset or re-alignment
        self._delay_ms: float | None = None
        self.stats = ProcessingStats(
            enabled=True,
            echo_cancellation=settings.echo_cancellation,
            aec_hint_ms=MARGIN_MS if settings.echo_cancellation else 0.0,
        )

    @property
    def linear_filter(self) -> bool:
        """Does speexdsp's MDF run ahead of AEC3 (echo cancellation on, libspeexdsp found)?"""
        return self._linear is not None

    # --- alignment ------------------------------------------------------------------------

    def reference_start(self, mic_index: int) -> float | None:
        """The reference index (fractional) played at the device time of mic sample
        `mic_index`, minus MARGIN_MS; None until both streams have stamps."""
        if self.reference is None:
            return None
        ms, rs = self.mic.stamp(), self.reference.stamp()
        if ms is None or rs is None:
            return None
        m_index, m_time, m_buffer = ms
        r_index, r_time, r_buffer = rs
        t = m_time + (mic_index - m_index) / self.mic.rate - MARGIN_MS / 1000.0
        delay = (m_buffer + r_buffer) * 1000.0
        self._delay_ms = delay if self._delay_ms is None else self._delay_ms * 0.95 + delay * 0.05
        return r_index + (t - r_time) * self.reference.rate

    def _reference_for(self, target: float | None, n_mic: int) -> Samples:
        """The reference at its device rate for a mic block of n_mic samples whose first one
        the stamps place at reference index `target` (reference_start)."""
        assert self.reference is not None
        ratio = self.reference.rate / self.mic.rate
        if target is not None:
            if self._ref_pos is None:
                self._resync(round(target))
            else:
                self._align(target - (self._ref_pos + self._ref_frac))
        if self._ref_pos is None:
            return np.zeros(round(n_mic * ratio), dtype=np.int16)
        want = self._ref_frac + n_mic * ratio
        n = int(want)
        self._ref_frac = want - n
        if n > len(self._ref_block):
            self._ref_block = np.zeros(n, dtype=np.int16)
        block = self._ref_block[:n]
        self.reference.read(self._ref_pos, block)
        self._ref_pos += n
        return block

    def _align(self, offset: float) -> None:
        """Take one block's stamp offset (reference samples); move the reference when the
        median of the recent ones says it is off."""
        self._offsets[self._n_offsets % ALIGN_BLOCKS] = offset
        self._n_offsets += 1
        if self._n_offsets < ALIGN_MIN:
            return
        held = self._offsets[: min(self._n_offsets, ALIGN_BLOCKS)]
        error = _median(held)
        assert self.reference is not None and self._ref_pos is not None
        per_ms = self.reference.rate / 1000.0
        if abs(error) > RESYNC_MS * per_ms:
            self._resync(round(self._ref_pos + self._ref_frac + error))
            self.stats.resyncs += 1
            self._good_frames = 0  # a new echo path for AEC3: trust it again once it has learned
            self._aligned_at = self._audio_s
        elif abs(error) > SLEW_MS * per_ms:
            step = 1.0 if error > 0 else -1.0
            self._ref_frac += step
            held -= step  # the offsets were measured from the old position

    def _resync(self, position: int) -> None:
        self._ref_pos = position
        self._ref_frac = 0.0
        self._n_offsets = 0
        self._ref_rs.reset()
        self._far = np.zeros(len(self._near), dtype=np.int16)

    # --- processing -----------------------------------------------------------------------

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
            target = self.reference_start(mic_index)
            if not self._reference_ready(target, len(block)) and (
                len(block) < HOLD_S * self.mic.rate
            ):
                self._held = (block.copy(), mic_index)
                self.stats.holds += 1
                return np.zeros(0, dtype=np.int16)
            return self._process(block, mic_index, target)
        finally:
            self.stats.cpu_s += self._clock() - t

    def _reference_ready(self, target: float | None, n_mic: int) -> bool:
        """Has the output written the reference for the n_mic samples from `target` on? (It runs
        ahead of the mic by its latency, but a late output thread must not make it a gap.)"""
        if self.reference is None or target is None:
            return True
        end = target + n_mic * self.reference.rate / self.mic.rate
        return self.reference.total >= math.ceil(end)

    def _process(self, block: Samples, mic_index: int, target: float | None) -> Samples:
        epochs = (self.mic.epoch, self.reference.epoch if self.reference else 0)
        if epochs != self._epochs:
            self._epochs = epochs
            self.reset()
        far = None
        if self.reference is not None:  # first: a resync restarts _far against the old _near
            far = self._ref_rs.process(self._reference_for(target, len(block)))
        near = self._mic_rs.process(block)
        self._near = np.concatenate((self._near, near)) if len(self._near) else near
        if far is not None:
            self._far = np.concatenate((self._far, far))  # a copy: far may be _ref_block
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
        self._meter(near_frames, far_frames, out, playing)
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
        if self._linear_n >= LINEAR_BLOCKS and _median(self._linear_db) >= LINEAR_ON_DB:
            self._linear_on = True
            self._good_frames = 0

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

    def _meter(self, near: Samples, far: Samples | None, out: Samples, playing: bool) -> None:
        """ERLE and convergence from per-frame powers; mutes `out` (in place) where the agent
        is audible and the canceller is not trusted yet. far None with a reference: AEC3 at
        rest, the agent silent (only the user's level is measured)."""
        frames = len(near) // FRAME
        self.stats.frames += frames
        if len(self._scratch) < 3 * frames * FRAME:
            self._scratch = np.empty(3 * frames * FRAME)
        if far is None:
            self._audio_s += frames * FRAME / RATE
            if self.reference is not None:  # AEC3 at rest: the agent is silent
                self._far_run = 0
                self._leak_stale = True
                near_p, out_p = _powers((near, out), frames, self._scratch)
                for p_near, p_out in zip(near_p, out_p, strict=True):
                    if p_out >= ACTIVE_POWER:  # speech left after noise suppression
                        self._voice_level.add(p_near)
            return
        powers = _powers((far, near, out), frames, self._scratch)
        if self._leak_stale:  # what it held is from before a quiet spell
            self._leak = EchoLeakCheck()
            self._leak_stale = False
        self._leak.feed(far, out)
        for i, (p_far, p_near, p_out) in enumerate(zip(*powers, strict=True)):
            self._audio_s += FRAME / RATE
            if p_far >= ACTIVE_POWER:
                self._active_until = self._audio_s + ACTIVE_HOLD_S
            audible = self._audio_s <= self._active_until
            self._far_run = self._far_run + 1 if audible else 0
            trusted = self._trusted()
            if not audible:
                if not trusted and playing:
                    out[i * FRAME : (i + 1) * FRAME] = 0
                    self.stats.gated_s += FRAME / RATE
                elif not playing and p_out >= ACTIVE_POWER:
                    self._voice_level.add(p_near)  # the agent silent: the user
                continue
            erle = 10 * math.log10((p_near + 1.0) / (p_out + 1.0))
            if p_near >= ACTIVE_POWER:
                # the median over many frames: the user talking over the agent (double talk,
                # little "enhancement") is a minority of them and does not drag it down
                self._erle[self._active_frames % ERLE_FRAMES] = min(ERLE_CAP_DB, erle)
                self._active_frames += 1
            if trusted and p_out < LEAK_POWER and p_near >= ACTIVE_POWER:
                self._echo_level.add(p_near)  # cancelled to quiet: it was echo alone
            if trusted and p_out >= LEAK_POWER:
                if self._leak_spared > 0:
                    self._leak_spared -= 1
                elif self._leak.leaking(i, frames):
                    self._good_frames = 0
                    trusted = False
                    self.stats.leaks += 1
                else:
                    self._leak_spared = LEAK_EVERY - 1
            if not trusted:
                if p_out >= LEAK_POWER:
                    self._good_frames = 0
                elif p_near < ACTIVE_POWER:
                    self._good_frames += self._far_run > QUIET_AFTER_FRAMES
                elif erle >= CONVERGED_DB:
                    self._good_frames += 1
                out[i * FRAME : (i + 1) * FRAME] = 0
                self.stats.gated_s += FRAME / RATE

    def _trusted(self) -> bool:
        return (
            self._good_frames >= CONVERGED_FRAMES and self._audio_s - self._aligned_at >= SETTLE_S
        )

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
        self._ref_rs.reset()
        self._near = np.zeros(0, dtype=np.int16)
        self._far = np.zeros(0, dtype=np.int16)
        self._ref_pos = None
        self._ref_frac = 0.0
        self._n_offsets = 0
        self._good_frames = 0
        self._aligned_at = self._audio_s
        self._leak = EchoLeakCheck()
        self._leak_spared = 0
        self.stats.resets += 1

    def snapshot(self) -> ProcessingStats:
        s = self.stats
        elapsed = max(1e-9, time.monotonic() - self._t0)
        s.cpu_percent = round(100.0 * s.cpu_s / elapsed, 3)
        s.delay_ms = None if self._delay_ms is None else round(self._delay_ms, 1)
        s.converged = self.reference is not None and self._trusted()
        s.gated_s = round(s.gated_s, 2)
        s.echo_dbfs = self._echo_level.dbfs()
        s.voice_dbfs = self._voice_level.dbfs()
        s.linear_echo = self._linear_on
        if self._active_frames >= 100:  # a second of echo heard
            s.erle_db = round(float(np.nanmedian(self._erle)), 1)
        return ProcessingStats(**vars(s))
