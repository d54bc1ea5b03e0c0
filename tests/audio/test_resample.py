"""FrameResampler: chunking, output counts per 20 ms frame, and filter quality."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from voicebox.audio.resample import FrameResampler


def _tone(freq: float, rate: int, n: int, amp: float = 10000.0) -> npt.NDArray[np.int16]:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.int16)


def _snr_db(got: npt.NDArray[np.int16], ideal: npt.NDArray[np.float64]) -> float:
    err = got.astype(np.float64) - ideal
    return float(10 * np.log10(np.sum(ideal**2) / np.sum(err**2)))


@pytest.mark.parametrize(
    ("src", "dst"), [(16000, 8000), (44100, 8000), (8000, 16000), (8000, 22050)]
)
def test_chunked_output_equals_one_shot_for_odd_chunk_sizes(src: int, dst: int) -> None:
    x = np.random.default_rng(5).integers(-30000, 30000, 6000).astype(np.int16)
    one_shot = FrameResampler(src, dst).process(x, last=True)
    rs = FrameResampler(src, dst)
    parts, i = [], 0
    for size in (1, 7, 333, 0, 129, 997, 2, 1501):
        parts.append(rs.process(x[i : i + size]))
        i += size
    parts.append(rs.process(x[i:], last=True))
    chunked = np.concatenate(parts)
    assert len(one_shot) == -(-len(x) * dst // src)  # ceil(n * dst / src): nothing added
    np.testing.assert_array_equal(chunked, one_shot)
    # last=True reset it: the next stream starts afresh.
    np.testing.assert_array_equal(rs.process(x, last=True), one_shot)


@pytest.mark.parametrize(
    ("src", "dst"), [(16000, 8000), (22050, 8000), (24000, 8000), (44100, 8000), (8000, 16000)]
)
def test_every_20ms_chunk_after_the_first_gives_exactly_20ms(src: int, dst: int) -> None:
    rs = FrameResampler(src, dst)
    assert 0 < rs.delay_s < 0.003  # half the filter, a fraction of one frame
    counts = [len(rs.process(np.zeros(src // 50, np.int16))) for _ in range(25)]
    held = round(rs.delay_s * dst)
    assert abs(counts[0] - (dst // 50 - held)) <= 1  # the first chunk less the delay
    assert counts[1:] == [dst // 50] * 24
    tail = rs.process(np.zeros(0, np.int16), last=True)
    assert sum(counts) + len(tail) == 25 * dst // 50


def test_1khz_sine_16k_to_8k_matches_the_ideal_sine() -> None:
    out = FrameResampler(16000, 8000).process(_tone(1000, 16000, 16000), last=True)
    ideal = 10000 * np.sin(2 * np.pi * 1000 * np.arange(len(out)) / 8000)  # no shift to undo
    edge = slice(80, -80)  # the zeros before the start and after the end
    assert _snr_db(out[edge], ideal[edge]) >= 40


def test_6khz_tone_at_16k_is_removed_not_aliased_to_8k() -> None:
    out = FrameResampler(16000, 8000).process(_tone(6000, 16000, 16000), last=True)
    rms = float(np.sqrt(np.mean(out[80:-80].astype(np.float64) ** 2)))
    assert rms == 0 or 20 * np.log10(rms / (10000 / np.sqrt(2))) <= -40


def test_1khz_sine_8k_to_16k_matches_the_ideal_sine() -> None:
    out = FrameResampler(8000, 16000).process(_tone(1000, 8000, 8000), last=True)
    ideal = 10000 * np.sin(2 * np.pi * 1000 * np.arange(len(out)) / 16000)
    edge = slice(160, -160)
    assert _snr_db(out[edge], ideal[edge]) >= 40


def test_full_scale_is_clipped_not_wrapped_and_reset_forgets_input() -> None:
    square = np.tile(np.r_[np.full(8, 32767), np.full(8, -32768)], 100).astype(np.int16)
    rs = FrameResampler(16000, 8000)
    out = rs.process(square, last=True)
    assert out.dtype == np.int16 and out.max() == 32767 and out.min() == -32768
    rs.process(square)
    rs.reset()
    np.testing.assert_array_equal(rs.process(np.zeros(800, np.int16), last=True), 0)


def test_same_rate_passes_through() -> None:
    x = _tone(440, 8000, 160)
    assert FrameResampler(8000, 8000).process(x) is x
