"""The replay window: no frame twice to one session, capture order kept, bounded."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebox.convai.replay import FrameWindow, MicFrame, has_voice, plan_replay

RATE = 16000

ops = st.lists(
    st.one_of(
        st.tuples(st.just("mic"), st.integers(min_value=1, max_value=1600)),
        st.tuples(st.just("ping"), st.just(0)),
        st.tuples(st.just("pong"), st.just(0)),
        st.tuples(st.just("fail"), st.just(0)),
        st.tuples(st.just("open"), st.just(0)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, limit_s=st.floats(min_value=0.0, max_value=1.0))
def test_every_session_gets_each_frame_once_in_order_within_the_limit(
    ops: list[tuple[str, int]], limit_s: float
) -> None:
    seq = 0
    sessions: list[list[int]] = [[]]
    window, buffer = FrameWindow(limit_s), FrameWindow(limit_s)
    pending: list[int] = []  # pings in flight: the newest seq each one confirms
    up = True
    unconfirmed: list[MicFrame] = []
    captured: set[int] = set()
    left_out = 0  # buffered frames a replay plan left out for the bound
    for op, n in ops:
        if op == "mic":
            frame = MicFrame(seq, np.zeros(n, np.int16), RATE)
            captured.add(seq)
            seq += 1
            if up:
                sessions[-1].append(frame.seq)
                window.push(frame)
            else:
                buffer.push(frame)
        elif op == "ping" and up:
            pending.append(window.last_seq)
        elif op == "pong" and pending:
            window.confirm(pending.pop(0))
        elif op == "fail" and up:
            up = False
            unconfirmed, pending = window.take(), []
        elif op == "open" and not up:
            buffered = buffer.take()
            plan = plan_replay(unconfirmed, buffered, limit_s)
            total = sum(f.seconds for f in plan.frames)
            assert total <= limit_s + 1e-9
            assert abs(plan.replayed_s + plan.buffered_s - total) < 1e-6
            got = [f.seq for f in plan.frames]
            left_out += len({f.seq for f in buffered} - set(got))
            sessions.append(got)
            window = FrameWindow(limit_s)
            for f in plan.frames:
                window.push(f)
            unconfirmed, up = [], True
    for got in sessions:
        assert got == sorted(set(got)), "a frame twice, or out of capture order"
    # Nothing vanishes silently: each frame reached a session, waits for the next one, or was
    # dropped for the bound and counted.
    delivered = {s for got in sessions for s in got}
    waiting = {f.seq for f in buffer.take()}
    assert len(captured - delivered - waiting) == buffer.dropped + left_out


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=800), min_size=0, max_size=60),
    split=st.integers(min_value=0, max_value=60),
    overlap=st.integers(min_value=0, max_value=10),
    limit_s=st.floats(min_value=0.0, max_value=0.5),
)
def test_plan_keeps_the_newest_audio_each_frame_once(
    lengths: list[int], split: int, overlap: int, limit_s: float
) -> None:
    frames = [MicFrame(i, np.zeros(n, np.int16), RATE) for i, n in enumerate(lengths)]
    split = min(split, len(frames))
    unconfirmed = frames[: split + overlap]  # an overlap must still give each frame once
    buffered = frames[split:]
    plan = plan_replay(unconfirmed, buffered, limit_s)
    got = [f.seq for f in plan.frames]
    assert got == sorted(set(got))
    total = sum(f.seconds for f in plan.frames)
    assert total <= limit_s + 1e-9
    # the newest suffix: every frame left out is older than every frame kept
    if got:
        assert got == list(range(got[0], len(frames)))
        assert plan.dropped == got[0]
    else:
        assert plan.dropped == len(frames)
    assert abs(plan.dropped_s + total - sum(f.seconds for f in frames)) < 1e-6
    # never resend what the session already has
    again = plan_replay(unconfirmed, buffered, limit_s, already_sent=set(got))
    assert not {f.seq for f in again.frames} & set(got)


@given(
    lengths=st.lists(st.integers(min_value=1, max_value=800), max_size=80),
    limit_s=st.floats(min_value=0.0, max_value=0.5),
)
def test_window_is_bounded_and_counts_what_it_drops(lengths: list[int], limit_s: float) -> None:
    w = FrameWindow(limit_s)
    for i, n in enumerate(lengths):
        w.push(MicFrame(i, np.zeros(n, np.int16), RATE))
        assert w.duration_s <= limit_s + 1e-9
    kept = w.take()
    assert [f.seq for f in kept] == list(range(len(lengths) - len(kept), len(lengths)))
    assert w.dropped == len(lengths) - len(kept)


def test_confirm_drops_only_what_the_pong_covers() -> None:
    w = FrameWindow(10.0)
    for i in range(5):
        w.push(MicFrame(i, np.zeros(160, np.int16), RATE))
    mark = w.last_seq
    w.push(MicFrame(5, np.zeros(160, np.int16), RATE))
    w.confirm(mark)
    assert [f.seq for f in w.take()] == [5]


def test_a_frame_already_replayed_once_is_not_replayed_again() -> None:
    def frame(seq: int, replayed: bool = False) -> MicFrame:
        return MicFrame(seq, np.full(160, 2000, np.int16), RATE, replayed)

    plan = plan_replay([frame(1, True), frame(2, True), frame(3)], [frame(4)], 10.0)
    assert [f.seq for f in plan.frames] == [3, 4]
    assert [f.replayed for f in plan.frames] == [True, False]  # 3 is a replay from now on
    assert plan.dropped == 2 and plan.repeated_s == 2 * 160 / RATE


def test_has_voice_looks_at_the_peak_of_every_frame() -> None:
    quiet = MicFrame(0, np.full(160, 10, np.int16), RATE)
    loud = MicFrame(1, np.array([0, -1500, 0], np.int16), RATE)
    assert not has_voice([quiet], 1000)
    assert has_voice([quiet, loud], 1000)
    assert not has_voice([], 1000)
