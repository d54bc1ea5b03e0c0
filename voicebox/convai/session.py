"""One conversation as a sans-I/O state machine: events in, actions out.

`Session` is fed the socket opening, decoded server events, mic chunks, clock ticks and tool
results (time is always passed in) and returns `Action`s for the I/O layer to carry out in order:
send a frame, play or interrupt audio, set the negotiated formats, run a tool, close, log.
It records what the supervisor needs afterwards: conversation id, close code and reason, the last
error event, turns, a bounded transcript, and counters of stale audio, unknown and malformed frames.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicebox.audio import formats
from voicebox.audio.formats import PCM_16000, AudioFormat
from voicebox.audio.port import Chunk
from voicebox.audio.resample import StreamResampler
from voicebox.convai import messages as m

# int16 in wire byte order (little-endian); None on a big-endian machine, where encode() swaps.
_WIRE_PCM = np.dtype(np.int16) if sys.byteorder == "little" else None

# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    frame: str


@dataclass(frozen=True, slots=True)
class Play:
    data: bytes


@dataclass(frozen=True, slots=True)
class EndReply:
    pass


@dataclass(frozen=True, slots=True)
class Interrupt:
    pass


@dataclass(frozen=True, slots=True)
class SetInputFormat:
    fmt: AudioFormat


@dataclass(frozen=True, slots=True)
class SetOutputFormat:
    fmt: AudioFormat


@dataclass(frozen=True, slots=True)
class Ready:
    """The metadata arrived: the session may now carry audio both ways."""

    conversation_id: str


@dataclass(frozen=True, slots=True)
class Heard:
    """The service's final transcript of what the user said."""

    text: str


@dataclass(frozen=True, slots=True)
class RunTool:
    name: str
    tool_call_id: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class LogEvent:
    name: str
    level: int
    fields: dict[str, Any]


Action = (
    Send
    | Play
    | EndReply
    | Interrupt
    | SetInputFormat
    | SetOutputFormat
    | Ready
    | Heard
    | RunTool
    | Close
    | LogEvent
)

TRANSCRIPT_LINES = 64
REPLY_GAP_S = 0.5  # no agent audio for this long: the reply is over
# While the mic is gated the keepalive silence goes out in frames this long, not per chunk: a
# fifth of the frames (and send calls) of 20 ms chunks; the service only needs continuous input.
GATED_FRAME_S = 0.1
_TEXT_MAX = 2000


def context_text(transcript: Iterable[tuple[str, str]], lines: int) -> str:
    """The recent transcript as a contextual_update for the next session ("" if none)."""
    recent = list(transcript)[-lines:] if lines > 0 else []
    if not recent:
        return ""
    body = "\n".join(f"{role}: {text}" for role, text in recent)
    return (
        "The conversation continues from a previous connection; do not greet the user again. "
        "Recent transcript:\n" + body
    )


@dataclass(frozen=True)
class SessionSettings:
    """What one session sends and how long it waits; built from the config by the supervisor."""

    overrides: dict[str, Any] = field(default_factory=dict)
    dynamic_variables: dict[str, Any] = field(default_factory=dict)
    custom_llm_extra_body: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    metadata_timeout_s: float = 10.0
    idle_close_s: float | None = None  # push_to_talk: close after this long without speech
    # Hands-free (the mic is always live): a live chunk is activity only when its peak reaches
    # this (int16); None: every live chunk is (push_to_talk, the button held).
    voice_peak: int | None = None
    context: str | None = None  # carried over from the previous session (contextual_update)


class Session:
    """One conversation's protocol state."""

    def __init__(self, settings: SessionSettings, now: float) -> None:
        self.settings = settings
        self.created_at = now
        self.ready_at: float | None = None
        self.closed_at: float | None = None
        self.conversation_id: str | None = None
        self.input_format: AudioFormat = PCM_16000
        self.output_format: AudioFormat = PCM_16000
        self.close_code: int | None = None
        self.close_reason = ""
        self.local_close = False  # we decided to close (idle, end, rollover, shutdown)
        self.failure: str | None = None  # locally detected failure (see policy.FAILURES)
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.end_call = False  # the agent called end_call: let its goodbye play out
        self.turns = 0
        self.transcript: deque[tuple[str, str]] = deque(maxlen=TRANSCRIPT_LINES)
        self.stale_audio = 0  # audio events dropped after an interruption
        self.unknown = 0
        self.malformed = 0
        self.malformed_kinds: set[str] = set()
        self.unknown_types: set[str] = set()
        self.tool_calls = 0
        self.pending_tools: dict[str, str] = {}
        self.last_ping_ms: int | None = None
        self.waiting_reply = False  # the user finished a turn; no reply started yet
        self.in_reply = False  # agent audio is arriving
        self._last_audio_at = 0.0
        self.user_active_at = -1e9  # the service last heard the user (VAD, tentative transcript)
        self._drop_upto = -1  # audio with event_id <= this is stale
        self._last_audio_id = -1
        self._cut = False  # a local barge-in: the agent's audio is stale until its next turn
        self._last_activity = now
        self._resamplers: dict[int, StreamResampler] = {}
        self._silence = np.zeros(0, dtype=np.int16)
        self._gated = 0  # samples of gated-mic silence not sent yet

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.ready_at is not None and self.closed_at is None

    def open(self, now: float) -> list[Action]:
        """The socket is open: the initiation data goes first."""
        s = self.settings
        frame = m.initiation(
            overrides=s.overrides or None,
            dynamic_variables=s.dynamic_variables or None,
            custom_llm_extra_body=s.custom_llm_extra_body or None,
            user_id=s.user_id,
        )
        return [Send(frame)]

    def close(self, code: int, reason: str) -> list[Action]:
        """We end the session (end of conversation, idle, rollover, shutdown)."""
        self.local_close = True
        return [Close(code, reason)]

    def closed(self, code: int | None, reason: str, now: float) -> None:
        """The socket closed; code is None when no close frame was received."""
        if self.closed_at is None:
            self.closed_at = now
            self.close_code = code
            self.close_reason = reason or ""
        self.pending_tools.clear()

    def lifetime_s(self) -> float | None:
        """Seconds from the metadata to the close; None if the session never became ready."""
        if self.ready_at is None:
            return None
        end = self.closed_at if self.closed_at is not None else self.ready_at
        return max(0.0, end - self.ready_at)

    def expecting_frames(self) -> bool:
        """The service should be sending now (a reply is due or under way)."""
        return self.waiting_reply or self.in_reply or (self.ready_at is None)

    def link_ok(self) -> None:
        """A link probe came back: a quiet service is just quiet."""
        self.waiting_reply = False
        self.in_reply = False

    def speaking(self) -> bool:
        return self.in_reply

    # --- server events -------------------------------------------------------------------------

    def receive(self, ev: m.ServerEvent, now: float) -> list[Action]:
        t = type(ev)
        if t is m.Audio:
            assert isinstance(ev, m.Audio)
            if self._cut and now - self._last_audio_at >= REPLY_GAP_S:
                self._cut = False  # a gap this long: the cut turn is over, this is the next one
            if ev.event_id <= self._drop_upto or self._cut:
                self.stale_audio += 1
                if self._cut:
                    self._last_audio_at = now
                return []
            self._last_audio_id = ev.event_id
            self._last_audio_at = now
            self.in_reply = True
            self.waiting_reply = False
            self._last_activity = now
            return [Play(ev.audio)]
        if t is m.Ping:
            assert isinstance(ev, m.Ping)
            self.last_ping_ms = ev.ping_ms
            return [Send(m.pong(ev.event_id))]
        if t is m.Metadata:
            assert isinstance(ev, m.Metadata)
            return self._metadata(ev, now)
        if t is m.Interruption:
            assert isinstance(ev, m.Interruption)
            self._drop_upto = max(self._drop_upto, ev.event_id)
            self.in_reply = self._cut = False
            return [
                Interrupt(),
                LogEvent("agent.interrupted", logging.DEBUG, {"event_id": ev.event_id}),
            ]
        if t is m.AgentResponse:
            assert isinstance(ev, m.AgentResponse)
            if ev.event_id is None or ev.event_id > self._drop_upto:
                self._cut = False  # the agent's next turn
            self.waiting_reply = False
            self._line("agent", ev.text)
            return []
        if t is m.AgentResponseCorrection:
            assert isinstance(ev, m.AgentResponseCorrection)
            for i in range(len(self.transcript) - 1, -1, -1):
                role, text = self.transcript[i]
                if role == "agent":
                    if text == ev.original.strip()[:_TEXT_MAX]:
                        self.transcript[i] = (role, ev.corrected.strip()[:_TEXT_MAX])
                    break
            return []
        if t is m.TentativeUserTranscript:
            self.user_active_at = now
            return []
        if t is m.VadScore:
            assert isinstance(ev, m.VadScore)
            if ev.score >= 0.5:
                self.user_active_at = now
            return []
        if t is m.UserTranscript:
            assert isinstance(ev, m.UserTranscript)
            self.user_active_at = now
            self._cut = False  # the user's turn: what the agent says next is a new turn
            if ev.text.strip():
                self._line("user", ev.text)
                self.waiting_reply = True
                self._last_activity = now
                return [Heard(ev.text.strip()[:_TEXT_MAX])]
            return []
        if t is m.AgentResponseComplete:
            self.in_reply = self._cut = False
            return [EndReply()]
        if t is m.ClientToolCall:
            assert isinstance(ev, m.ClientToolCall)
            self.tool_calls += 1
            self.waiting_reply = False
            self.pending_tools[ev.tool_call_id] = ev.tool_name
            self._last_activity = now
            return [
                RunTool(ev.tool_name, ev.tool_call_id, ev.parameters),
                LogEvent(
                    "tool.called",
                    logging.INFO,
                    {"tool": ev.tool_name, "tool_call_id": ev.tool_call_id},
                ),
            ]
        if t is m.AgentToolResponse:
            assert isinstance(ev, m.AgentToolResponse)
            if ev.tool_name == "end_call":
                self.end_call = True
                return [
                    EndReply(),
                    LogEvent(
                        "agent.end_call", logging.INFO, {"conversation_id": self.conversation_id}
                    ),
                ]
            return []
        if t is m.ErrorEvent:
            assert isinstance(ev, m.ErrorEvent)
            self.error_type = ev.error_type
            self.error_message = ev.message or ev.reason or ""
            return [
                LogEvent(
                    "session.error",
                    logging.WARNING,
                    {
                        "conversation_id": self.conversation_id,
                        "code": ev.code,
                        "error_type": ev.error_type,
                        "message": ev.message[:300],
                    },
                )
            ]
        if t is m.Malformed:
            assert isinstance(ev, m.Malformed)
            self.malformed += 1
            if ev.kind not in self.malformed_kinds:
                self.malformed_kinds.add(ev.kind)
                return [
                    LogEvent(
                        "frame.malformed",
                        logging.WARNING,
                        {"kind": ev.kind, "detail": ev.detail[:200]},
                    )
                ]
            return []
        if t is m.Unknown:
            assert isinstance(ev, m.Unknown)
            self.unknown += 1
            if ev.type not in self.unknown_types and len(self.unknown_types) < 64:
                self.unknown_types.add(ev.type)
                return [LogEvent("frame.unknown", logging.INFO, {"type": ev.type[:64]})]
            return []
        # Other, VadScore, transcripts in progress, chat parts, tool requests: nothing to do.
        return []

    def _metadata(self, ev: m.Metadata, now: float) -> list[Action]:
        if self.ready_at is not None:
            return [
                LogEvent(
                    "frame.unexpected",
                    logging.WARNING,
                    {"type": "conversation_initiation_metadata"},
                )
            ]
        actions: list[Action] = []
        for attr, value in (
            ("output_format", ev.agent_output_audio_format),
            ("input_format", ev.user_input_audio_format),
        ):
            try:
                setattr(self, attr, AudioFormat.parse(value))
            except ValueError as exc:
                actions.append(
                    LogEvent(
                        "session.format_unsupported",
                        logging.WARNING,
                        {"field": attr, "detail": str(exc), "using": "pcm_16000"},
                    )
                )
        self.conversation_id = ev.conversation_id
        self.ready_at = now
        self._last_activity = now
        actions += [SetOutputFormat(self.output_format), SetInputFormat(self.input_format)]
        actions.append(Ready(ev.conversation_id))
        if self.settings.context:
            actions.append(Send(m.contextual_update(self.settings.context)))
        return actions

    def _line(self, role: str, text: str) -> None:
        text = text.strip()
        if text:
            self.turns += 1
            self.transcript.append((role, text[:_TEXT_MAX]))

    # --- local events --------------------------------------------------------------------------

    @property
    def last_activity(self) -> float:
        """Loop time either side last spoke (or a tool ran): the idle close counts from it."""
        return self._last_activity

    def mic(self, samples: Chunk, rate: int, live: bool, now: float) -> list[Action]:
        """A mic chunk: encoded in the session's input format; while the mic is gated, silence of
        the same duration, sent once GATED_FRAME_S of it has gathered."""
        frame = self.mic_frame(samples, rate, live, now)
        return [Send(frame.decode("ascii"))] if frame is not None else []

    def mic_frame(self, samples: Chunk, rate: int, live: bool, now: float) -> bytes | None:
        """`mic` without the action list: the text frame's bytes, or None when nothing is sent."""
        if not self.ready:
            return None
        fmt = self.input_format
        if not live:
            self._gated += len(samples) if rate == fmt.rate else len(samples) * fmt.rate // rate
            n = self._gated
            if n < fmt.rate * GATED_FRAME_S:
                return None
            self._gated = 0
            if len(self._silence) != n:
                self._silence = np.zeros(n, dtype=np.int16)
            samples = self._silence
        else:
            peak = self.settings.voice_peak
            if peak is None or (
                len(samples) and (int(samples.max()) >= peak or int(samples.min()) <= -peak)
            ):
                self._last_activity = now
            if rate != fmt.rate:
                rs = self._resamplers.get(rate)
                if rs is None:
                    rs = self._resamplers[rate] = StreamResampler(rate, fmt.rate)
                samples = rs.process(samples)
            if self._gated:  # the silence still owed goes first, in the same frame
                samples = np.concatenate((np.zeros(self._gated, np.int16), samples))
                self._gated = 0
        if len(samples) == 0:
            return None
        if samples.dtype is _WIRE_PCM and fmt.encoding == "pcm":
            try:  # int16 already in wire byte order: base64 straight from the array's buffer
                return m.user_audio_frame(samples.data)
            except BufferError:  # not C-contiguous
                pass
        return m.user_audio_frame(formats.encode(samples, fmt))

    def barge_in(self, now: float) -> list[Action]:
        """The user pressed (or an announcement cut in) while the agent speaks: drop the rest of its
        turn locally, up to its next turn (agent_response, user_transcript, interruption,
        agent_response_complete or a REPLY_GAP_S gap; ids alone cannot tell, as a service may tag
        every chunk anew), and tell the service."""
        self._drop_upto = max(self._drop_upto, self._last_audio_id)
        self._cut = True
        self.in_reply = False
        self._last_activity = now
        return [Interrupt(), Send(m.user_activity())]

    def tool_result(self, tool_call_id: str, result: str, is_error: bool) -> list[Action]:
        name = self.pending_tools.pop(tool_call_id, None)
        if name is None or self.closed_at is not None:
            return []
        return [
            Send(m.client_tool_result(tool_call_id, result, is_error)),
            LogEvent(
                "tool.result",
                logging.INFO if not is_error else logging.WARNING,
                {
                    "tool": name,
                    "tool_call_id": tool_call_id,
                    "is_error": is_error,
                    "result": result[:200],
                },
            ),
        ]

    def tick(self, now: float, playing: bool) -> list[Action]:
        """Timers: the metadata deadline and, in push_to_talk, the idle close."""
        if self.closed_at is not None or self.local_close:
            return []
        if self.ready_at is None:
            if now - self.created_at >= self.settings.metadata_timeout_s:
                self.failure = "metadata_timeout"
                return self.close(1000, "no conversation metadata")
            return []
        if playing or self.pending_tools:
            self._last_activity = now
        if self.in_reply and now - self._last_audio_at >= REPLY_GAP_S:
            # The service streams a reply ahead of real time, so a gap this long means the reply
            # is over; agent_response_complete is not in every agent's client_events.
            self.in_reply = False
            return [EndReply()]
        idle = self.settings.idle_close_s
        if idle is not None and now - self._last_activity >= idle:
            return [
                *self.close(1000, "idle"),
                LogEvent(
                    "session.idle",
                    logging.INFO,
                    {"conversation_id": self.conversation_id, "idle_s": round(idle, 1)},
                ),
            ]
        return []

    # --- reporting -----------------------------------------------------------------------------

    def end_fields(self) -> dict[str, Any]:
        """Keyword arguments for policy.classify_end."""
        return {
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "failure": self.failure,
            "local": self.local_close,
        }
