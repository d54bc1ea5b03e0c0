"""The daemon's one state enum: it drives the LED, sd_notify STATUS=, `voicebox status` and logs."""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    IDLE = "idle"  # no conversation open
    CONNECTING = "connecting"  # opening a session (first, or after end/idle)
    LISTENING = "listening"  # session open, the agent is not speaking
    SPEAKING = "speaking"  # the agent's reply is playing
    RECONNECTING = "reconnecting"  # link lost, backing off before a new session
    DEGRADED = "degraded"  # configuration/account problem: long backoff, loud log
    MUTED = "muted"  # privacy mute: no session, no wake word, no audio leaves the box
    RINGING = "ringing"  # a timer or alarm rings (shown over the conversation's state)
    STOPPING = "stopping"  # shutdown in progress
