"""The wake-word detector on real speech (espeak-ng): the word is heard, other speech is not,
the refractory period holds, and a chunk at another rate is resampled."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.wake.speech import say
from voicebox.audio.resample import convert
from voicebox.config import WakeConfig
from voicebox.simulator.voice import silence
from voicebox.wake import WakeDetector, WakeError, WakeListener, detections_in, load_model


def test_okay_nabu_is_heard_at_the_end_of_the_word_and_other_speech_is_not() -> None:
    wake = say("Okay nabu")
    other = say("Okay, now what is the weather like in Paris today?")
    audio = np.concatenate([silence(1.0), wake, silence(1.0), other, silence(1.0)])
    found = detections_in(WakeConfig(), audio)
    assert len(found) == 1
    assert 1.0 < found[0] <= 1.0 + len(wake) / 16000 + 0.3


def test_the_refractory_period_makes_one_word_one_detection() -> None:
    wake = say("Okay nabu")
    twice = np.concatenate([silence(0.5), wake, silence(0.2), wake, silence(0.5)])
    assert len(detections_in(WakeConfig(refractory_s=10.0), twice)) == 1
    assert len(detections_in(WakeConfig(refractory_s=0.0), twice)) == 2


def test_audio_at_another_rate_is_resampled_to_the_models_rate() -> None:
    audio = np.concatenate([silence(0.5), say("Okay nabu"), silence(0.5)])
    detector = WakeDetector(WakeConfig())
    at_24k = convert(audio, 16000, 24000)
    hits = [detector.process(at_24k[i : i + 480], 24000) for i in range(0, len(at_24k), 480)]
    detector.close()
    assert sum(hits) == 1


def test_a_threshold_sets_the_cutoff_and_a_bad_path_is_a_wake_error() -> None:
    model = load_model(WakeConfig(threshold=0.5))
    assert model.probability_cutoff == 0.5
    model.close()
    with pytest.raises(WakeError, match="wake.model"):
        load_model(WakeConfig(model="/nope/word.json"))


def test_doctor_loads_the_model_and_reports_its_share_of_a_core() -> None:
    from voicebox.config import Config, with_changes
    from voicebox.doctor.wake import check_wake

    good = check_wake(with_changes(Config(), **{"conversation.mode": "wake_word"}))
    assert good.status == "ok" and "% of one core" in good.detail, good
    bad = check_wake(with_changes(Config(), **{"wake.model": "/nope/word.json"}))
    assert bad.status == "fail" and "/nope/word.json" in bad.detail and bad.fix


@pytest.mark.asyncio
async def test_the_listener_reports_the_chunk_the_word_ended_in_not_the_later_detection() -> None:
    # The detection comes an averaging window after the word; the question said right after the
    # word must not be lost, and the word itself is not sent (at most a chunk of its tail).
    wake = say("Okay nabu")
    loud = np.flatnonzero(np.abs(wake.astype(np.int32)) > 300)
    word_end = 16000 + int(loud[-1])  # the word's last audible sample, after 1 s of silence
    question = say("What is the weather like today?")
    asked = word_end + 1 + int(0.15 * 16000)  # the question's first sample
    audio = np.concatenate([silence(1.0), wake[: word_end - 16000 + 1], silence(0.15), question])
    loop = asyncio.get_running_loop()
    heard: asyncio.Future[int] = loop.create_future()
    listener = WakeListener(WakeConfig(), loop, heard.set_result)
    listener.start()
    first = 1000  # the mic's chunk numbers need not start at 0
    try:
        for i, start in enumerate(range(0, len(audio), 320)):
            listener.feed(audio[start : start + 320], first + i, 16000)
        after = await asyncio.wait_for(heard, timeout=30)
    finally:
        listener.stop()
    sent_from = (after + 1 - first) * 320  # the first sample the supervisor would send
    detected_at = listener.detector.samples  # not exact: the thread may have gone on
    assert word_end - 320 <= sent_from <= asked, (word_end, sent_from, asked)
    assert sent_from < detected_at
