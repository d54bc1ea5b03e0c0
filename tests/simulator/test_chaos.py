"""Chaos schedules (deterministic for a seed, every kind, spread) and numbered speech bursts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebox.simulator import bursts, chaos
from voicebox.simulator.faults import parse_fault
from voicebox.simulator.voice import speech_like


def test_the_same_seed_gives_the_same_faults_at_the_same_times() -> None:
    spec = chaos.parse_chaos("7:100:30")
    assert spec == chaos.ChaosSpec(7, 100, 30.0)
    first, again = chaos.schedule(spec), chaos.schedule(chaos.parse_chaos("7:100:30"))
    assert first == again
    assert chaos.schedule(chaos.ChaosSpec(8, 100, 30.0)) != first


def test_every_kind_comes_up_and_faults_are_spread_over_the_run() -> None:
    spec = chaos.ChaosSpec(3, 2 * len(chaos.KINDS), 10.0)
    events = chaos.schedule(spec)
    kinds = [e.kind for e in events]
    assert sorted(kinds) == sorted(chaos.KINDS * 2)
    times = [e.at_s for e in events]
    assert times == sorted(times)
    assert times[0] >= chaos.WARMUP_S and times[-1] <= 600 - chaos.WARMUP_S
    slot = (600 - 2 * chaos.WARMUP_S) / len(events)
    assert all(b - a < 2 * slot for a, b in zip(times, times[1:], strict=False))
    assert all(1 <= e.refusals <= 3 for e in events if e.kind.startswith("http:"))


def test_every_kind_is_one_the_simulator_can_apply() -> None:
    for kind in chaos.KINDS:
        assert parse_fault(f"1:{kind}").kind == kind.split(":")[0]


@pytest.mark.parametrize("bad", ["", "x", "1:0", "1:5:0", "1:2:3:4", "1:5:0.1"])
def test_bad_chaos_specs_say_what_is_expected(bad: str) -> None:
    with pytest.raises(chaos.ChaosError, match="--chaos"):
        chaos.parse_chaos(bad)


def test_a_kind_list_restricts_the_schedule() -> None:
    events = chaos.schedule(chaos.ChaosSpec(1, 12, 2.0), ("silent",))
    assert {e.kind for e in events} == {"silent"}
    with pytest.raises(chaos.ChaosError, match="unknown"):
        chaos.schedule(chaos.ChaosSpec(1, 2, 2.0), ("meteor",))


@settings(max_examples=50, deadline=None)
@given(
    number=st.integers(1, bursts.MAX_NUMBER),
    cuts=st.lists(st.integers(1, 19199), max_size=40),
    seconds=st.floats(0.1, 1.2),
)
def test_a_burst_decodes_to_its_number_and_positions_however_it_is_cut(
    number: int, cuts: list[int], seconds: float
) -> None:
    pcm = bursts.encode_burst(number, speech_like(seconds, 16000, level=0.6))
    stream = np.concatenate([np.zeros(37, np.int16), pcm, np.zeros(400, np.int16)])
    log = bursts.BurstLog()
    edges = [0, *sorted({c for c in cuts if c < len(stream)}), len(stream)]
    for a, b in zip(edges, edges[1:], strict=False):
        log.feed(1, stream[a:b], 0.0)
    assert {k for _, _, k, _, _, _ in log.arrivals} == {number}
    got: set[int] = set()
    for _, _, _, first, last, _ in log.arrivals:
        got.update(range(first, last + 1))
    assert got == set(range(bursts.positions(len(pcm))))
    # still loud enough for the simulator's VAD: the top bits carry the voice
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 3000
