"""speexdsp's MDF filter ahead of AEC3 (voicebox/audio/echo/linear_echo.py): real libspeexdsp."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio.echo_rooms import RATE, db, run_room, speech_like
from voicebox.audio.echo import linear_echo
from voicebox.audio.echo.frames import FRAME
from voicebox.audio.echo.linear_echo import LinearEchoFilter
from voicebox.audio.room import impulse_response


@pytest.fixture(autouse=True)
def _need_library() -> None:
    if not linear_echo.available():  # bootstrap installs it: not having it is a defect
        pytest.fail(f"libspeexdsp not found: scripts/bootstrap.sh installs {linear_echo.PACKAGE}")


def test_mdf_takes_most_of_a_loud_rooms_echo_off() -> None:
    """The loud bench room (the echo as loud as the speaker, 250 ms tail), reference aligned:
    after 5 s of agent speech MDF alone takes over 15 dB off the echo."""
    far = speech_like(11, seed=2)
    h = impulse_response(RATE, 30.0, 250.0, 0.0, seed=3, direct_db=6.0)
    mic = np.clip(np.convolve(far, h)[: len(far)], -32768, 32767).astype(np.int16)
    ref = np.clip(far, -32768, 32767).astype(np.int16)
    trained, reset = LinearEchoFilter(RATE, FRAME), LinearEchoFilter(RATE, FRAME)
    for mdf in (trained, reset):
        out = np.concatenate(
            [
                mdf.process(mic[i : i + 320], ref[i : i + 320]).copy()
                for i in range(0, 10 * RATE, 320)
            ]
        )
    assert db(mic[5 * RATE : 10 * RATE]) - db(out[5 * RATE :]) > 15.0
    reset.reset()  # a reset filter has learned nothing: most of the echo passes again
    span = slice(10 * RATE, 10 * RATE + RATE // 2)
    kept = db(mic[span]) - db(trained.process(mic[span], ref[span]))
    fresh = db(mic[span]) - db(reset.process(mic[span], ref[span]))
    assert kept > 15.0 and fresh < 6.0, (kept, fresh)


def test_the_processor_switches_to_mdf_once_it_has_converged() -> None:
    run = run_room(speech_like(12, seed=1), delay_ms=30, tail_ms=250, echo_db=0.0, direct_db=6.0)
    stats = run.processor.snapshot()
    assert run.processor.linear_filter and stats.linear_echo
    assert stats.converged and stats.erle_db is not None and stats.erle_db >= 30.0


def test_without_libspeexdsp_aec3_runs_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linear_echo, "available", lambda: False)
    run = run_room(speech_like(10, seed=1))
    stats = run.processor.snapshot()
    assert not run.processor.linear_filter and not stats.linear_echo
    assert stats.erle_db is not None and stats.erle_db >= 30.0
