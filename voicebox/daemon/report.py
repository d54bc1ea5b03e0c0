"""What the daemon says about itself, pure: the STATUS= line, the health line's counters, and the
status socket's `volume` and `timers` commands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from voicebox.audio.port import AudioStats
from voicebox.monitor import Sample
from voicebox.state import State
from voicebox.timers.book import TimerError
from voicebox.timers.ringer import Timers

TROUBLE = {State.RECONNECTING, State.DEGRADED}


def status_text(
    state: State, fields: Mapping[str, Any], ringing: list[str], sample: Sample | None
) -> str:
    """The one-line STATUS= (systemctl status): state, ring, conversation, trouble, load."""
    parts = [str(state)]
    if ringing:
        parts.append("ringing " + ", ".join(ringing))
    cid = fields.get("conversation_id")
    if cid:
        parts.append(f"conv={cid}")
    if state in TROUBLE:
        if fields.get("reason"):
            parts.append(f"reason={fields['reason']}")
        if fields.get("waiting_for"):
            parts.append(f"waiting for {fields['waiting_for']}")
        if fields.get("delay_s") is not None:
            parts.append(f"retry in {float(fields['delay_s']):.0f}s")
    if sample is not None:
        parts.append(f"cpu={sample.cpu_percent:.0f}%")
        if sample.temp_c is not None:
            parts.append(f"temp={sample.temp_c:.0f}C")
    return " ".join(parts)


def health_counters(
    counters: Mapping[str, Any], stats: AudioStats, minutes: Mapping[str, Any]
) -> dict[str, Any]:
    """The counters of the periodic health line: the session's, the audio's, the minutes."""
    out = {
        **counters,
        "underruns": stats.underruns,
        "overflows": stats.input_overflows,
        "dropped_audio": stats.dropped_chunks,
    }
    if stats.processing:
        out.update(
            erle_db=stats.erle_db,
            echo_delay_ms=stats.echo_delay_ms,
            processing_cpu_percent=stats.processing_cpu_percent,
            echo_converged=stats.echo_converged,
        )
    out.update(today_minutes=minutes["today_minutes"], month_minutes=minutes["month_minutes"])
    return out


def volume_command(
    argument: str, level: Callable[[], int], set_level: Callable[[int, str], int]
) -> dict[str, Any]:
    """`volume` (the level) or `volume N` over the status socket."""
    if argument:
        try:
            wanted = int(argument)
        except ValueError:
            return {"error": f"not a level 0-100: {argument!r}"}
        if not 0 <= wanted <= 100:
            return {"error": f"not a level 0-100: {wanted}"}
        set_level(wanted, "socket")
    return {"level": level()}


def timers_command(argument: str, timers: Timers | None) -> dict[str, Any]:
    """`timers` (the list), `timers cancel NAME`, `timers stop` over the status socket."""
    if timers is None:
        return {"error": "timers are off (timers.enabled: false)"}
    verb, _, name = argument.partition(" ")
    answer: dict[str, Any] = {}
    if verb == "stop":
        answer["stopped"] = timers.stop("socket")
    elif verb == "cancel":
        try:
            answer["said"] = timers.cancel(name.strip() or None, "socket")
        except TimerError as exc:
            return {"error": str(exc)}
    elif verb:
        return {"error": f"unknown timers command {verb!r} (known: cancel NAME, stop)"}
    return answer | {"timers": timers.listing(), "ringing": timers.snapshot()["ringing"]}
