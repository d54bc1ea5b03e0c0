"""Encode and decode the convai WebSocket's JSON frames (both directions), never raising.

Server events decode to frozen dataclasses (`decode_server`); client frames are built as JSON text
by small encoders (`user_audio_chunk`, `pong`, `initiation`, ...). The simulator uses the mirror
pair `decode_client` / `encode_server`. Anything malformed becomes `Malformed(kind, detail)`;
a `type` missing from the protocol sheet becomes `Unknown(type)`.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from voicebox import __version__

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

# ---------------------------------------------------------------------------------------------
# Server -> client events


@dataclass(frozen=True, slots=True)
class Metadata:
    conversation_id: str
    agent_output_audio_format: str
    user_input_audio_format: str


@dataclass(frozen=True, slots=True)
class Audio:
    event_id: int
    audio: bytes
    alignment: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AgentResponse:
    text: str
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class AgentResponseCorrection:
    original: str
    corrected: str
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class AgentChatResponsePart:
    text: str
    part_type: str
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class UserTranscript:
    text: str
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class TentativeUserTranscript:
    text: str
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class Interruption:
    event_id: int


@dataclass(frozen=True, slots=True)
class Ping:
    event_id: int
    ping_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ClientToolCall:
    tool_name: str
    tool_call_id: str
    parameters: dict[str, Any]
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class VadScore:
    score: float


@dataclass(frozen=True, slots=True)
class AgentToolRequest:
    tool_name: str
    tool_call_id: str
    tool_type: str | None = None
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class AgentToolResponse:
    tool_name: str
    tool_call_id: str
    tool_type: str | None = None
    is_error: bool = False
    is_called: bool = False
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class AgentResponseComplete:
    pass


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An `error` frame, nested (`error_event`) or flat (`{"type":"error","message":...}`)."""

    code: int | None
    error_type: str | None
    message: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Other:
    """A known event the client does not act on; `payload` is the whole frame (with "type")."""

    type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unknown:
    """A `type` that is not in the protocol sheet: counted and ignored."""

    type: str


MalformedKind = Literal[
    "binary", "json", "not_object", "missing_type", "missing_field", "bad_type", "base64"
]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that could not be decoded; `kind` says how, `detail` says where."""

    kind: str
    detail: str


ServerEvent = (
    Metadata
    | Audio
    | AgentResponse
    | AgentResponseCorrection
    | AgentChatResponsePart
    | UserTranscript
    | TentativeUserTranscript
    | Interruption
    | Ping
    | ClientToolCall
    | VadScore
    | AgentToolRequest
    | AgentToolResponse
    | AgentResponseComplete
    | ErrorEvent
    | Other
    | Unknown
    | Malformed
)

# Server event types in the sheet that voicebox does not act on (decoded as Other).
OTHER_SERVER_TYPES = frozenset(
    {
        "agent_reasoning_response_part",
        "internal_tentative_agent_response",
        "internal_turn_probability",
        "agent_tool_response_full_payload",
        "mcp_tool_call",
        "mcp_connection_status",
        "context_usage",
        "asr_initiation_metadata",
        "guardrail_triggered",
        "rich_content",
        "agent_typing",
        "external_agent_connected",
        "external_agent_disconnected",
        "dtmf_request",
        "client_error",
    }
)


class _Bad(Exception):
    """Internal: raised by field readers, turned into Malformed by the decoders."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail


# Field readers. `where` names the field for the Malformed detail.


def _obj(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = d.get(key)
    if v is None:
        raise _Bad("missing_field", f"{where}.{key}" if where else key)
    if type(v) is not dict:
        raise _Bad("bad_type", f"{where}.{key}: expected object" if where else key)
    return v


def _str(d: dict[str, Any], key: str, where: str) -> str:
    v = d.get(key)
    if type(v) is str:
        return v
    if v is None:
        raise _Bad("missing_field", f"{where}.{key}")
    raise _Bad("bad_type", f"{where}.{key}: expected string")


def _opt_str(d: dict[str, Any], key: str, where: str) -> str | None:
    v = d.get(key)
    if v is None or type(v) is str:
        return v
    raise _Bad("bad_type", f"{where}.{key}: expected string or null")


def _int(d: dict[str, Any], key: str, where: str) -> int:
    v = d.get(key)
    if type(v) is int:
        return v
    if v is None:
        raise _Bad("missing_field", f"{where}.{key}")
    raise _Bad("bad_type", f"{where}.{key}: expected integer")


def _opt_int(d: dict[str, Any], key: str, where: str) -> int | None:
    v = d.get(key)
    if v is None or type(v) is int:
        return v
    if type(v) is float and v.is_integer():
        return int(v)
    raise _Bad("bad_type", f"{where}.{key}: expected integer or null")


def _bool(d: dict[str, Any], key: str, where: str, default: bool) -> bool:
    v = d.get(key)
    if v is None:
        return default
    if type(v) is bool:
        return v
    raise _Bad("bad_type", f"{where}.{key}: expected boolean")


def _opt_dict(d: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    v = d.get(key)
    if v is None or type(v) is dict:
        return v
    raise _Bad("bad_type", f"{where}.{key}: expected object or null")


def _b64(text: str, where: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise _Bad("base64", f"{where}: {exc}") from None


# Per-type server decoders: frame dict -> event.


def _metadata(f: dict[str, Any]) -> Metadata:
    w = "conversation_initiation_metadata_event"
    p = _obj(f, w, "")
    return Metadata(
        _str(p, "conversation_id", w),
        _opt_str(p, "agent_output_audio_format", w) or "pcm_16000",
        _opt_str(p, "user_input_audio_format", w) or "pcm_16000",
    )


def _audio(f: dict[str, Any]) -> Audio:
    p = _obj(f, "audio_event", "")
    return Audio(
        _int(p, "event_id", "audio_event"),
        _b64(_str(p, "audio_base_64", "audio_event"), "audio_event.audio_base_64"),
        _opt_dict(p, "alignment", "audio_event"),
    )


def _agent_response(f: dict[str, Any]) -> AgentResponse:
    w = "agent_response_event"
    p = _obj(f, w, "")
    return AgentResponse(_str(p, "agent_response", w), _opt_int(p, "event_id", w))


def _correction(f: dict[str, Any]) -> AgentResponseCorrection:
    w = "agent_response_correction_event"
    p = _obj(f, w, "")
    return AgentResponseCorrection(
        _str(p, "original_agent_response", w),
        _str(p, "corrected_agent_response", w),
        _opt_int(p, "event_id", w),
    )


def _chat_part(f: dict[str, Any]) -> AgentChatResponsePart:
    w = "text_response_part"
    p = _obj(f, w, "")
    return AgentChatResponsePart(_str(p, "text", w), _str(p, "type", w), _opt_int(p, "event_id", w))


def _user_transcript(f: dict[str, Any]) -> UserTranscript:
    w = "user_transcription_event"
    p = _obj(f, w, "")
    return UserTranscript(_str(p, "user_transcript", w), _opt_int(p, "event_id", w))


def _tentative(f: dict[str, Any]) -> TentativeUserTranscript:
    w = "tentative_user_transcription_event"
    p = _obj(f, w, "")
    return TentativeUserTranscript(_str(p, "user_transcript", w), _opt_int(p, "event_id", w))


def _interruption(f: dict[str, Any]) -> Interruption:
    return Interruption(_int(_obj(f, "interruption_event", ""), "event_id", "interruption_event"))


def _ping(f: dict[str, Any]) -> Ping:
    p = _obj(f, "ping_event", "")
    return Ping(_int(p, "event_id", "ping_event"), _opt_int(p, "ping_ms", "ping_event"))


def _tool_call(f: dict[str, Any]) -> ClientToolCall:
    w = "client_tool_call"
    p = _obj(f, w, "")
    return ClientToolCall(
        _str(p, "tool_name", w),
        _str(p, "tool_call_id", w),
        _opt_dict(p, "parameters", w) or {},
        _opt_int(p, "event_id", w),
    )


def _vad(f: dict[str, Any]) -> VadScore:
    p = _obj(f, "vad_score_event", "")
    v = p.get("vad_score")
    if type(v) is float or type(v) is int:
        return VadScore(float(v))
    if v is None:
        raise _Bad("missing_field", "vad_score_event.vad_score")
    raise _Bad("bad_type", "vad_score_event.vad_score: expected number")


def _tool_request(f: dict[str, Any]) -> AgentToolRequest:
    w = "agent_tool_request"
    p = _obj(f, w, "")
    return AgentToolRequest(
        _str(p, "tool_name", w),
        _str(p, "tool_call_id", w),
        _opt_str(p, "tool_type", w),
        _opt_int(p, "event_id", w),
    )


def _tool_response(f: dict[str, Any]) -> AgentToolResponse:
    w = "agent_tool_response"
    p = _obj(f, w, "")
    return AgentToolResponse(
        _str(p, "tool_name", w),
        _str(p, "tool_call_id", w),
        _opt_str(p, "tool_type", w),
        _bool(p, "is_error", w, False),
        _bool(p, "is_called", w, False),
        _opt_int(p, "event_id", w),
    )


def _complete(f: dict[str, Any]) -> AgentResponseComplete:
    return _COMPLETE


_COMPLETE = AgentResponseComplete()


def _error(f: dict[str, Any]) -> ErrorEvent:
    nested = f.get("error_event")
    p, w = (nested, "error_event") if type(nested) is dict else (f, "error")
    return ErrorEvent(
        _opt_int(p, "code", w),
        _opt_str(p, "error_type", w),
        _opt_str(p, "message", w) or "",
        _opt_str(p, "reason", w),
    )


_SERVER: dict[str, Callable[[dict[str, Any]], ServerEvent]] = {
    "conversation_initiation_metadata": _metadata,
    "audio": _audio,
    "agent_response": _agent_response,
    "agent_response_correction": _correction,
    "agent_chat_response_part": _chat_part,
    "user_transcript": _user_transcript,
    "tentative_user_transcript": _tentative,
    "interruption": _interruption,
    "ping": _ping,
    "client_tool_call": _tool_call,
    "vad_score": _vad,
    "agent_tool_request": _tool_request,
    "agent_tool_response": _tool_response,
    "agent_response_complete": _complete,
    "error": _error,
}

_loads = json.loads
_a2b = binascii.a2b_base64


def _parse(frame: str | bytes) -> dict[str, Any] | Malformed:
    if type(frame) is not str:
        n = len(frame) if isinstance(frame, bytes | bytearray | memoryview) else 0
        return Malformed("binary", f"binary frame of {n} bytes")
    try:
        obj = _loads(frame)
    except (ValueError, RecursionError) as exc:
        return Malformed("json", str(exc)[:200])
    if type(obj) is not dict:
        return Malformed("not_object", f"top level is {type(obj).__name__}")
    return obj


def decode_server(frame: str | bytes) -> ServerEvent:
    """Decode one server frame; never raises (bad input -> Malformed, unlisted type -> Unknown)."""
    obj = _parse(frame)
    if type(obj) is Malformed:
        return obj
    assert isinstance(obj, dict)
    kind = obj.get("type")
    if kind == "audio":  # fast path: 50+ per second; anything unusual takes the checked path
        p = obj.get("audio_event")
        if type(p) is dict:
            b64, event_id, alignment = p.get("audio_base_64"), p.get("event_id"), p.get("alignment")
            if type(b64) is str and type(event_id) is int and alignment is None:
                try:
                    return Audio(event_id, _a2b(b64, strict_mode=True), None)
                except (binascii.Error, ValueError):
                    pass
    if type(kind) is not str:
        return Malformed("missing_type" if kind is None else "bad_type", "type")
    fn = _SERVER.get(kind)
    if fn is None:
        return Other(kind, obj) if kind in OTHER_SERVER_TYPES else Unknown(kind)
    try:
        return fn(obj)
    except _Bad as bad:
        return Malformed(bad.kind, f"{kind}: {bad.detail}")


# ---------------------------------------------------------------------------------------------
# Client -> server encoders (JSON text frames)

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_b2a = binascii.b2a_base64


def user_audio_chunk(pcm: bytes) -> str:
    """`{"user_audio_chunk": "<base64>"}` for raw audio in the announced input format."""
    return '{"user_audio_chunk":"' + _b2a(pcm, newline=False).decode("ascii") + '"}'


def user_audio_frame(pcm: ReadableBuffer) -> bytes:
    """`user_audio_chunk` as the UTF-8 bytes of the text frame (the per-chunk hot path).

    `pcm` is any C-contiguous buffer of the wire bytes (bytes, or an int16 array on a
    little-endian machine for pcm_*), so no intermediate copy is made.
    """
    return b'{"user_audio_chunk":"' + _b2a(pcm, newline=False) + b'"}'


def pong(event_id: int) -> str:
    return '{"type":"pong","event_id":' + str(int(event_id)) + "}"


def build_overrides(
    first_message: str | None,
    prompt: str | None,
    language: str | None,
    voice_id: str | None,
    max_duration_s: int | None,
) -> dict[str, Any]:
    """The nested `conversation_config_override`, with only the keys that are set.

    `first_message=""` is kept (it means "no greeting"); empty prompt/language/voice_id and a
    non-positive max_duration_s count as unset.
    """
    out: dict[str, Any] = {}
    agent: dict[str, Any] = {}
    if prompt:
        agent["prompt"] = {"prompt": prompt}
    if first_message is not None:
        agent["first_message"] = first_message
    if language:
        agent["language"] = language
    if agent:
        out["agent"] = agent
    if voice_id:
        out["tts"] = {"voice_id": voice_id}
    if max_duration_s is not None and max_duration_s > 0:
        out["conversation"] = {"max_duration_seconds": int(max_duration_s)}
    return out


def initiation(
    *,
    overrides: dict[str, Any] | None = None,
    dynamic_variables: dict[str, Any] | None = None,
    custom_llm_extra_body: dict[str, Any] | None = None,
    user_id: str | None = None,
    source: str = "voicebox",
    version: str = __version__,
) -> str:
    """The first client frame, `conversation_initiation_client_data` (same shape as the SDK's)."""
    msg: dict[str, Any] = {
        "type": "conversation_initiation_client_data",
        "custom_llm_extra_body": custom_llm_extra_body or {},
        "conversation_config_override": overrides or {},
        "dynamic_variables": dynamic_variables or {},
        "source_info": {"source": source, "version": version},
    }
    if user_id is not None:
        msg["user_id"] = user_id
    return _dumps(msg)


def client_tool_result(tool_call_id: str, result: str, is_error: bool) -> str:
    return _dumps(
        {
            "type": "client_tool_result",
            "tool_call_id": tool_call_id,
            "result": result,
            "is_error": bool(is_error),
        }
    )


def contextual_update(text: str, context_id: str | None = None) -> str:
    msg: dict[str, Any] = {"type": "contextual_update", "text": text}
    if context_id is not None:
        msg["context_id"] = context_id
    return _dumps(msg)


def user_message(text: str) -> str:
    return _dumps({"type": "user_message", "text": text})


def user_activity() -> str:
    return '{"type":"user_activity"}'


def feedback(score: Literal["like", "dislike"] | None, event_id: int) -> str:
    return _dumps({"type": "feedback", "score": score, "event_id": int(event_id)})


# ---------------------------------------------------------------------------------------------
# Server side (the simulator): client frame decoding and server frame encoding


@dataclass(frozen=True, slots=True)
class Initiation:
    overrides: dict[str, Any]
    dynamic_variables: dict[str, Any]
    custom_llm_extra_body: dict[str, Any]
    user_id: str | None
    source_info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UserAudioChunk:
    audio: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    event_id: int


@dataclass(frozen=True, slots=True)
class ClientToolResult:
    tool_call_id: str
    result: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class ContextualUpdate:
    text: str
    context_id: str | None = None


@dataclass(frozen=True, slots=True)
class UserMessage:
    text: str


@dataclass(frozen=True, slots=True)
class UserActivity:
    pass


@dataclass(frozen=True, slots=True)
class Feedback:
    score: str | None
    event_id: int


ClientEvent = (
    Initiation
    | UserAudioChunk
    | Pong
    | ClientToolResult
    | ContextualUpdate
    | UserMessage
    | UserActivity
    | Feedback
    | Other
    | Unknown
    | Malformed
)

OTHER_CLIENT_TYPES = frozenset({"mcp_tool_approval_result", "multimodal_message"})


def _c_initiation(f: dict[str, Any]) -> Initiation:
    w = "conversation_initiation_client_data"
    return Initiation(
        _opt_dict(f, "conversation_config_override", w) or {},
        _opt_dict(f, "dynamic_variables", w) or {},
        _opt_dict(f, "custom_llm_extra_body", w) or {},
        _opt_str(f, "user_id", w),
        _opt_dict(f, "source_info", w) or {},
    )


def _c_pong(f: dict[str, Any]) -> Pong:
    return Pong(_int(f, "event_id", "pong"))


def _c_tool_result(f: dict[str, Any]) -> ClientToolResult:
    w = "client_tool_result"
    result = f.get("result")
    if result is not None and type(result) is not str:
        result = _dumps(result)  # tolerate non-string results: the server stringifies too
    is_error = _bool(f, "is_error", w, False)
    return ClientToolResult(_str(f, "tool_call_id", w), result or "", is_error)


def _c_contextual(f: dict[str, Any]) -> ContextualUpdate:
    w = "contextual_update"
    return ContextualUpdate(_str(f, "text", w), _opt_str(f, "context_id", w))


def _c_user_message(f: dict[str, Any]) -> UserMessage:
    return UserMessage(_str(f, "text", "user_message"))


def _c_activity(f: dict[str, Any]) -> UserActivity:
    return _ACTIVITY


_ACTIVITY = UserActivity()


def _c_feedback(f: dict[str, Any]) -> Feedback:
    score = _opt_str(f, "score", "feedback")
    if score not in (None, "like", "dislike"):
        raise _Bad("bad_type", "feedback.score: expected like, dislike or null")
    return Feedback(score, _int(f, "event_id", "feedback"))


_CLIENT: dict[str, Callable[[dict[str, Any]], ClientEvent]] = {
    "conversation_initiation_client_data": _c_initiation,
    "pong": _c_pong,
    "client_tool_result": _c_tool_result,
    "contextual_update": _c_contextual,
    "user_message": _c_user_message,
    "user_activity": _c_activity,
    "feedback": _c_feedback,
}


def decode_client(frame: str | bytes) -> ClientEvent:
    """Decode one client frame (simulator side); never raises."""
    obj = _parse(frame)
    if type(obj) is Malformed:
        return obj
    assert isinstance(obj, dict)
    chunk = obj.get("user_audio_chunk")
    if chunk is not None:
        if type(chunk) is not str:
            return Malformed("bad_type", "user_audio_chunk: expected string")
        try:
            return UserAudioChunk(_b64(chunk, "user_audio_chunk"))
        except _Bad as bad:
            return Malformed(bad.kind, bad.detail)
    kind = obj.get("type")
    if type(kind) is not str:
        return Malformed("missing_type" if kind is None else "bad_type", "type")
    fn = _CLIENT.get(kind)
    if fn is None:
        return Other(kind, obj) if kind in OTHER_CLIENT_TYPES else Unknown(kind)
    try:
        return fn(obj)
    except _Bad as bad:
        return Malformed(bad.kind, f"{kind}: {bad.detail}")


def _with_id(d: dict[str, Any], event_id: int | None) -> dict[str, Any]:
    if event_id is not None:
        d["event_id"] = event_id
    return d


def encode_server(event: ServerEvent) -> str:
    """The server's JSON frame for `event` (the nested shapes of the sheet).

    `decode_server(encode_server(e)) == e` for every event except Unknown/Malformed, which have
    no wire form (Unknown encodes as a bare `{"type": ...}` frame, Malformed as ValueError).
    """
    e = event
    if isinstance(e, Audio):
        b64 = _b2a(e.audio, newline=False).decode("ascii")
        if e.alignment is None:
            return (
                '{"type":"audio","audio_event":{"audio_base_64":"'
                + b64
                + '","event_id":'
                + str(e.event_id)
                + "}}"
            )
        return _dumps(
            {
                "type": "audio",
                "audio_event": {
                    "audio_base_64": b64,
                    "event_id": e.event_id,
                    "alignment": e.alignment,
                },
            }
        )
    msg: dict[str, Any]
    if isinstance(e, Metadata):
        msg = {
            "type": "conversation_initiation_metadata",
            "conversation_initiation_metadata_event": {
                "conversation_id": e.conversation_id,
                "agent_output_audio_format": e.agent_output_audio_format,
                "user_input_audio_format": e.user_input_audio_format,
            },
        }
    elif isinstance(e, AgentResponse):
        msg = {
            "type": "agent_response",
            "agent_response_event": _with_id({"agent_response": e.text}, e.event_id),
        }
    elif isinstance(e, AgentResponseCorrection):
        msg = {
            "type": "agent_response_correction",
            "agent_response_correction_event": _with_id(
                {"original_agent_response": e.original, "corrected_agent_response": e.corrected},
                e.event_id,
            ),
        }
    elif isinstance(e, AgentChatResponsePart):
        msg = {
            "type": "agent_chat_response_part",
            "text_response_part": _with_id({"text": e.text, "type": e.part_type}, e.event_id),
        }
    elif isinstance(e, UserTranscript):
        msg = {
            "type": "user_transcript",
            "user_transcription_event": _with_id({"user_transcript": e.text}, e.event_id),
        }
    elif isinstance(e, TentativeUserTranscript):
        msg = {
            "type": "tentative_user_transcript",
            "tentative_user_transcription_event": _with_id({"user_transcript": e.text}, e.event_id),
        }
    elif isinstance(e, Interruption):
        msg = {"type": "interruption", "interruption_event": {"event_id": e.event_id}}
    elif isinstance(e, Ping):
        msg = {"type": "ping", "ping_event": {"event_id": e.event_id, "ping_ms": e.ping_ms}}
    elif isinstance(e, ClientToolCall):
        msg = {
            "type": "client_tool_call",
            "client_tool_call": _with_id(
                {
                    "tool_name": e.tool_name,
                    "tool_call_id": e.tool_call_id,
                    "parameters": e.parameters,
                },
                e.event_id,
            ),
        }
    elif isinstance(e, VadScore):
        msg = {"type": "vad_score", "vad_score_event": {"vad_score": e.score}}
    elif isinstance(e, AgentToolRequest):
        msg = {
            "type": "agent_tool_request",
            "agent_tool_request": _with_id(
                {
                    "tool_name": e.tool_name,
                    "tool_call_id": e.tool_call_id,
                    "tool_type": e.tool_type,
                },
                e.event_id,
            ),
        }
    elif isinstance(e, AgentToolResponse):
        msg = {
            "type": "agent_tool_response",
            "agent_tool_response": _with_id(
                {
                    "tool_name": e.tool_name,
                    "tool_call_id": e.tool_call_id,
                    "tool_type": e.tool_type,
                    "is_error": e.is_error,
                    "is_called": e.is_called,
                },
                e.event_id,
            ),
        }
    elif isinstance(e, AgentResponseComplete):
        return '{"type":"agent_response_complete"}'
    elif isinstance(e, ErrorEvent):
        msg = {
            "type": "error",
            "error_event": {
                "code": e.code,
                "error_type": e.error_type,
                "message": e.message,
                "reason": e.reason,
                "debug_message": None,
                "details": None,
            },
        }
    elif isinstance(e, Other):
        msg = {**e.payload, "type": e.type}
    elif isinstance(e, Unknown):
        msg = {"type": e.type}
    else:
        raise ValueError(f"{type(e).__name__} has no wire form")
    return _dumps(msg)


def flat_error(message: str) -> str:
    """The flat error frame seen on quota kills: `{"type":"error","message":...}`."""
    return _dumps({"type": "error", "message": message})
