"""The capture processor against synthetic rooms: ERLE, double talk, a delay jump, alignment from
the device stamps; and the stamped history the callbacks write."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio.echo_rooms import RATE, db, run_room, speech_like
from voicebox.audio.echo import linear_echo, processor
from voicebox.audio.echo.history import MARGIN_MS, StampedHistory
from voicebox.audio.echo.leak import LEAK_POWER, EchoLeakCheck
from voicebox.audio.echo.meters import echo_over_voice
from voicebox.audio.echo.processor import (
    CaptureProcessor,
    ProcessingSettings,
    echo_cancellation_wanted,
    library_available,
)
from voicebox.audio.room import impulse_response
from voicebox.simulator.vad import EnergyVad, SpeechStart
from voicebox.simulator.voice import speech_like as voice_like

pytestmark = pytest.mark.skipif(
    not library_available(), reason="pywebrtc-audio is not installed (make bootstrap installs it)"
)


def erle(run, start_s: float, end_s: float | None = None) -> float:  # type: ignore[no-untyped-def]
    a = int(start_s * RATE)
    b = None if end_s is None else int(end_s * RATE)
    return db(run.mic[a:b]) - db(run.out[a:b])


def test_erle_after_convergence_far_end_only() -> None:
    run = run_room(speech_like(12, seed=1))
    assert erle(run, 6) >= 25.0
    stats = run.processor.snapshot()
    assert stats.erle_db is not None and abs(stats.erle_db - erle(run, 6)) < 6.0
    assert stats.resyncs == 0


@pytest.mark.parametrize(("mic_rate", "out_rate"), [(48000, 48000), (48000, 44100), (44100, 16000)])
def test_erle_at_device_rates(mic_rate: int, out_rate: int) -> None:
    """Both sides through the resamplers, whose output comes in bursts at a phase of their own
    per rate: the reference stays aligned with the mic anyway (replies with pauses, a small
    room with its direct path)."""
    gap = np.zeros(int(1.5 * RATE))
    far = np.concatenate([x for k in range(6) for x in (speech_like(3, seed=1 + k), gap)])
    run = run_room(
        far, mic_rate=mic_rate, out_rate=out_rate, delay_ms=10, tail_ms=150, echo_db=-12,
        direct_db=10,
    )  # fmt: skip
    assert erle(run, 9) >= 30.0
    assert run.processor.snapshot().resyncs == 0


def test_the_reference_fed_to_aec3_does_not_depend_on_the_block_size(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A 16 kHz device handing blocks of no whole frames (25 ms, 64 ms): the part-frame left of
    each block's reference must survive until the next block completes it, so AEC3 gets the
    same reference stream as with 20 ms blocks."""
    real = processor._apm
    fed: dict[float, list[np.ndarray]] = {}

    def recording(settings, echo):  # type: ignore[no-untyped-def]
        apm = real(settings, echo)
        frames = fed.setdefault(current, [])

        class Recorder:
            def process(self, near, far=None):  # type: ignore[no-untyped-def]
                if far is not None:
                    frames.append(far.copy())
                return apm.process(near, far) if echo else apm.process(near)

            def reset(self) -> None:
                apm.reset()

        return Recorder()

    monkeypatch.setattr(processor, "_apm", recording)
    # the dither is cycled per call, so it differs with the block size: compare without it
    monkeypatch.setattr(processor.CaptureProcessor, "_dithered", lambda self, far: far)
    far = speech_like(4, seed=1)
    for current in (20.0, 25.0, 64.0):
        run_room(far, block_ms=current)
    streams = {k: np.concatenate(v) for k, v in fed.items()}
    # AEC3 starts at a block boundary, with the reply: compare from the reply's first sample
    streams = {k: x[np.flatnonzero(x)[0] :] for k, x in streams.items()}
    n = min(len(x) for x in streams.values())
    assert n > 3 * RATE
    assert np.array_equal(streams[25.0][:n], streams[20.0][:n])
    assert np.array_equal(streams[64.0][:n], streams[20.0][:n])


def test_aec3_gets_a_reference_dithered_by_one_step_that_saturates_instead_of_wrapping() -> None:
    """Silence reaches AEC3 as +-1 LSB of noise (exact zeros after speech slow it down many
    times over); full scale stays full scale."""
    proc = CaptureProcessor(ProcessingSettings(), StampedHistory(RATE, 0), StampedHistory(RATE))
    silence = proc._dithered(np.zeros(RATE, dtype=np.int16))
    assert silence.dtype == np.int16
    assert set(np.unique(silence).tolist()) == {-1, 0, 1}
    assert np.count_nonzero(silence) > RATE // 2
    loud = np.tile(np.array([32767, -32768], dtype=np.int16), RATE)
    out = proc._dithered(loud)
    assert out[0::2].min() >= 32766 and out[1::2].max() <= -32767
    speech = speech_like(1).astype(np.int16)
    assert np.abs(proc._dithered(speech).astype(np.int32) - speech).max() <= 1


def test_without_the_canceller_the_echo_stays() -> None:
    """The control: the same room with echo cancellation off keeps most of the echo."""
    run = run_room(speech_like(8, seed=1), settings=ProcessingSettings(echo_cancellation=False))
    assert erle(run, 4) < 10.0


def test_double_talk_keeps_the_users_burst() -> None:
    far = speech_like(14, seed=1)
    near = np.zeros(len(far))
    a, b = 9 * RATE, 11 * RATE
    burst = speech_like(2, seed=7, level=3000)
    near[a:b] = burst
    talk = run_room(far, near)
    alone = run_room(far)  # the same room without the user: what is left of the echo there
    kept = db(talk.out[a:b]) - db(burst)
    assert db(talk.echo[a:b]) > db(burst) - 3  # the echo is as loud as the user at the mic
    assert kept > -12.0  # the burst survives the canceller and the suppressor
    assert db(talk.out[a:b]) - db(alone.out[a:b]) > 15.0  # and it is the user, not echo


def test_delay_jump_of_40_ms_reconverges() -> None:
    run = run_room(speech_like(22, seed=2), delay_jump_at_s=11.0, jump_ms=40.0)
    assert erle(run, 5, 11) >= 25.0
    assert erle(run, 17) >= 25.0  # six seconds after the room moved


@pytest.mark.parametrize(("out_latency", "in_latency"), [(0.1, 0.03), (0.25, 0.08), (0.02, 0.01)])
def test_reference_aligned_from_the_stamps(out_latency: float, in_latency: float) -> None:
    run = run_room(speech_like(2, seed=3), out_latency=out_latency, in_latency=in_latency)
    dac0 = out_latency + in_latency + 0.011  # where run_room starts the speaker
    mic_index = RATE  # one second in
    expected = mic_index - (dac0 + MARGIN_MS / 1000) * RATE
    got = run.processor.reference_start(mic_index)
    assert got is not None and abs(got - expected) <= 1.0
    stats = run.processor.snapshot()
    assert stats.delay_ms is not None
    assert abs(stats.delay_ms - (out_latency + in_latency + 0.02) * 1000) < 1.0


def test_late_stamps_cost_the_echo_cancellation() -> None:
    """Alignment matters: with a reference 80 ms late (a wrong DAC stamp) the canceller never
    converges, so the mic stays muted while the agent speaks (half duplex) and no echo passes;
    aligned, it is trusted within the first seconds of speech."""
    good = run_room(speech_like(10, seed=4))
    late = run_room(speech_like(10, seed=4), stamp_error_s=0.08)
    g, bad = good.processor.snapshot(), late.processor.snapshot()
    assert g.converged and g.gated_s < 3.0
    assert not bad.converged and bad.gated_s > 5.0
    assert loud_frames(late.out) == 0


def loud_frames(x: np.ndarray) -> int:  # type: ignore[type-arg]
    """10 ms frames above the level at which a leak starts the gate again."""
    f = x[: len(x) // 160 * 160].astype(np.float64).reshape(-1, 160)
    return int(((f * f).mean(axis=1) >= LEAK_POWER).sum())


def test_the_mic_is_muted_while_the_agent_speaks_until_the_canceller_converged() -> None:
    """The first echo AEC3 hears is not cancelled yet: the processed mic is silence while the
    agent is audible, until frames show the canceller suppressing it; then full duplex."""
    far = speech_like(8, seed=5)
    run = run_room(far)
    stats = run.processor.snapshot()
    assert db(run.mic[: RATE // 2]) > db(run.out[: RATE // 2]) + 40  # echo in, nothing out
    assert loud_frames(run.out[:RATE]) == 0
    assert stats.converged and 0.3 <= stats.gated_s <= 3.0
    assert stats.erle_db is not None and stats.erle_db >= 25.0


def test_aec3_rests_while_the_agent_is_silent_and_is_back_for_the_next_reply() -> None:
    """AEC3 is most of the processing's CPU: between replies (the reference silent past the
    room's tail) the mic goes through a module without it, and the next reply's first echo is
    cancelled as well as if it had run all along."""
    gap = np.zeros(4 * RATE)
    replies = [speech_like(4, seed=1), speech_like(3, seed=2), speech_like(3, seed=3)]
    far = np.concatenate([replies[0], gap, replies[1], gap, replies[2]])
    run = run_room(far)
    stats = run.processor.snapshot()
    assert stats.aec_frames < 0.7 * stats.frames  # 10 s of replies in 18 s, plus the tails
    assert stats.converged
    for start in (8 * RATE, 15 * RATE):  # the replies after a silence
        onset = slice(start, start + 3 * RATE // 10)
        assert db(run.mic[onset]) - db(run.out[onset]) >= 25.0
        assert loud_frames(run.out[start : start + 3 * RATE]) == 0


@pytest.mark.parametrize(
    ("echo_db", "direct_db", "user_level", "too_loud"),
    [(-12.0, 10.0, 4000.0, False), (0.0, 6.0, 4000.0, False), (0.0, 6.0, 1000.0, True)],
)
def test_the_echo_and_the_voice_are_measured_at_the_mic(
    echo_db: float, direct_db: float, user_level: float, too_loud: bool
) -> None:
    """The agent's echo (while it speaks alone) and the user's voice (while the agent is silent)
    at the mic: in a room where the echo is as loud as the speaker, a user 3.5 dB under it still
    barges in (speexdsp's filter ahead of AEC3), one 15 dB under it cannot, and the processor
    says so."""
    second = RATE
    agent = [speech_like(3, seed=k) for k in range(4)]
    user = speech_like(1.5, seed=9, level=user_level)  # 4000: 3.5 dB under what is played
    far, near = [], []
    for reply in agent:  # a reply, then the user answers in the pause after it
        pause = np.zeros(3 * second)
        far += [reply, pause]
        said = np.zeros(len(reply) + len(pause))
        said[len(reply) + second : len(reply) + second + len(user)] = user
        near.append(said)
    run = run_room(
        np.concatenate(far), np.concatenate(near), delay_ms=30, tail_ms=250, echo_db=echo_db,
        direct_db=direct_db,
    )  # fmt: skip
    stats = run.processor.snapshot()
    assert stats.echo_dbfs is not None and stats.voice_dbfs is not None
    first = run.echo[: 3 * second]  # the first reply's echo, its syllables
    active = first[np.abs(first) > 30]
    assert abs(stats.echo_dbfs - (db(active) - 90.3)) < 4.0  # dB re full scale
    assert abs(stats.voice_dbfs - (db(user[np.abs(user) > 30]) - 90.3)) < 4.0
    assert stats.linear_echo  # the filter feeds AEC3: the margin is its own
    assert echo_over_voice(stats) is too_loud


def test_leak_check_tells_the_agents_echo_from_the_user() -> None:
    """Processed audio that is the reference delayed (lost echo) is a leak; another voice at
    the same level is not."""
    far = speech_like(1, seed=1).astype(np.int16)
    lag = 30 * RATE // 1000
    echo = np.zeros_like(far)
    echo[lag:] = far[:-lag] // 2
    user = speech_like(1, seed=7).astype(np.int16)
    for out, leaking in ((echo, True), (user, False)):
        check = EchoLeakCheck()
        for a in range(0, len(far), 320):  # chunks of two frames, as the processor feeds it
            check.feed(far[a : a + 320], out[a : a + 320])
        assert check.leaking(1, 2) is leaking


def test_history_keeps_the_newest_samples_and_their_stamp() -> None:
    h = StampedHistory(1000, seconds=0.1)  # 100 samples
    assert h.stamp() is None
    for k in range(5):
        h.write(np.full(30, k, dtype=np.int16), device_time=10.0 + k * 0.03, now=9.9 + k * 0.03)
    assert h.total == 150
    assert h.stamp() == (120, pytest.approx(10.12), pytest.approx(0.1))
    out = np.ones(60, dtype=np.int16)
    assert h.read(30, out) == 40  # samples 30..49 were overwritten
    assert (out[:20] == 0).all() and (out[20:30] == 1).all() and (out[30:] == 2).all()
    assert h.read(140, out) == 10  # 150.. not written yet
    assert (out[:10] == 4).all() and (out[10:] == 0).all()
    h.reset()
    assert h.stamp() is None and h.epoch == 1


def test_history_block_longer_than_capacity_keeps_each_sample_at_its_index() -> None:
    """A stall or a large device period hands write() a block of capacity or more: what read()
    returns for index i is sample i, however the write lands against the ring's wrap."""
    h = StampedHistory(1000, seconds=0.1)  # 100 samples
    h.write(np.arange(37, dtype=np.int16), device_time=1.0, now=1.0)  # the ring starts mid-way
    for n in (100, 250, 173):
        base = h.total
        h.write(np.arange(base, base + n, dtype=np.int16), device_time=2.0, now=2.0)
        out = np.zeros(100, dtype=np.int16)
        assert h.read(h.total - 100, out) == 100
        assert (out == np.arange(h.total - 100, h.total)).all(), n


def test_impulse_response_level_and_delay() -> None:
    h = impulse_response(RATE, delay_ms=40, tail_ms=100, echo_db=-12)
    assert np.flatnonzero(h)[0] == 40 * RATE // 1000
    assert 10 * np.log10(np.sum(h * h)) == pytest.approx(-12.0, abs=0.01)


@pytest.mark.parametrize(
    ("setting", "mode", "button", "on"),
    [
        ("auto", "always_on", "hold", True),
        ("auto", "push_to_talk", "toggle", True),
        ("auto", "push_to_talk", "hold", False),
        ("on", "push_to_talk", "hold", True),
        ("off", "always_on", "hold", False),
    ],
)
def test_auto_resolves_from_the_conversation_mode(
    setting: str, mode: str, button: str, on: bool
) -> None:
    assert echo_cancellation_wanted(setting, mode, button) is on


@pytest.mark.asyncio
async def test_engine_applies_new_processing_settings_on_reload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import wave

    from voicebox.audio.engine import AudioEngine
    from voicebox.config import AudioConfig, InputConfig, OutputConfig

    with wave.open(str(tmp_path / "in.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"\0\0" * RATE)
    cfg = AudioConfig(
        InputConfig(backend="room", path=str(tmp_path / "in.wav")),
        OutputConfig(backend="file", path=str(tmp_path / "out.wav")),
    )
    engine = AudioEngine(cfg, processing=ProcessingSettings(echo_cancellation=False))
    chunks: list[np.ndarray] = []  # type: ignore[type-arg]
    more = asyncio.Event()

    def on_chunk(chunk: np.ndarray) -> None:  # type: ignore[type-arg]
        chunks.append(chunk)
        more.set()

    await engine.start(on_chunk)
    try:
        await asyncio.sleep(0.2)
        assert engine.stats().processing and not engine.stats().echo_cancellation
        engine.set_processing(ProcessingSettings(echo_cancellation=True))
        assert engine._playback is not None and engine._playback.reference is not None
        for _ in range(10):  # ten chunks through the new processor
            more.clear()
            await asyncio.wait_for(more.wait(), 5)
        assert engine.stats().echo_cancellation
        engine.set_processing(None)
        assert not engine.stats().processing and engine._playback.reference is None
    finally:
        await engine.stop()


ROOMS = {  # the bench's: delay ms, tail ms, echo dB, direct path dB
    "small": (10.0, 150.0, -12.0, 10.0),
    "large": (60.0, 400.0, -6.0, 0.0),
    "loud": (30.0, 250.0, 0.0, 6.0),  # the user 4 dB under the echo at the mic
}


def _replies_with_barge_ins(room: str) -> tuple[list[int], list[bool]]:
    """A minute of the simulator's voice in replies with pauses in a bench room, the user
    talking over one reply in three, the processed mic through the simulator's VAD: (speech
    starts with no user burst near, whether each burst started one)."""
    rng = np.random.default_rng(0)
    n = 60 * RATE
    far, near = np.zeros(n), np.zeros(n)
    bursts: list[tuple[int, int]] = []
    t, k = 0.5, 0
    while (t + 6.0) * RATE < n:
        length = float(rng.uniform(1.5, 4.0))
        reply = voice_like(length, RATE, f0=float(rng.uniform(150, 210)), harmonics=20)
        far[int(t * RATE) : int(t * RATE) + len(reply)] = reply
        if k % 3 == 2:
            b = int((t + float(rng.uniform(0.4, max(0.5, length - 1.2)))) * RATE)
            burst = voice_like(1.0, RATE, f0=float(rng.uniform(100, 130)), level=0.3)
            near[b : b + len(burst)] += burst
            bursts.append((b, b + len(burst)))
        t += length + float(rng.uniform(0.8, 3.0))
        k += 1
    delay, tail, echo, direct = ROOMS[room]
    run = run_room(far, near, delay_ms=delay, tail_ms=tail, echo_db=echo, direct_db=direct)
    vad, starts = EnergyVad(RATE), []
    for i in range(0, len(run.out) - 320 + 1, 320):
        starts += [
            int(e.at_s * RATE) for e in vad.feed(run.out[i : i + 320]) if isinstance(e, SpeechStart)
        ]
    slack = int(0.7 * RATE)
    own = [s for s in starts if not any(a - slack <= s <= b + slack for a, b in bursts)]
    heard = [any(a <= s <= b + slack for s in starts) for a, b in bursts]
    assert len(bursts) >= 4
    return own, heard


@pytest.mark.parametrize("room", list(ROOMS))
def test_replies_with_barge_ins_through_the_simulators_vad(room: str) -> None:
    """The processed mic never starts the simulator's VAD on the agent's own voice and starts
    it on every user burst (once the first seconds of half duplex are over), in the loud room
    too, where the user is quieter than the echo."""
    own, heard = _replies_with_barge_ins(room)
    assert own == []
    assert all(heard), heard


def test_in_the_loud_room_aec3_alone_loses_most_barge_ins(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The control: without speexdsp's filter ahead of it, AEC3's suppressor takes the quieter
    user for echo."""
    monkeypatch.setattr(linear_echo, "available", lambda: False)
    own, heard = _replies_with_barge_ins("loud")
    assert own == []
    assert sum(heard) <= len(heard) // 2, heard
