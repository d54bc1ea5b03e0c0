"""Tuning policy: initial values, add-fast/decay-slow, quiet-only changes, bounds, no flapping."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from voicebox.audio.port import AudioStats
from voicebox.config import Config, with_changes
from voicebox.monitor import Environment, Sample
from voicebox.tuning import (
    DETECT_BUDGET_S,
    HOLD_S,
    STEP_EVERY_S,
    Tuner,
    TuningChange,
    probe_timing,
)

PI = Environment("Raspberry Pi 5 Model B Rev 1.0", 4, 2000, "pi5-2gb")
DESKTOP = Environment("Intel", 8, 16000, "desktop")


def sample(
    cpu: float = 20.0, mem: float = 1500.0, temp: float | None = 50.0, throttled: int | None = 0
) -> Sample:
    return Sample(
        time=0.0,
        cpu_percent=cpu,
        proc_cpu_percent=10.0,
        mem_available_mb=mem,
        rss_mb=60.0,
        load1=0.5,
        temp_c=temp,
        throttled=throttled,
        cpu_percent_raw=cpu,
        proc_cpu_percent_raw=10.0,
        temp_c_raw=temp,
        cores=4,
    )


def config(**tuning: Any) -> Config:
    cfg = Config()
    return with_changes(cfg, tuning=dataclasses.replace(cfg.tuning, **tuning))  # type: ignore[no-any-return]


def names(changes: list[TuningChange]) -> dict[str, TuningChange]:
    return {c.name: c for c in changes}


CALM = sample()


def test_initial_values_from_config_and_profile() -> None:
    desktop = Tuner(Config(), DESKTOP).current
    assert (desktop.prebuffer_ms, desktop.ring_ms, desktop.chunk_ms) == (120, 30000, 20)
    assert (desktop.receive_timeout_s, desktop.latency_s, desktop.resume_buffer_s) == (
        2.0,
        None,
        5.0,
    )
    pi = Tuner(Config(), PI).current
    assert pi.prebuffer_ms == 200 and pi.ring_ms == 20000  # larger pre-roll, smaller ring


def test_not_adaptive_pins_the_configured_values() -> None:
    tuner = Tuner(config(adaptive=False), PI)
    assert tuner.current.prebuffer_ms == 120 and tuner.current.ring_ms == 30000
    for i in range(5):
        audio = AudioStats(underruns=10 * i, input_overflows=i)
        assert tuner.update(float(i), sample(cpu=99, mem=10), audio, 900.0, True) == []
    assert tuner.current.prebuffer_ms == 120


def test_underrun_raises_preroll_at_once_and_quiet_lowers_it_slowly() -> None:
    tuner = Tuner(Config(), DESKTOP)
    assert tuner.update(0.0, CALM, AudioStats(), None, False) == []
    change = names(tuner.update(1.0, CALM, AudioStats(underruns=1), None, False))["prebuffer_ms"]
    assert (change.old, change.new, change.needs_quiet) == (120, 180, False)
    assert change.reason == "underruns=1"
    drops: list[tuple[float, int]] = []
    t = 1.0
    while t < 1000:
        t += 1.0
        for c in tuner.update(t, CALM, AudioStats(underruns=1), None, True):
            if c.name == "prebuffer_ms":
                assert c.new < c.old
                drops.append((t, c.new))
    assert drops[0][0] >= 1.0 + HOLD_S  # nothing before the quiet period
    assert all(b[0] - a[0] >= STEP_EVERY_S for a, b in zip(drops, drops[1:], strict=False))
    assert len(drops) >= 2 and drops[-1][1] == 120  # in steps, back to the start value


def test_stream_changes_wait_for_a_quiet_moment() -> None:
    tuner = Tuner(Config(), DESKTOP)
    tuner.update(0.0, CALM, AudioStats(), None, False)
    busy = names(tuner.update(1.0, sample(cpu=97), AudioStats(), None, between_replies=False))
    assert set(busy) == {"prebuffer_ms", "receive_timeout_s", "probe_timeout_s"}
    assert busy["prebuffer_ms"].new == 240 and busy["receive_timeout_s"].new == 4.0
    assert busy["probe_timeout_s"].new == 1.5  # room for a loaded loop, within the 3 s budget
    assert "cpu=97%" in busy["prebuffer_ms"].reason
    quiet = names(tuner.update(2.0, sample(cpu=97), AudioStats(), None, between_replies=True))
    assert set(quiet) == {"chunk_ms", "latency_s"}
    assert quiet["chunk_ms"].new == 40 and quiet["latency_s"].new == 0.2
    assert all(c.needs_quiet for c in quiet.values())
    assert tuner.current.chunk_ms == 40


def test_capture_drops_enlarge_the_chunk_up_to_its_maximum() -> None:
    tuner = Tuner(config(chunk_max_ms=60), DESKTOP)
    tuner.update(0.0, CALM, AudioStats(), None, True)
    seen = []
    for i in range(1, 5):
        seen += [
            c.new
            for c in tuner.update(float(i), CALM, AudioStats(dropped_chunks=i), None, True)
            if c.name == "chunk_ms"
        ]
    assert seen == [40, 60]


def test_memory_pressure_shrinks_ring_and_resume_buffer_then_restores() -> None:
    tuner = Tuner(Config(), DESKTOP)
    tuner.update(0.0, CALM, AudioStats(), None, True)
    low = names(tuner.update(1.0, sample(mem=100), AudioStats(), None, True))
    assert low["ring_ms"].new == 15000 and low["resume_buffer_s"].new == 2.5
    assert low["ring_ms"].needs_quiet and not low["resume_buffer_s"].needs_quiet
    assert "mem_available_mb=100" in low["ring_ms"].reason
    t = 1.0
    while t < 200:
        t += 1.0
        tuner.update(t, sample(mem=100), AudioStats(), None, True)
    assert tuner.current.ring_ms == 4000 and tuner.current.resume_buffer_s == 0.5
    restored: dict[str, Any] = {}
    while t < 400:
        t += 1.0
        restored |= {c.name: c.new for c in tuner.update(t, CALM, AudioStats(), None, True)}
    assert restored == {"ring_ms": 30000, "resume_buffer_s": 5.0}


def test_ring_overflows_grow_the_ring_and_memory_pressure_respects_it() -> None:
    tuner = Tuner(Config(), PI)  # ring starts at 20000 of 30000
    tuner.update(0.0, CALM, AudioStats(), None, True)
    grown = names(tuner.update(1.0, CALM, AudioStats(ring_overflows=3), None, False))
    assert "ring_ms" not in grown  # a stream change waits for a quiet moment
    change = names(tuner.update(2.0, CALM, AudioStats(ring_overflows=3), None, True))["ring_ms"]
    assert (change.old, change.new, change.reason) == (20000, 30000, "ring_overflows=3")
    t = 2.0
    while t < 200:
        t += 1.0
        tuner.update(t, sample(mem=50), AudioStats(ring_overflows=3), None, True)
    assert tuner.current.ring_ms == 30000  # never shrunk below what overflowed
    assert tuner.current.resume_buffer_s == 0.5


def test_unreadable_memory_is_not_memory_pressure() -> None:
    tuner = Tuner(Config(), DESKTOP)
    blind = dataclasses.replace(sample(mem=0.0), unreadable=("mem_available",))
    for i in range(100):
        assert tuner.update(float(i), blind, AudioStats(), None, True) == []


def test_slow_pongs_lengthen_the_receive_timeout_within_bounds() -> None:
    tuner = Tuner(config(receive_timeout_max_s=5.0), DESKTOP)
    for i in range(30):
        tuner.update(float(i), CALM, AudioStats(), 2000.0, True)
    assert tuner.current.receive_timeout_s == 5.0
    for i in range(30, 400):
        tuner.update(float(i), CALM, AudioStats(), 5.0, True)
    assert tuner.current.receive_timeout_s == 2.0


# --- properties --------------------------------------------------------------------------

samples = st.builds(
    sample,
    cpu=st.floats(0, 100),
    mem=st.floats(0, 4000),
    temp=st.none() | st.floats(20, 95),
    throttled=st.none() | st.sampled_from([0, 0x4, 0x50000, 0x8]),
)
steps = st.tuples(
    st.none() | samples,
    st.integers(0, 3),  # new underruns
    st.integers(0, 2),  # new dropped chunks
    st.sampled_from([0, 0, 0, 1]),  # new ring overflows
    st.none() | st.floats(0, 3000),  # pong ms
    st.booleans(),  # between replies
    st.floats(0.1, 30),  # time step
)
configs = st.builds(
    lambda lo, span, chunk_max, rt_max: config(
        prebuffer_min_ms=lo,
        prebuffer_max_ms=lo + span,
        chunk_max_ms=chunk_max,
        receive_timeout_max_s=rt_max,
    ),
    st.integers(0, 300),
    st.integers(0, 800),
    st.integers(5, 250),
    st.floats(0.5, 30),
)
envs = st.sampled_from([PI, DESKTOP, Environment("x", 2, 1000, "small")])


def run(
    tuner: Tuner, seq: list[Any], t: float = 0.0, audio: AudioStats | None = None
) -> tuple[float, AudioStats, list[TuningChange]]:
    audio = audio or AudioStats()
    out: list[TuningChange] = []
    for s, under, drops, full, pong, between, dt in seq:
        t += dt
        audio = dataclasses.replace(
            audio,
            underruns=audio.underruns + under,
            dropped_chunks=audio.dropped_chunks + drops,
            ring_overflows=audio.ring_overflows + full,
        )
        out += tuner.update(t, s, audio, pong, between)
    return t, audio, out


@settings(max_examples=60, deadline=None)
@given(configs, envs, st.lists(steps, max_size=60))
def test_values_always_within_bounds(cfg: Config, env: Environment, seq: list[Any]) -> None:
    tuner = Tuner(cfg, env)
    t = tuner.current
    assert t.prebuffer_ms == tuner.base.prebuffer_ms
    _, _, changes = run(tuner, seq)
    tu = cfg.tuning
    for c in changes:
        assert c.old != c.new and c.reason is not None
    cur = tuner.current
    assert (
        min(tu.prebuffer_min_ms, tu.prebuffer_max_ms)
        <= cur.prebuffer_ms
        <= max(tu.prebuffer_min_ms, tu.prebuffer_max_ms)
    )
    assert (
        cfg.audio.input.chunk_ms <= cur.chunk_ms <= max(tu.chunk_max_ms, cfg.audio.input.chunk_ms)
    )
    rt = cfg.conversation.receive_timeout_s
    assert rt <= cur.receive_timeout_s <= max(rt, tu.receive_timeout_max_s)
    assert 0 < cur.ring_ms <= cfg.audio.output.buffer_ms
    assert 0 <= cur.resume_buffer_s <= cfg.conversation.resume_buffer_s
    assert cur.latency_s in (None, 0.2)


@settings(max_examples=40, deadline=None)
@given(configs, envs, st.lists(steps, max_size=20), steps)
def test_a_steady_input_converges_without_flapping(
    cfg: Config, env: Environment, prefix: list[Any], steady: Any
) -> None:
    tuner = Tuner(cfg, env)
    t, audio, _ = run(tuner, prefix)
    step = (*steady[:-1], 1.0)
    # the prefix's own trouble (and changes it left pending) may play out for one quiet period
    t, audio, _ = run(tuner, [step] * int(HOLD_S + 1), t, audio)
    t, audio, changes = run(tuner, [step] * 900, t, audio)
    by_name: dict[str, list[TuningChange]] = {}
    for c in changes:
        by_name.setdefault(c.name, []).append(c)
    for name, seq in by_name.items():
        ups = {
            (c.new > c.old) if c.old is not None and c.new is not None else c.new is not None
            for c in seq
        }
        assert len(ups) == 1, f"{name} went both ways: {[(c.old, c.new) for c in seq]}"
    # converged: nothing changes any more
    _, _, later = run(tuner, [step] * 50, t, audio)
    assert later == []


@settings(max_examples=60, deadline=None)
@given(configs, envs, st.lists(steps, max_size=30), st.integers(1, 5), st.booleans())
def test_an_underrun_raises_the_preroll_in_the_same_update(
    cfg: Config, env: Environment, prefix: list[Any], n: int, between: bool
) -> None:
    tuner = Tuner(cfg, env)
    t, audio, _ = run(tuner, prefix)
    tuner.update(t, CALM, audio, None, between)  # the counters' baseline
    before = tuner.current.prebuffer_ms
    changes = tuner.update(
        t + 0.5, CALM, dataclasses.replace(audio, underruns=audio.underruns + n), None, between
    )
    if before < max(cfg.tuning.prebuffer_min_ms, cfg.tuning.prebuffer_max_ms):
        assert names(changes)["prebuffer_ms"].new > before
    else:
        assert "prebuffer_ms" not in names(changes)


@given(rtt=st.one_of(st.none(), st.floats(allow_nan=True)), loaded=st.booleans())
def test_probe_timing_finds_a_dead_link_within_the_budget(rtt: float | None, loaded: bool) -> None:
    interval, timeout = probe_timing(rtt, loaded)
    assert interval + timeout <= DETECT_BUDGET_S + 1e-9 < 3.0
    assert 0.5 <= interval <= 1.0
    assert timeout >= (1.5 if loaded else 1.0)  # a 450 ms loop stall fits three times


def test_probe_timeout_follows_the_round_trip_and_the_load() -> None:
    tuner = Tuner(Config(), DESKTOP)
    assert (tuner.current.probe_interval_s, tuner.current.probe_timeout_s) == (1.0, 1.0)
    fixed = Tuner(config(adaptive=False), DESKTOP).current  # nothing would widen it under load
    assert (fixed.probe_interval_s, fixed.probe_timeout_s) == (1.0, 1.5)
    tuner.update(0.0, CALM, AudioStats(), None, True, probe_rtt_ms=100.0)
    assert tuner.current.probe_timeout_s == 1.4  # 1.0 + 4 x 100 ms
    tuner.update(1.0, sample(cpu=97), AudioStats(), None, True, probe_rtt_ms=100.0)
    assert tuner.current.probe_timeout_s == 1.9
    assert tuner.current.probe_interval_s == 0.85
    for t in range(2, int(HOLD_S) + 3):  # calm again: back once the trouble stayed away
        tuner.update(float(t), CALM, AudioStats(), None, True, probe_rtt_ms=100.0)
    assert tuner.current.probe_timeout_s == 1.4
