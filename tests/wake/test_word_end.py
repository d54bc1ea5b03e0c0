"""Where the wake word ended, from the levels of the chunks before the detection (pure)."""

from __future__ import annotations

from voicebox.wake import Span, word_end

CHUNK = 320  # 20 ms at 16 kHz
LAG = 2880  # okay_nabu's: 180 ms


def spans(levels: list[float], first_seq: int = 500) -> list[Span]:
    return [Span(first_seq + i, (i + 1) * CHUNK, db) for i, db in enumerate(levels)]


def test_the_first_pause_after_the_word_is_where_sending_starts() -> None:
    # 10 chunks of word, 8 of pause, then the question: detected 10 chunks after the word.
    s = spans([-20.0] * 10 + [-60.0] * 8 + [-22.0] * 6)
    assert word_end(s, detected_at=20 * CHUNK, lag=LAG) == 510


def test_a_question_said_straight_on_falls_back_to_the_models_lag() -> None:
    s = spans([-20.0] * 30)
    assert word_end(s, detected_at=30 * CHUNK, lag=LAG) == 500 + 30 - LAG // CHUNK


def test_a_dip_shorter_than_a_pause_is_not_the_words_end() -> None:
    # a 40 ms stop consonant inside the question, no pause after the word
    s = spans([-20.0] * 20 + [-60.0] * 2 + [-20.0] * 8)
    assert word_end(s, detected_at=30 * CHUNK, lag=LAG) == 500 + 30 - LAG // CHUNK


def test_a_pause_is_counted_against_the_loudest_chunk_so_room_noise_is_quiet_too() -> None:
    # noise 30 dB under the speech: the pause is noise, not digital silence
    s = spans([-18.0] * 12 + [-48.0] * 6 + [-19.0] * 4)
    assert word_end(s, detected_at=22 * CHUNK, lag=LAG) == 512


def test_a_pause_that_starts_just_before_the_detection_is_not_the_words_end() -> None:
    # quiet only in the last 40 ms: the detection cannot come that soon after the word
    s = spans([-20.0] * 26 + [-60.0] * 4)
    assert word_end(s, detected_at=28 * CHUNK, lag=LAG) == 500 + 28 - LAG // CHUNK


def test_nothing_kept_is_chunk_zero_and_an_old_lag_is_the_oldest_chunk() -> None:
    assert word_end([], detected_at=0, lag=LAG) == 0
    assert word_end(spans([-20.0] * 3), detected_at=3 * CHUNK, lag=LAG) == 500


def test_chunks_after_the_detection_are_not_looked_at() -> None:
    # the thread took a long batch: the pause after the question is not the word's end
    s = spans([-20.0] * 30 + [-60.0] * 10)
    assert word_end(s, detected_at=30 * CHUNK, lag=LAG) == 500 + 30 - LAG // CHUNK
