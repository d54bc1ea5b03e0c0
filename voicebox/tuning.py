"""Adaptive tuning policy: buffer, chunk and timeout settings from load and audio counters.

Pure: no I/O, the time is passed in. Trouble (underruns, overflows, high load, slow pongs,
memory pressure) raises or shrinks a setting at once; a calm period undoes it slowly, one step at
a time, and only once the trouble has stayed away (add fast, decay slow). The targets depend only
on the conditions, never on the current values, so a steady input converges and never flaps.
Link probes (`probe_timing`) follow the measured round trip and the load within a detection
budget, so a half-open link is found in under 3 s and a slow loop is never taken for one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from voicebox.audio.port import AudioStats
from voicebox.config import Config
from voicebox.monitor import Environment, Sample

HOLD_S = 60.0  # trouble must stay away this long before anything decays
STEP_EVERY_S = 20.0  # at most one decay (or memory) step per setting this often
CALM_MARGIN_PERCENT = 15.0  # CPU counts as calm only this far below tuning.cpu_high_percent
HOT_C = 80.0  # the Pi 5 starts throttling its cores here
COOL_C = 75.0
LOAD_LATENCY_S = 0.2  # device latency under load (platform.md 4.2)
SLOW_PONG_MS = 200.0
PONG_ALPHA = 0.3
RING_FLOOR_MS = 4000
RESUME_FLOOR_S = 0.5
MEMORY_OK_FACTOR = 1.5  # memory pressure ends above memory_low_mb times this
# Link probes: a half-open link is found within interval + timeout, DETECT_BUDGET_S at most.
DETECT_BUDGET_S = 2.75  # of the 3 s target; the rest is the loop's own scheduling
PROBE_RTT_FACTOR = 4.0  # a pong may take this many round trips (p99) ...
PROBE_ALLOWANCE_S = 1.0  # ... plus this, for a busy loop (GC, a slow call) on either side
PROBE_ALLOWANCE_LOADED_S = 1.5  # under load: 3x the stress bench's 450 ms event-loop stalls
PROBE_TIMEOUT_MAX_S = 2.0
PROBE_INTERVAL_S = (0.5, 1.0)
NEEDS_QUIET = frozenset({"ring_ms", "chunk_ms", "latency_s"})  # reopen a stream or cut a reply

# profile -> (lowest initial pre-roll ms, largest ring ms): small boards start safer and leaner
PROFILES: dict[str, tuple[int, int]] = {
    "pi5-2gb": (200, 20000),
    "pi": (200, 20000),
    "small": (160, 20000),
    "pi5": (150, 30000),
    "desktop": (0, 10**9),
}


@dataclass(frozen=True)
class Tuning:
    """The tunable settings in force."""

    prebuffer_ms: int  # playback pre-roll before a reply starts
    ring_ms: int  # playback ring capacity
    chunk_ms: int  # capture chunk duration
    receive_timeout_s: float  # silence from the server that triggers a link check
    latency_s: float | None  # PortAudio latency; None = as configured ("low"/"high")
    resume_buffer_s: float  # mic audio kept while (re)connecting
    probe_interval_s: float = 1.0  # link probes while a session lives (probe_timing)
    probe_timeout_s: float = PROBE_ALLOWANCE_S


@dataclass(frozen=True)
class TuningChange:
    """One setting changed; needs_quiet ones are only returned between replies."""

    name: str
    old: Any
    new: Any
    reason: str
    needs_quiet: bool


def _clamp(value: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, value))


def probe_timing(rtt_ms: float | None, loaded: bool) -> tuple[float, float]:
    """(interval_s, timeout_s) for link probes from the round trip (p99, ms) and the load.

    timeout = PROBE_RTT_FACTOR * rtt + an allowance for a stalled loop (larger under load),
    at most PROBE_TIMEOUT_MAX_S; interval = what is left of DETECT_BUDGET_S, 0.5-1 s. Both are
    rounded to 0.05 s so the round trip's jitter does not change them every sample.
    """
    rtt_s = 0.0 if rtt_ms is None or not math.isfinite(rtt_ms) else max(0.0, rtt_ms) / 1000.0
    allowance = PROBE_ALLOWANCE_LOADED_S if loaded else PROBE_ALLOWANCE_S
    timeout = _clamp(allowance + PROBE_RTT_FACTOR * rtt_s, allowance, PROBE_TIMEOUT_MAX_S)
    timeout = math.ceil(timeout * 20) / 20
    interval = _clamp(DETECT_BUDGET_S - timeout, *PROBE_INTERVAL_S)
    return math.floor(interval * 20) / 20, timeout


def _round10(ms: float) -> int:
    return int(math.ceil(ms / 10.0) * 10)


class Tuner:
    """Derives `Tuning` from the config, the board profile and what `update` is told."""

    def __init__(self, cfg: Config, env: Environment) -> None:
        t, out, inp, conv = cfg.tuning, cfg.audio.output, cfg.audio.input, cfg.conversation
        self.adaptive = t.adaptive
        self.cpu_high = t.cpu_high_percent
        self.memory_low_mb = t.memory_low_mb
        configured_latency = out.latency if isinstance(out.latency, float | int) else None
        # Without adaptation the probes keep the loaded timing: nothing widens them under load.
        probe_interval, probe_timeout = probe_timing(None, loaded=True)
        self.configured = Tuning(
            prebuffer_ms=out.prebuffer_ms,
            ring_ms=out.buffer_ms,
            chunk_ms=inp.chunk_ms,
            receive_timeout_s=conv.receive_timeout_s,
            latency_s=None if configured_latency is None else float(configured_latency),
            resume_buffer_s=conv.resume_buffer_s,
            probe_interval_s=probe_interval,
            probe_timeout_s=probe_timeout,
        )
        c = self.configured
        # bounds
        self.pre_lo = min(t.prebuffer_min_ms, t.prebuffer_max_ms)
        self.pre_hi = max(t.prebuffer_min_ms, t.prebuffer_max_ms)
        self.ring_hi = c.ring_ms
        self.ring_lo = min(c.ring_ms, max(RING_FLOOR_MS, 2 * self.pre_hi))
        self.chunk_lo, self.chunk_hi = c.chunk_ms, max(c.chunk_ms, t.chunk_max_ms)
        self.rt_lo, self.rt_hi = (
            c.receive_timeout_s,
            max(c.receive_timeout_s, t.receive_timeout_max_s),
        )
        self.latency_loaded = max(c.latency_s or 0.0, LOAD_LATENCY_S)
        self.resume_lo = min(c.resume_buffer_s, RESUME_FLOOR_S)
        # the starting point: the configured values, adjusted for the board
        pre_floor, ring_cap = PROFILES.get(env.profile, PROFILES["desktop"])
        calm_interval, calm_timeout = probe_timing(None, loaded=False)  # until measured
        self.base = Tuning(
            prebuffer_ms=int(_clamp(max(c.prebuffer_ms, pre_floor), self.pre_lo, self.pre_hi)),
            ring_ms=int(_clamp(min(c.ring_ms, ring_cap), self.ring_lo, self.ring_hi)),
            chunk_ms=c.chunk_ms,
            receive_timeout_s=c.receive_timeout_s,
            latency_s=c.latency_s,
            resume_buffer_s=c.resume_buffer_s,
            probe_interval_s=calm_interval,
            probe_timeout_s=calm_timeout,
        )
        if not self.adaptive:
            self.base = c
        self._current = self.base
        self._want: dict[str, Any] = dataclasses.asdict(self.base)
        self._why: dict[str, str] = {}
        self._stepped: dict[str, float] = {}
        self._ring_floor = self.ring_lo  # raised for good when the ring overflows
        self._last_audio: AudioStats | None = None
        self._pong_ms: float | None = None
        self._probe_rtt_ms: float | None = None
        never = -math.inf
        self._play_trouble = self._capture_trouble = self._link_trouble = never
        self._memory_trouble = never

    @property
    def current(self) -> Tuning:
        return self._current

    # --- inputs ------------------------------------------------------------------------------

    def _deltas(self, audio: AudioStats) -> tuple[int, int, int, int]:
        """(underruns, output underflows, capture lost, ring overflows) since the last update."""
        last, self._last_audio = self._last_audio, dataclasses.replace(audio)
        if last is None:
            return 0, 0, 0, 0

        def d(name: str) -> int:
            return max(0, int(getattr(audio, name)) - int(getattr(last, name)))  # a reset is 0

        return (
            d("underruns"),
            d("output_underflows"),
            d("input_overflows") + d("dropped_chunks"),
            d("ring_overflows"),
        )

    def _load(self, s: Sample | None) -> tuple[str, str]:
        """("high" | "mid" | "calm", why)."""
        if s is None:
            return "calm", ""
        if s.throttled_now:
            return "high", f"throttled={s.throttled:#x}"
        if s.temp_c is not None and s.temp_c >= HOT_C:
            return "high", f"temp_c={s.temp_c:.0f}"
        if s.cpu_percent >= self.cpu_high:
            return "high", f"cpu={s.cpu_percent:.0f}%"
        if s.cpu_percent >= self.cpu_high - CALM_MARGIN_PERCENT:
            return "mid", ""
        if s.temp_c is not None and s.temp_c >= COOL_C:
            return "mid", ""
        return "calm", ""

    def _memory(self, s: Sample | None) -> str:
        """ "low", "ok" or "mid" (between: neither shrink nor restore)."""
        if s is None or "mem_available" in s.unreadable:
            return "ok"
        if s.mem_available_mb < self.memory_low_mb:
            return "low"
        return "ok" if s.mem_available_mb >= self.memory_low_mb * MEMORY_OK_FACTOR else "mid"

    def _can_step(self, name: str, now: float) -> bool:
        return now - self._stepped.get(name, -math.inf) >= STEP_EVERY_S

    def _set(self, name: str, value: Any, reason: str, now: float) -> None:
        if value != self._want[name]:
            self._want[name] = value
            self._why[name] = reason
            self._stepped[name] = now

    # --- policy ------------------------------------------------------------------------------

    def update(
        self,
        now: float,
        sample: Sample | None,
        audio: AudioStats,
        pong_ms: float | None,
        between_replies: bool,
        probe_rtt_ms: float | None = None,
    ) -> list[TuningChange]:
        """Feed the latest readings; returns the changes to apply now (none if not adaptive).
        probe_rtt_ms: the link probes' round trip (p99), ms."""
        if not self.adaptive:
            return []
        underruns, underflows, capture_lost, ring_overflows = self._deltas(audio)
        load, load_why = self._load(sample)
        memory = self._memory(sample)
        if pong_ms is not None and math.isfinite(pong_ms) and pong_ms >= 0:
            p = self._pong_ms
            self._pong_ms = pong_ms if p is None else p + PONG_ALPHA * (pong_ms - p)
        slow_link = self._pong_ms is not None and self._pong_ms >= SLOW_PONG_MS
        lagging = audio.handoff_lag_ms > self._want["chunk_ms"]
        if load == "high":
            self._play_trouble = self._capture_trouble = self._link_trouble = now
        if underruns or underflows:
            self._play_trouble = now
        if capture_lost or lagging:
            self._capture_trouble = now
        if slow_link:
            self._link_trouble = now
        if memory == "low":
            self._memory_trouble = now
        calm = load == "calm"
        quiet_play = calm and now - self._play_trouble >= HOLD_S
        quiet_capture = calm and now - self._capture_trouble >= HOLD_S
        quiet_link = calm and now - self._link_trouble >= HOLD_S
        base = self.base

        # pre-roll: up at once on underruns (and to a floor under load), down slowly when quiet
        pre = self._want["prebuffer_ms"]
        load_floor = min(self.pre_hi, 2 * base.prebuffer_ms)
        if underruns or underflows:
            n = underruns + underflows
            up = _round10(max(pre * 1.5, pre + 40 * n))
            self._set("prebuffer_ms", min(self.pre_hi, up), f"underruns={n}", now)
        elif load == "high" and pre < load_floor:
            self._set("prebuffer_ms", load_floor, load_why, now)
        elif quiet_play and pre > base.prebuffer_ms and self._can_step("prebuffer_ms", now):
            down = max(base.prebuffer_ms, pre - max(10, _round10(pre * 0.15)))
            self._set("prebuffer_ms", down, f"quiet_s={now - self._play_trouble:.0f}", now)

        # device latency: larger under load or when the callback runs late
        if load == "high" or underflows:
            why = load_why or f"output_underflows={underflows}"
            self._set("latency_s", self.latency_loaded, why, now)
        elif quiet_play and self._want["latency_s"] != base.latency_s:
            self._set("latency_s", base.latency_s, "quiet", now)

        # capture chunk: larger when the loop drops or lags behind the mic
        chunk = self._want["chunk_ms"]
        if capture_lost or lagging:
            why = f"capture_lost={capture_lost}" if capture_lost else "handoff_lag"
            self._set("chunk_ms", min(self.chunk_hi, 2 * chunk), why, now)
        elif load == "high" and chunk < min(self.chunk_hi, 2 * base.chunk_ms):
            self._set("chunk_ms", min(self.chunk_hi, 2 * base.chunk_ms), load_why, now)
        elif quiet_capture and chunk != base.chunk_ms:
            self._set("chunk_ms", base.chunk_ms, "quiet", now)

        # receive timeout: room for a slow loop or link; 0.5 s steps so it never creeps
        extra = 0.0 if self._pong_ms is None else 4 * self._pong_ms / 1000.0
        if load == "high":
            extra = max(extra, base.receive_timeout_s)
        extra = math.floor(extra * 2) / 2
        target = _clamp(base.receive_timeout_s + extra, self.rt_lo, self.rt_hi)
        rt = self._want["receive_timeout_s"]
        if target > rt:
            why = load_why or f"pong_ms={self._pong_ms:.0f}"
            self._set("receive_timeout_s", target, why, now)
        elif target < 0.9 * rt and quiet_link and self._can_step("receive_timeout_s", now):
            self._set("receive_timeout_s", max(target, math.floor(rt * 1.6) / 2), "quiet", now)

        # link probes: the round trip measured, and room for a loaded loop until calm for HOLD_S
        if probe_rtt_ms is not None and math.isfinite(probe_rtt_ms) and probe_rtt_ms >= 0:
            self._probe_rtt_ms = probe_rtt_ms
        interval, timeout = probe_timing(self._probe_rtt_ms, loaded=not quiet_link)
        why = load_why or f"probe_rtt_ms={self._probe_rtt_ms or 0:.0f}"
        self._set("probe_timeout_s", timeout, why, now)
        self._set("probe_interval_s", interval, why, now)

        # a full ring drops agent audio: grow it, and never shrink it below that again
        if ring_overflows:
            ring = self._want["ring_ms"]
            self._ring_floor = min(self.ring_hi, max(self._ring_floor, 2 * ring))
            self._set("ring_ms", self._ring_floor, f"ring_overflows={ring_overflows}", now)

        # memory pressure: shrink what can shrink, a step at a time; restore once it has passed
        ring_normal = max(base.ring_ms, self._ring_floor)
        for name, lo, normal in (
            ("ring_ms", self._ring_floor, ring_normal),
            ("resume_buffer_s", self.resume_lo, base.resume_buffer_s),
        ):
            value = self._want[name]
            if memory == "low" and value > lo and self._can_step(name, now):
                half = max(lo, value // 2 if name == "ring_ms" else value / 2)
                why = f"mem_available_mb={sample.mem_available_mb:.0f}" if sample else "memory"
                self._set(name, half, why, now)
            elif memory == "ok" and now - self._memory_trouble >= HOLD_S:
                self._set(name, normal, "memory_ok", now)

        return self._apply(between_replies)

    def _apply(self, between_replies: bool) -> list[TuningChange]:
        changes: list[TuningChange] = []
        values = dataclasses.asdict(self._current)
        for name, new in self._want.items():
            quiet = name in NEEDS_QUIET
            if new == values[name] or (quiet and not between_replies):
                continue
            changes.append(TuningChange(name, values[name], new, self._why.get(name, ""), quiet))
            values[name] = new
        self._current = Tuning(**values)
        return changes
