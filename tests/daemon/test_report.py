"""What the daemon says about itself (pure): STATUS= and the health line's counters."""

from __future__ import annotations

import dataclasses

from voicebox.audio.port import AudioStats
from voicebox.daemon.report import health_counters, status_text
from voicebox.monitor import Sample
from voicebox.state import State

SAMPLE = Sample(0.0, 41.6, 3.0, 900.0, 60.0, 0.5, 55.4, 0, 41.6, 3.0, 55.4, 4)


def test_status_names_trouble_only_when_in_trouble() -> None:
    fields = {"conversation_id": "c1", "reason": "network", "delay_s": 4.2}
    assert status_text(State.LISTENING, fields, [], SAMPLE) == "listening conv=c1 cpu=42% temp=55C"
    text = status_text(State.RECONNECTING, fields, ["pasta"], None)
    assert text == "reconnecting ringing pasta conv=c1 reason=network retry in 4s"
    waiting = status_text(
        State.DEGRADED, {"reason": "audio_device", "waiting_for": "hw:2"}, [], None
    )
    assert waiting == "degraded reason=audio_device waiting for hw:2"


def test_health_counters_carry_the_echo_figures_only_with_processing() -> None:
    minutes = {"today_minutes": 1.5, "month_minutes": 9.0}
    plain = health_counters({"turns": 3}, AudioStats(input_overflows=2), minutes)
    assert plain["turns"] == 3 and plain["overflows"] == 2 and "erle_db" not in plain
    stats = dataclasses.replace(AudioStats(), processing=True, erle_db=30.5)
    assert health_counters({}, stats, minutes)["erle_db"] == 30.5
