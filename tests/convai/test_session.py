"""The sans-I/O session: events in, actions out, no sockets and no clock."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voicebox.audio.formats import AudioFormat, ulaw_decode
from voicebox.convai import messages as m
from voicebox.convai.session import (
    REPLY_GAP_S,
    Close,
    EndReply,
    Interrupt,
    LogEvent,
    Play,
    Ready,
    RunTool,
    Send,
    Session,
    SessionSettings,
    SetInputFormat,
    SetOutputFormat,
    context_text,
)


def _ready(
    settings: SessionSettings | None = None, out: str = "pcm_16000", inp: str = "pcm_16000"
) -> Session:
    s = Session(settings or SessionSettings(), now=0.0)
    s.open(0.0)
    s.receive(m.Metadata("conv_1", out, inp), 0.1)
    return s


def _sent(actions: list[object]) -> list[dict[str, object]]:
    return [json.loads(a.frame) for a in actions if isinstance(a, Send)]


def test_initiation_is_the_first_frame_with_overrides_and_variables() -> None:
    settings = SessionSettings(
        overrides=m.build_overrides("", "be brief", "en", None, 300),
        dynamic_variables={"room": "kitchen"},
        custom_llm_extra_body={"temperature": 0.2},
        user_id="dev-1",
    )
    s = Session(settings, now=0.0)
    first = s.open(0.0)
    assert len(first) == 1
    frame = json.loads(first[0].frame)  # type: ignore[union-attr]
    assert frame["type"] == "conversation_initiation_client_data"
    assert frame["conversation_config_override"]["agent"]["first_message"] == ""
    assert frame["dynamic_variables"] == {"room": "kitchen"}
    assert frame["custom_llm_extra_body"] == {"temperature": 0.2}
    assert frame["user_id"] == "dev-1"
    # No audio goes out before the metadata.
    assert s.mic(np.ones(320, np.int16), 16000, True, 0.05) == []


def test_metadata_negotiates_formats_and_sends_context() -> None:
    s = Session(SessionSettings(context="user: hi"), now=0.0)
    s.open(0.0)
    actions = s.receive(m.Metadata("conv_9", "ulaw_8000", "pcm_22050"), 0.2)
    assert SetOutputFormat(AudioFormat("ulaw", 8000)) in actions
    assert SetInputFormat(AudioFormat("pcm", 22050)) in actions
    assert Ready("conv_9") in actions
    assert _sent(actions) == [{"type": "contextual_update", "text": "user: hi"}]
    assert s.ready and s.conversation_id == "conv_9"
    # A bad format is logged, never fatal; pcm_16000 is used.
    s2 = Session(SessionSettings(), now=0.0)
    acts = s2.receive(m.Metadata("c", "mp3_44100", "pcm_16000"), 0.0)
    assert any(isinstance(a, LogEvent) and a.name == "session.format_unsupported" for a in acts)
    assert s2.output_format == AudioFormat("pcm", 16000)


def test_mic_audio_is_encoded_in_the_session_input_format() -> None:
    s = _ready(inp="ulaw_8000")
    chunk = (np.sin(np.arange(320) / 5) * 8000).astype(np.int16)  # 20 ms at 16 kHz
    total = 0
    for i in range(50):  # the streaming resampler holds back its filter delay (~0.1 s)
        for send in s.mic(chunk, 16000, True, 1.0 + i / 50):
            assert isinstance(send, Send)
            raw = m.decode_client(send.frame)
            assert isinstance(raw, m.UserAudioChunk)
            total += len(ulaw_decode(raw.audio))
    assert 6900 <= total <= 8000  # ~1 s at 8 kHz, one byte per sample
    # Gated mic: silence of the same duration, in the session's format, 100 ms per frame.
    assert [s.mic(chunk, 16000, False, 1.1) for _ in range(4)] == [[], [], [], []]
    [send] = s.mic(chunk, 16000, False, 1.1)
    raw = m.decode_client(send.frame)
    assert isinstance(raw, m.UserAudioChunk)
    assert len(raw.audio) == 800 and set(ulaw_decode(raw.audio).tolist()) == {0}


def test_silence_still_owed_when_the_mic_opens_goes_first_in_the_same_frame() -> None:
    s = _ready()
    chunk = np.arange(1, 321, dtype=np.int16)
    assert s.mic(chunk, 16000, False, 1.0) == [] and s.mic(chunk, 16000, False, 1.02) == []
    [send] = s.mic(chunk, 16000, True, 1.04)
    raw = m.decode_client(send.frame)
    assert isinstance(raw, m.UserAudioChunk)
    assert raw.audio == bytes(2 * 640) + chunk.astype("<i2").tobytes()
    [send] = s.mic(chunk, 16000, True, 1.06)  # nothing owed any more
    raw = m.decode_client(send.frame)
    assert isinstance(raw, m.UserAudioChunk) and raw.audio == chunk.astype("<i2").tobytes()


def test_ping_gets_its_pong_first() -> None:
    s = _ready()
    actions = s.receive(m.Ping(42, 50), 1.0)
    assert isinstance(actions[0], Send)
    assert json.loads(actions[0].frame) == {"type": "pong", "event_id": 42}
    assert s.last_ping_ms == 50


def test_interruption_flushes_and_drops_stale_audio() -> None:
    s = _ready()
    assert s.receive(m.Audio(5, b"\x01\x00" * 10, None), 1.0) == [Play(b"\x01\x00" * 10)]
    assert s.speaking()
    actions = s.receive(m.Interruption(6), 1.1)
    assert actions[0] == Interrupt()
    for eid in (5, 6):  # in flight when the interruption came: never played
        assert s.receive(m.Audio(eid, b"\x02\x00", None), 1.2) == []
    assert s.stale_audio == 2
    assert s.receive(m.Audio(7, b"\x03\x00", None), 1.3) == [Play(b"\x03\x00")]


def test_local_barge_in_drops_the_rest_of_the_reply() -> None:
    s = _ready()
    s.receive(m.Audio(3, b"\x01\x00", None), 1.0)
    actions = s.barge_in(1.1)
    assert actions[0] == Interrupt()
    assert _sent(actions) == [{"type": "user_activity"}]
    assert s.receive(m.Audio(3, b"\x01\x00", None), 1.2) == []
    s.receive(m.AgentResponse("next", 4), 1.25)  # the agent's next turn
    assert s.receive(m.Audio(4, b"\x01\x00", None), 1.3) == [Play(b"\x01\x00")]


def test_local_barge_in_drops_the_turn_until_the_next_one_whatever_its_ids() -> None:
    # A service may tag every chunk of a reply with a new event_id (the simulator does): the
    # rest of the cut turn is stale until a sign of the next turn.
    s = _ready()
    s.receive(m.Audio(3, b"\x01\x00", None), 1.0)
    s.barge_in(1.1)
    assert s.receive(m.Audio(4, b"\x01\x00", None), 1.2) == []  # same turn, a new id
    s.receive(m.AgentResponse("next", 5), 1.25)
    assert s.receive(m.Audio(5, b"\x02\x00", None), 1.3) == [Play(b"\x02\x00")]
    s.barge_in(1.4)
    assert s.receive(m.Audio(6, b"\x01\x00", None), 1.5) == []
    s.receive(m.UserTranscript("hi", 7), 1.6)
    assert s.receive(m.Audio(8, b"\x03\x00", None), 1.7) == [Play(b"\x03\x00")]
    s.barge_in(1.8)
    assert s.receive(m.Audio(9, b"\x01\x00", None), 1.9) == []
    gap = 1.9 + REPLY_GAP_S
    assert s.receive(m.Audio(10, b"\x04\x00", None), gap) == [Play(b"\x04\x00")]
    assert s.stale_audio == 3


def test_tools_run_once_and_results_go_back() -> None:
    s = _ready()
    actions = s.receive(m.ClientToolCall("get_time", "t1", {"tz": "UTC"}, 3), 1.0)
    assert RunTool("get_time", "t1", {"tz": "UTC"}) in actions
    assert s.pending_tools == {"t1": "get_time"}
    res = s.tool_result("t1", "noon", False)
    assert _sent(res) == [
        {"type": "client_tool_result", "tool_call_id": "t1", "result": "noon", "is_error": False}
    ]
    assert s.tool_result("t1", "again", False) == []  # answered once
    s.receive(m.ClientToolCall("nope", "t2", {}, 4), 1.1)
    res = s.tool_result("t2", "unknown tool 'nope'", True)
    assert _sent(res)[0]["is_error"] is True
    # After the close, late results are dropped.
    s.receive(m.ClientToolCall("slow", "t3", {}, 5), 1.2)
    s.closed(1000, "", 2.0)
    assert s.tool_result("t3", "late", False) == []


def test_malformed_and_unknown_are_counted_logged_once_never_fatal() -> None:
    s = _ready()
    logs = []
    for frame in (
        "{bad json",
        b"\x00\x01",
        "[1]",
        '{"no": "type"}',
        "{bad again",
        '{"type": "brand_new_event"}',
        '{"type": "brand_new_event"}',
    ):
        logs += [a for a in s.receive(m.decode_server(frame), 1.0) if isinstance(a, LogEvent)]
    assert s.malformed == 5 and s.unknown == 2
    kinds = [a.fields["kind"] for a in logs if a.name == "frame.malformed"]
    assert sorted(kinds) == ["binary", "json", "missing_type", "not_object"]
    assert [a.name for a in logs].count("frame.unknown") == 1
    assert s.ready
    assert s.receive(m.Ping(1, None), 1.1)[0] == Send(m.pong(1))


def test_errors_end_call_and_transcript_are_recorded() -> None:
    s = _ready()
    s.receive(m.UserTranscript("what time is it", 1), 1.0)
    assert s.waiting_reply and s.expecting_frames()
    s.receive(m.AgentResponse("It is noon and sunny", 2), 1.5)
    s.receive(m.AgentResponseCorrection("It is noon and sunny", "It is noon", 2), 1.6)
    assert list(s.transcript) == [("user", "what time is it"), ("agent", "It is noon")]
    assert s.turns == 2
    acts = s.receive(m.AgentToolResponse("end_call", "c1", "system", False, True, 3), 2.0)
    assert s.end_call and EndReply() in acts
    s.receive(m.ErrorEvent(1000, "max_duration_exceeded", "Max duration", None), 2.1)
    s.closed(1000, "", 3.0)
    fields = s.end_fields()
    assert fields["error_type"] == "max_duration_exceeded" and fields["close_code"] == 1000
    assert s.lifetime_s() == 3.0 - 0.1
    text = context_text(s.transcript, 8)
    assert "user: what time is it" in text and "agent: It is noon" in text
    assert context_text(s.transcript, 0) == ""


def test_agent_response_complete_ends_the_reply() -> None:
    s = _ready()
    s.receive(m.Audio(1, b"\x00\x00", None), 1.0)
    assert s.receive(m.AgentResponseComplete(), 1.1) == [EndReply()]
    assert not s.speaking()


def test_a_gap_in_agent_audio_ends_the_reply_without_agent_response_complete() -> None:
    # Not every agent lists agent_response_complete in its client_events: without this the
    # playback would sit inside a "reply" with an empty ring, counting underruns.
    s = _ready()
    s.receive(m.Audio(1, b"\x00\x00", None), 1.0)
    assert EndReply() not in s.tick(1.0 + REPLY_GAP_S / 2, playing=True)
    assert s.speaking()
    s.receive(m.Audio(2, b"\x00\x00", None), 1.0 + REPLY_GAP_S / 2)
    assert EndReply() not in s.tick(1.0 + REPLY_GAP_S, playing=True)  # audio still arriving
    assert s.tick(1.0 + 2 * REPLY_GAP_S, playing=True) == [EndReply()]
    assert not s.speaking()
    assert EndReply() not in s.tick(1.0 + 3 * REPLY_GAP_S, playing=True)  # once


def test_idle_close_in_push_to_talk() -> None:
    s = _ready(SessionSettings(idle_close_s=5.0))
    assert s.tick(3.0, playing=False) == []
    s.mic(np.ones(320, np.int16), 16000, True, 4.0)  # speech resets the timer
    assert s.tick(8.5, playing=False) == []
    assert s.tick(8.6, playing=True) == []  # agent audio playing counts as activity
    actions = s.tick(13.7, playing=False)
    assert actions[0] == Close(1000, "idle")
    assert s.local_close
    assert s.tick(20.0, playing=False) == []  # once


def test_always_on_never_idles_and_silence_is_not_speech() -> None:
    s = _ready(SessionSettings(idle_close_s=None))
    assert s.tick(10_000.0, playing=False) == []
    s2 = _ready(SessionSettings(idle_close_s=5.0))
    s2.mic(np.zeros(320, np.int16), 16000, False, 4.0)
    assert s2.tick(5.2, playing=False)[0] == Close(1000, "idle")


def test_metadata_timeout_closes_with_a_failure() -> None:
    s = Session(SessionSettings(metadata_timeout_s=2.0), now=0.0)
    s.open(0.0)
    assert s.tick(1.0, playing=False) == []
    assert s.tick(2.5, playing=False)[0] == Close(1000, "no conversation metadata")
    assert s.failure == "metadata_timeout"
    s.closed(1000, "", 2.6)
    assert s.lifetime_s() is None


def test_pcm_mic_frame_is_the_same_bytes_whatever_the_array_layout() -> None:
    s = _ready()
    pcm = (np.sin(np.arange(640) / 3) * 12000).astype(np.int16)
    for chunk in (pcm, pcm[::2], pcm.reshape(-1, 1), pcm.astype(">i2")):
        frame = s.mic_frame(chunk, 16000, True, 1.0)
        assert frame == m.user_audio_chunk(chunk.astype("<i2").tobytes()).encode()
        [send] = s.mic(chunk, 16000, True, 1.0)
        assert isinstance(send, Send) and send.frame.encode() == frame


@pytest.mark.parametrize("bad", ["pcm_0000", "pcm_00016000", "pcm_12345", "ulaw_16000", "pcm_"])
def test_only_the_protocols_formats_parse(bad: str) -> None:
    """A rate like 0 passed the old pattern and raised later, building a resampler in the
    receive loop; the metadata's format is now refused up front (and pcm_16000 used)."""
    with pytest.raises(ValueError, match="unsupported audio format"):
        AudioFormat.parse(bad)
    s = Session(SessionSettings(), now=0.0)
    acts = s.receive(m.Metadata("c", bad, bad), 0.0)
    assert (
        sum(isinstance(a, LogEvent) and a.name == "session.format_unsupported" for a in acts) == 2
    )
    assert s.output_format == s.input_format == AudioFormat("pcm", 16000)


def test_every_protocol_format_parses() -> None:
    names = ["pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000"]
    for name in [*names, "ulaw_8000"]:
        assert AudioFormat.parse(name).name == name
