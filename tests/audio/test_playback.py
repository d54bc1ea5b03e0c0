"""Playback logic driven the way a device callback drives it: one fill() per period."""

from __future__ import annotations

import numpy as np

from voicebox.audio.formats import AudioFormat, ulaw_encode
from voicebox.audio.playback import Playback

RATE = 16000
PERIOD = 320  # 20 ms


def tone(n: int, value: int = 1000) -> np.ndarray:
    return np.full(n, value, dtype=np.int16)


def fill(pb: Playback, periods: int = 1) -> np.ndarray:
    out = np.full(PERIOD * periods, 7, dtype=np.int16)  # garbage the callback must overwrite
    for i in range(periods):
        pb.fill(out[i * PERIOD : (i + 1) * PERIOD])
    return out


def make(prebuffer_ms: int = 100, ring_ms: int = 2000) -> Playback:
    return Playback(RATE, ring_ms=ring_ms, prebuffer_ms=prebuffer_ms)


def test_silence_when_idle() -> None:
    pb = make()
    assert not fill(pb, 3).any()
    assert pb.underruns == 0 and pb.callbacks == 3


def test_preroll_gate_holds_until_prebuffered() -> None:
    pb = make(prebuffer_ms=100)  # 1600 samples
    pb.play(tone(1000).tobytes())
    assert pb.playing
    assert not fill(pb).any()  # below the pre-roll: silence, not a trickle
    pb.play(tone(600).tobytes())
    out = fill(pb)
    assert (out == 1000).all()
    assert pb.underruns == 0


def test_end_reply_plays_out_below_preroll_and_finishes() -> None:
    pb = make(prebuffer_ms=500)
    pb.play(tone(500).tobytes())
    assert not fill(pb).any()
    pb.end_reply()
    out = fill(pb, 3)
    assert (out[:500] == 1000).all() and not out[500:].any()
    assert not pb.playing
    assert pb.underruns == 0  # the ring ran dry after end_reply: not an underrun
    assert pb.replies_finished == 1


def test_underrun_counted_only_inside_a_reply_and_rebuffers() -> None:
    pb = make(prebuffer_ms=20)
    pb.play(tone(400).tobytes())
    out = fill(pb, 2)
    assert (out[:400] == 1000).all() and not out[400:].any()
    assert pb.underruns == 1  # ran dry before end_reply
    fill(pb, 3)
    assert pb.underruns == 1  # one episode, then the gate waits for the pre-roll again
    pb.play(tone(100).tobytes())
    assert not fill(pb).any()  # 100 < 320-sample pre-roll
    pb.play(tone(300).tobytes())
    assert (fill(pb) == 1000).all()
    pb.end_reply()
    fill(pb, 2)
    assert not pb.playing
    fill(pb, 5)
    assert pb.underruns == 1  # silence between replies is not an underrun


def test_audio_after_an_ended_reply_is_a_reply_of_its_own() -> None:
    # An announcement phrase is queued and ended; the agent's reply arrives behind it. The
    # phrase plays out below the pre-roll, then the agent's audio gets its own pre-roll, and a
    # gap in it is an underrun that waits to rebuffer, not the quiet end of the phrase's reply.
    pb = make(prebuffer_ms=40)  # 640 samples
    pb.play(tone(480, 3).tobytes())
    pb.end_reply()
    pb.play(tone(320).tobytes())  # the agent's first chunk: below its pre-roll
    out = fill(pb, 2)
    assert (out[:480] == 3).all() and not out[480:].any()  # phrase, then no trickle
    assert pb.playing and pb.underruns == 0 and pb.replies_finished == 1
    pb.play(tone(640).tobytes())
    out = fill(pb, 4)
    assert (out[:960] == 1000).all() and not out[960:].any()
    assert pb.underruns == 1 and pb.playing  # the agent's gap: counted, the reply goes on
    pb.play(tone(320).tobytes())
    assert not fill(pb).any()  # rebuffering the pre-roll
    pb.play(tone(320).tobytes())
    assert (fill(pb, 2) == 1000).all()
    pb.end_reply()
    fill(pb)
    assert not pb.playing and pb.replies_finished == 2 and pb.underruns == 1


def test_audio_after_an_ended_reply_read_to_its_last_sample_gets_its_pre_roll() -> None:
    pb = make(prebuffer_ms=40)  # 640 samples
    pb.play(tone(PERIOD, 3).tobytes())
    pb.end_reply()
    assert (fill(pb) == 3).all()  # all of it read; its end not seen yet (the period was full)
    pb.play(tone(320).tobytes())
    assert not fill(pb).any()  # the new reply waits for its own pre-roll
    assert pb.playing and pb.replies_finished == 1
    pb.play(tone(320).tobytes())
    assert (fill(pb, 2) == 1000).all()


def test_a_raised_pre_roll_applies_to_the_refill_after_an_underrun() -> None:
    pb = make(prebuffer_ms=20)  # 320 samples
    pb.play(tone(400).tobytes())
    fill(pb, 2)
    assert pb.underruns == 1
    pb.set_prebuffer_ms(60)  # the tuner reacts to the underrun: 960 samples
    pb.play(tone(500).tobytes())
    assert not fill(pb).any()  # 500 would have passed the old gate, not the new one
    pb.play(tone(500).tobytes())
    assert (fill(pb) == 1000).all()


def test_interrupt_gives_silence_on_next_callback() -> None:
    pb = make(prebuffer_ms=0)
    pb.play(tone(RATE).tobytes())
    assert (fill(pb) == 1000).all()
    dropped = pb.interrupt()
    assert dropped == RATE - PERIOD
    assert not fill(pb).any()
    assert not pb.playing and pb.interrupts == 1 and pb.underruns == 0
    pb.play(tone(PERIOD, 5).tobytes())  # the next reply plays normally
    assert (fill(pb) == 5).all()


def test_volume_scales_in_place() -> None:
    pb = make(prebuffer_ms=0)
    pb.set_volume(0.5)
    pb.play(np.array([32767, -32768, 1000, -1000] * 80, dtype=np.int16).tobytes())
    out = fill(pb)
    assert out[:4].tolist() == [16383, -16384, 500, -500]
    pb.set_volume(0.0)
    pb.play(tone(PERIOD).tobytes())
    assert not fill(pb).any()


def test_ring_overflow_drops_newest_and_counts() -> None:
    pb = make(prebuffer_ms=0, ring_ms=100)  # 1600 samples
    assert pb.play(tone(1000, 1).tobytes()) == 0
    assert pb.play(tone(1000, 2).tobytes()) == 400
    assert pb.ring.dropped == 400
    out = fill(pb, 5)
    assert (out[:1000] == 1).all() and (out[1000:1600] == 2).all()


def test_ring_resize_waits_for_the_reply_to_end() -> None:
    pb = make(prebuffer_ms=0, ring_ms=100)
    pb.play(tone(1000).tobytes())
    pb.set_ring_ms(1000)
    assert pb.ring.capacity == 1600  # not while a reply is queued
    pb.end_reply()
    fill(pb, 5)
    pb.play(tone(10).tobytes())
    assert pb.ring.capacity == 16000


def test_odd_pcm_bytes_are_carried_to_the_next_chunk() -> None:
    pb = make(prebuffer_ms=0)
    data = np.arange(1, 401, dtype="<i2").tobytes()
    pb.play(data[:101])
    pb.play(data[101:])
    out = fill(pb, 2)
    assert out[:400].tolist() == list(range(1, 401))


def test_ulaw_8000_is_decoded_and_resampled_to_the_device_rate() -> None:
    pb = Playback(48000, ring_ms=3000, prebuffer_ms=0)
    pb.set_format(AudioFormat.parse("ulaw_8000"))
    t = np.arange(8000) / 8000
    src = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)
    pb.play(ulaw_encode(src))
    pb.end_reply()
    out = np.zeros(48000 + 4800, dtype=np.int16)
    for i in range(0, len(out), 960):
        pb.fill(out[i : i + 960])
    assert abs(int(np.count_nonzero(out)) - 48000) < 480  # one second at 48 kHz
    spectrum = np.abs(np.fft.rfft(out[:48000].astype(np.float64)))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2  # bin width 1 Hz


def test_configured_volume_applies_from_the_start() -> None:
    pb = Playback(RATE, ring_ms=1000, prebuffer_ms=0, volume=0.25)
    pb.play(tone(PERIOD, 4000).tobytes())
    assert (fill(pb) == 1000).all()


def test_a_pre_roll_larger_than_the_ring_starts_when_the_ring_is_full() -> None:
    """prebuffer_ms above the ring's capacity (a small buffer_ms, the tuner raising the pre-roll
    past a ring it bounded lower) must not hold a streaming reply back until its end."""
    for pb in (make(prebuffer_ms=500, ring_ms=200), make(prebuffer_ms=100, ring_ms=2000)):
        pb.set_prebuffer_ms(600)  # the tuner, after underruns
        pb.set_ring_ms(300)  # the tuner's ring bound (applied between replies)
        pb.play(tone(RATE // 5).tobytes())  # 200 ms, the reply keeps streaming (not ended)
        pb.play(tone(RATE // 5).tobytes())  # the ring fills up
        assert fill(pb).all()  # plays now, not only after end_reply()
        assert pb.underruns == 0
