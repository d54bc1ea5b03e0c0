"""Tuning changes carried out on the parts they tune, each non-initial one a log event (the
policy that decides them is voicebox.tuning, pure)."""

from __future__ import annotations

import logging

from voicebox import logs
from voicebox.audio.engine import AudioEngine
from voicebox.convai.supervisor import Supervisor
from voicebox.tuning import Tuning, TuningChange

log = logging.getLogger("voicebox.daemon")


def initial_changes(t: Tuning) -> list[TuningChange]:
    """The starting values as changes, so that one path applies them."""
    return [
        TuningChange("prebuffer_ms", None, t.prebuffer_ms, "initial", False),
        TuningChange("receive_timeout_s", None, t.receive_timeout_s, "initial", False),
        TuningChange("resume_buffer_s", None, t.resume_buffer_s, "initial", False),
        TuningChange("probe_timeout_s", None, t.probe_timeout_s, "initial", False),
        TuningChange("ring_ms", None, t.ring_ms, "initial", True),
    ]


def apply_changes(
    changes: list[TuningChange], audio: AudioEngine, supervisor: Supervisor, current: Tuning
) -> None:
    for change in changes:
        if change.name == "prebuffer_ms":
            audio.set_prebuffer_ms(int(change.new))
        elif change.name == "ring_ms":
            audio.set_ring_ms(int(change.new))
        elif change.name == "chunk_ms":
            audio.set_chunk_ms(int(change.new))
        elif change.name == "latency_s":
            if change.new is not None:
                audio.set_latency(float(change.new))
        elif change.name == "receive_timeout_s":
            supervisor.set_receive_timeout(float(change.new))
        elif change.name == "resume_buffer_s":
            supervisor.set_resume_buffer_s(float(change.new))
        elif change.name in ("probe_interval_s", "probe_timeout_s"):
            supervisor.set_probe_timing(current.probe_interval_s, current.probe_timeout_s)
        else:
            continue
        if change.reason != "initial":
            logs.event(log, "tuning.changed", name=change.name, old=change.old, new=change.new,
                       reason=change.reason)  # fmt: skip
