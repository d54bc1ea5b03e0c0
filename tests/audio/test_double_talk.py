"""The double-talk verdict (pure): the user, whom MDF does not cancel and AEC3 passes, for
three frames starts it; echo either of them suppresses does not; it holds through the hangover
while MDF still hears more than echo, and a reset ends it."""

from __future__ import annotations

import numpy as np

from voicebox.audio.echo.double_talk import HANG_FRAMES, ONSET_FRAMES, DoubleTalk

FRAME = 160


def frames(levels_db: list[float], seed: int = 0) -> np.ndarray:
    """Noise frames at the given dBFS, one level per frame."""
    rng = np.random.default_rng(seed)
    out = [rng.standard_normal(FRAME) * 32768 * 10 ** (db / 20) for db in levels_db]
    return np.clip(np.concatenate(out), -32768, 32767).astype(np.int16)


def echo_then(dt: DoubleTalk, n: int = 100) -> None:
    """Echo alone that MDF takes 20 dB off and AEC3 40: what MDF leaves is learned."""
    mic = frames([-20.0] * n)
    linear = (mic * 0.1).astype(np.int16)
    assert not dt.frames(mic, linear, frames([-60.0] * n, seed=1)).any()


def test_the_user_starts_it_and_the_hangover_fills_what_aec3_cut() -> None:
    dt = DoubleTalk(FRAME)
    echo_then(dt)
    n = ONSET_FRAMES + 5 + HANG_FRAMES + 5
    user = ONSET_FRAMES + 5
    mic = frames([-20.0] * n, seed=2)
    linear = mic.copy()  # the user: MDF cancels nothing of it
    aec3 = frames([-24.0] * user + [-60.0] * (n - user), seed=3)  # then AEC3 cuts the user
    verdicts = dt.frames(mic, linear, aec3)
    assert not verdicts[: ONSET_FRAMES - 1].any()  # not on one or two frames
    assert verdicts[ONSET_FRAMES - 1 : user + HANG_FRAMES - 1].all()
    assert not verdicts[user + HANG_FRAMES :].any()


def test_the_hangover_does_not_hold_the_echo_after_the_user() -> None:
    dt = DoubleTalk(FRAME)
    echo_then(dt)
    mic = frames([-20.0] * 20, seed=2)
    user = mic.copy()
    user[10 * FRAME :] = (mic[10 * FRAME :] * 0.1).astype(np.int16)  # the user stops at 10
    verdicts = dt.frames(mic, user, frames([-24.0] * 10 + [-60.0] * 10, seed=3))
    assert verdicts[ONSET_FRAMES:10].all() and not verdicts[10:].any()


def test_echo_that_aec3_lets_through_is_not_the_user_when_mdf_cancels_it() -> None:
    dt = DoubleTalk(FRAME)
    echo_then(dt)
    mic = frames([-20.0] * 50, seed=2)
    linear = (mic * 0.1).astype(np.int16)  # MDF: echo, 20 dB off as before
    assert not dt.frames(mic, linear, mic).any()  # AEC3 lost it: the leak check's business


def test_a_frame_or_two_of_the_user_does_not_start_it_and_a_reset_ends_it() -> None:
    dt = DoubleTalk(FRAME)
    echo_then(dt)
    mic = frames([-20.0] * 2, seed=2)
    assert not dt.frames(mic, mic, mic).any()
    mic = frames([-20.0] * ONSET_FRAMES, seed=4)
    assert dt.frames(mic, mic, mic)[-1]
    dt.reset()
    quiet = frames([-70.0] * 4, seed=5)
    assert not dt.frames(quiet, quiet, quiet).any()
