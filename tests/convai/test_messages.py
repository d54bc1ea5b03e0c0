"""The convai wire messages: decoding never raises, encoders produce the sheet's exact shapes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebox import __version__
from voicebox.convai import messages as m

SERVER_RESULT_TYPES = (
    m.Metadata,
    m.Audio,
    m.AgentResponse,
    m.AgentResponseCorrection,
    m.AgentChatResponsePart,
    m.UserTranscript,
    m.TentativeUserTranscript,
    m.Interruption,
    m.Ping,
    m.ClientToolCall,
    m.VadScore,
    m.AgentToolRequest,
    m.AgentToolResponse,
    m.AgentResponseComplete,
    m.ErrorEvent,
    m.Other,
    m.Unknown,
    m.Malformed,
)
CLIENT_RESULT_TYPES = (
    m.Initiation,
    m.UserAudioChunk,
    m.Pong,
    m.ClientToolResult,
    m.ContextualUpdate,
    m.UserMessage,
    m.UserActivity,
    m.Feedback,
    m.Other,
    m.Unknown,
    m.Malformed,
)
MALFORMED_KINDS = {"binary", "json", "not_object", "missing_type", "missing_field", "bad_type"}
MALFORMED_KINDS.add("base64")

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
known_types = st.sampled_from(sorted(m._SERVER) + sorted(m.OTHER_SERVER_TYPES) + ["pong", "nope"])


def _frame(obj: Any) -> str:
    return json.dumps(obj)


# -- fuzzing: never raises, only known result types


@settings(max_examples=200, deadline=None)
@given(st.binary() | st.text())
def test_decode_any_bytes_or_text_never_raises(frame: bytes | str) -> None:
    assert isinstance(m.decode_server(frame), SERVER_RESULT_TYPES)
    assert isinstance(m.decode_client(frame), CLIENT_RESULT_TYPES)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_decode_any_json_never_raises(value: Any) -> None:
    assert isinstance(m.decode_server(_frame(value)), SERVER_RESULT_TYPES)
    assert isinstance(m.decode_client(_frame(value)), CLIENT_RESULT_TYPES)


@settings(max_examples=150, deadline=None)
@given(known_types, st.text(max_size=12), json_objects, json_objects)
def test_decode_typed_frames_with_junk_payloads_never_raises(
    kind: str, key: str, payload: dict[str, Any], top: dict[str, Any]
) -> None:
    """Right type, random payload under every plausible key: decoded or Malformed, never raised."""
    payload_keys = [key, kind, f"{kind}_event", "error_event", "audio_event", "ping_event"]
    for payload_key in payload_keys:
        frame = {**top, "type": kind, payload_key: payload}
        result = m.decode_server(_frame(frame))
        assert isinstance(result, SERVER_RESULT_TYPES)
        if isinstance(result, m.Malformed):
            assert result.kind in MALFORMED_KINDS
        assert isinstance(m.decode_client(_frame(frame)), CLIENT_RESULT_TYPES)


# -- malformed kinds


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b"\x00\x01", "binary"),
        ("{not json", "json"),
        ("[1, 2]", "not_object"),
        ('"audio"', "not_object"),
        ('{"audio_event": {}}', "missing_type"),
        ('{"type": 7}', "bad_type"),
        ('{"type": "audio"}', "missing_field"),
        ('{"type": "audio", "audio_event": {"event_id": 1}}', "missing_field"),
        ('{"type": "audio", "audio_event": "x"}', "bad_type"),
        ('{"type": "audio", "audio_event": {"audio_base_64": 5, "event_id": 1}}', "bad_type"),
        (
            '{"type": "audio", "audio_event": {"audio_base_64": "AAAA", "event_id": "1"}}',
            "bad_type",
        ),
        (
            '{"type": "audio", "audio_event": {"audio_base_64": "AAAA", "event_id": true}}',
            "bad_type",
        ),
        ('{"type": "audio", "audio_event": {"audio_base_64": "!!!", "event_id": 1}}', "base64"),
        ('{"type": "audio", "audio_event": {"audio_base_64": "AAA", "event_id": 1}}', "base64"),
        ('{"type": "audio", "audio_event": {"audio_base_64": "AAé=", "event_id": 1}}', "base64"),
        ('{"type": "ping", "ping_event": {}}', "missing_field"),
        ('{"type": "ping", "ping_event": {"event_id": 1, "ping_ms": "x"}}', "bad_type"),
        ('{"type": "interruption", "interruption_event": {"event_id": null}}', "missing_field"),
        ('{"type": "vad_score", "vad_score_event": {"vad_score": "high"}}', "bad_type"),
        ('{"type": "client_tool_call", "client_tool_call": {"tool_name": "t"}}', "missing_field"),
        ('{"type": "error", "error_event": {"code": "1008"}}', "bad_type"),
    ],
)
def test_malformed_kinds(frame: str | bytes, kind: str) -> None:
    result = m.decode_server(frame)
    assert isinstance(result, m.Malformed)
    assert result.kind == kind
    assert result.detail


def test_unknown_and_other_types() -> None:
    assert m.decode_server('{"type": "brand_new_event", "x": 1}') == m.Unknown("brand_new_event")
    frame = {"type": "mcp_tool_call", "mcp_tool_call": {"state": "loading"}}
    assert m.decode_server(_frame(frame)) == m.Other("mcp_tool_call", frame)
    assert m.decode_server('{"type": "guardrail_triggered"}') == m.Other(
        "guardrail_triggered", {"type": "guardrail_triggered"}
    )


# -- the sheet's exact server shapes decode to the right events


def test_sheet_examples_decode() -> None:
    audio = base64.b64encode(b"\x01\x02\x03\x04").decode()
    align = {"chars": ["H", "i"], "char_start_times_ms": [0, 60], "char_durations_ms": [60, 80]}
    cases: list[tuple[dict[str, Any], m.ServerEvent]] = [
        (
            {
                "type": "conversation_initiation_metadata",
                "conversation_initiation_metadata_event": {
                    "conversation_id": "conv_1",
                    "agent_output_audio_format": "pcm_44100",
                    "user_input_audio_format": "ulaw_8000",
                },
            },
            m.Metadata("conv_1", "pcm_44100", "ulaw_8000"),
        ),
        (
            {
                "type": "audio",
                "audio_event": {"audio_base_64": audio, "event_id": 7, "alignment": align},
            },
            m.Audio(7, b"\x01\x02\x03\x04", align),
        ),
        (
            {
                "type": "agent_response",
                "agent_response_event": {"agent_response": "Hi", "event_id": 7},
            },
            m.AgentResponse("Hi", 7),
        ),
        (
            {
                "type": "agent_response_correction",
                "agent_response_correction_event": {
                    "original_agent_response": "Long answer",
                    "corrected_agent_response": "Long",
                    "event_id": 7,
                },
            },
            m.AgentResponseCorrection("Long answer", "Long", 7),
        ),
        (
            {
                "type": "agent_chat_response_part",
                "text_response_part": {"text": "Hel", "type": "delta", "event_id": 7},
            },
            m.AgentChatResponsePart("Hel", "delta", 7),
        ),
        (
            {"type": "user_transcript", "user_transcription_event": {"user_transcript": "hello"}},
            m.UserTranscript("hello", None),
        ),
        (
            {
                "type": "tentative_user_transcript",
                "tentative_user_transcription_event": {"user_transcript": "hel", "event_id": 6},
            },
            m.TentativeUserTranscript("hel", 6),
        ),
        ({"type": "interruption", "interruption_event": {"event_id": 7}}, m.Interruption(7)),
        ({"type": "ping", "ping_event": {"event_id": 12345, "ping_ms": 50}}, m.Ping(12345, 50)),
        ({"type": "ping", "ping_event": {"event_id": 1, "ping_ms": None}}, m.Ping(1, None)),
        (
            {
                "type": "client_tool_call",
                "client_tool_call": {
                    "tool_name": "set_timer",
                    "tool_call_id": "tc_1",
                    "parameters": {"minutes": 5},
                    "event_id": 8,
                },
            },
            m.ClientToolCall("set_timer", "tc_1", {"minutes": 5}, 8),
        ),
        ({"type": "vad_score", "vad_score_event": {"vad_score": 1}}, m.VadScore(1.0)),
        (
            {
                "type": "agent_tool_request",
                "agent_tool_request": {
                    "tool_name": "x",
                    "tool_call_id": "c",
                    "tool_type": "client",
                },
            },
            m.AgentToolRequest("x", "c", "client", None),
        ),
        (
            {
                "type": "agent_tool_response",
                "agent_tool_response": {
                    "tool_name": "end_call",
                    "tool_call_id": "c9",
                    "tool_type": "system",
                    "is_error": False,
                    "is_called": True,
                    "event_id": 9,
                },
            },
            m.AgentToolResponse("end_call", "c9", "system", False, True, 9),
        ),
        ({"type": "agent_response_complete"}, m.AgentResponseComplete()),
    ]
    for frame, expected in cases:
        assert m.decode_server(_frame(frame)) == expected, frame


# -- error shapes


def test_error_nested_shape() -> None:
    frame = {
        "type": "error",
        "error_event": {
            "code": 1000,
            "error_type": "max_duration_exceeded",
            "message": "Maximum duration exceeded",
            "reason": "limit",
            "debug_message": None,
            "details": None,
        },
    }
    assert m.decode_server(_frame(frame)) == m.ErrorEvent(
        1000, "max_duration_exceeded", "Maximum duration exceeded", "limit"
    )


def test_error_flat_quota_shape() -> None:
    text = "received 1002 (protocol error) This request exceeds your quota limit."
    assert m.decode_server(m.flat_error(text)) == m.ErrorEvent(None, None, text, None)
    flat = {"type": "error", "message": "boom", "code": 1008, "error_type": "override_error"}
    assert m.decode_server(_frame(flat)) == m.ErrorEvent(1008, "override_error", "boom", None)


def test_error_with_nothing_is_still_an_error() -> None:
    assert m.decode_server('{"type": "error"}') == m.ErrorEvent(None, None, "", None)
    assert m.decode_server('{"type":"error","error_event":{"message":null}}') == m.ErrorEvent(
        None, None, "", None
    )


# -- round trip encode_server -> decode_server for every event

ids = st.integers(min_value=0, max_value=2**53)
opt_ids = st.none() | ids
fmt = st.sampled_from(["pcm_8000", "pcm_16000", "pcm_22050", "pcm_44100", "ulaw_8000"])
server_events = st.one_of(
    st.builds(m.Metadata, st.text(), fmt, fmt),
    st.builds(m.Audio, ids, st.binary(max_size=2000), st.none() | json_objects),
    st.builds(m.AgentResponse, st.text(), opt_ids),
    st.builds(m.AgentResponseCorrection, st.text(), st.text(), opt_ids),
    st.builds(
        m.AgentChatResponsePart, st.text(), st.sampled_from(["start", "delta", "stop"]), opt_ids
    ),
    st.builds(m.UserTranscript, st.text(), opt_ids),
    st.builds(m.TentativeUserTranscript, st.text(), opt_ids),
    st.builds(m.Interruption, ids),
    st.builds(m.Ping, ids, opt_ids),
    st.builds(m.ClientToolCall, st.text(), st.text(), json_objects, opt_ids),
    st.builds(m.VadScore, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(m.AgentToolRequest, st.text(), st.text(), st.none() | st.text(), opt_ids),
    st.builds(
        m.AgentToolResponse,
        st.text(),
        st.text(),
        st.none() | st.text(),
        st.booleans(),
        st.booleans(),
        opt_ids,
    ),
    st.just(m.AgentResponseComplete()),
    st.builds(
        m.ErrorEvent,
        st.none() | st.sampled_from([1000, 1002, 1008, 1011]),
        st.none() | st.text(),
        st.text(),
        st.none() | st.text(),
    ),
    st.sampled_from(sorted(m.OTHER_SERVER_TYPES)).flatmap(
        lambda t: json_objects.map(lambda p: m.Other(t, {**p, "type": t}))
    ),
    st.builds(m.Unknown, st.sampled_from(["brand_new", "x_y"])),
)


@settings(max_examples=300, deadline=None)
@given(server_events)
def test_encode_server_round_trip(event: m.ServerEvent) -> None:
    assert m.decode_server(m.encode_server(event)) == event


def test_encode_server_refuses_malformed() -> None:
    with pytest.raises(ValueError, match="no wire form"):
        m.encode_server(m.Malformed("json", "x"))


# -- client encoders: exact shapes


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4000))
def test_user_audio_chunk_base64_round_trip(pcm: bytes) -> None:
    frame = m.user_audio_chunk(pcm)
    obj = json.loads(frame)
    assert list(obj) == ["user_audio_chunk"]
    assert base64.b64decode(obj["user_audio_chunk"], validate=True) == pcm
    assert m.decode_client(frame) == m.UserAudioChunk(pcm)


def test_initiation_default_shape() -> None:
    obj = json.loads(m.initiation())
    assert obj == {
        "type": "conversation_initiation_client_data",
        "custom_llm_extra_body": {},
        "conversation_config_override": {},
        "dynamic_variables": {},
        "source_info": {"source": "voicebox", "version": __version__},
    }


def test_initiation_full_shape() -> None:
    overrides = m.build_overrides("Hi!", "be brief", "en", "voice1", 300)
    frame = m.initiation(
        overrides=overrides,
        dynamic_variables={"room": "kitchen", "guest": False},
        custom_llm_extra_body={"temperature": 0.7},
        user_id="device-1",
    )
    obj = json.loads(frame)
    assert obj == {
        "type": "conversation_initiation_client_data",
        "custom_llm_extra_body": {"temperature": 0.7},
        "conversation_config_override": {
            "agent": {"prompt": {"prompt": "be brief"}, "first_message": "Hi!", "language": "en"},
            "tts": {"voice_id": "voice1"},
            "conversation": {"max_duration_seconds": 300},
        },
        "dynamic_variables": {"room": "kitchen", "guest": False},
        "source_info": {"source": "voicebox", "version": __version__},
        "user_id": "device-1",
    }
    decoded = m.decode_client(frame)
    assert decoded == m.Initiation(
        overrides,
        {"room": "kitchen", "guest": False},
        {"temperature": 0.7},
        "device-1",
        {"source": "voicebox", "version": __version__},
    )


def test_build_overrides_only_set_keys() -> None:
    assert m.build_overrides(None, None, None, None, None) == {}
    assert m.build_overrides(None, "", "", "", 0) == {}
    assert m.build_overrides("", None, None, None, None) == {"agent": {"first_message": ""}}
    assert m.build_overrides(None, None, "de", None, None) == {"agent": {"language": "de"}}
    assert m.build_overrides(None, None, None, "v", None) == {"tts": {"voice_id": "v"}}
    assert m.build_overrides(None, None, None, None, 60) == {
        "conversation": {"max_duration_seconds": 60}
    }


def test_empty_first_message_is_sent_as_empty_string() -> None:
    frame = m.initiation(overrides=m.build_overrides("", None, None, None, None))
    assert json.loads(frame)["conversation_config_override"] == {"agent": {"first_message": ""}}


def test_other_client_frames_exact_shapes() -> None:
    assert json.loads(m.pong(12345)) == {"type": "pong", "event_id": 12345}
    assert json.loads(m.client_tool_result("tc_1", "ok", False)) == {
        "type": "client_tool_result",
        "tool_call_id": "tc_1",
        "result": "ok",
        "is_error": False,
    }
    assert json.loads(m.contextual_update("timer done")) == {
        "type": "contextual_update",
        "text": "timer done",
    }
    assert json.loads(m.contextual_update("t", context_id="timer")) == {
        "type": "contextual_update",
        "text": "t",
        "context_id": "timer",
    }
    assert json.loads(m.user_message("lights on")) == {"type": "user_message", "text": "lights on"}
    assert json.loads(m.user_activity()) == {"type": "user_activity"}
    assert json.loads(m.feedback("like", 42)) == {
        "type": "feedback",
        "score": "like",
        "event_id": 42,
    }
    assert json.loads(m.feedback(None, 3)) == {"type": "feedback", "score": None, "event_id": 3}


def test_client_frames_decode_on_the_server_side() -> None:
    assert m.decode_client(m.pong(5)) == m.Pong(5)
    assert m.decode_client(m.client_tool_result("c", "r", True)) == m.ClientToolResult(
        "c", "r", True
    )
    assert m.decode_client(m.contextual_update("t", "id")) == m.ContextualUpdate("t", "id")
    assert m.decode_client(m.user_message("hey")) == m.UserMessage("hey")
    assert m.decode_client(m.user_activity()) == m.UserActivity()
    assert m.decode_client(m.feedback("dislike", 9)) == m.Feedback("dislike", 9)
    assert m.decode_client('{"type": "feedback", "score": "meh", "event_id": 1}') == m.Malformed(
        "bad_type", "feedback: feedback.score: expected like, dislike or null"
    )
    assert m.decode_client('{"user_audio_chunk": "@@"}').kind == "base64"  # type: ignore[union-attr]
    assert m.decode_client('{"type": "what"}') == m.Unknown("what")


def test_unicode_text_survives() -> None:
    text = 'Grüße, 你好 \u2028 "quoted"'
    assert m.decode_client(m.user_message(text)) == m.UserMessage(text)
    assert m.decode_server(m.encode_server(m.AgentResponse(text, 1))) == m.AgentResponse(text, 1)
