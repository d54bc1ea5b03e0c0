"""The simulator against a raw websockets client: protocol, turns, barge-in, tools, ends, faults."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.simulator.client import convai, utterance
from voicebox.convai import messages as m
from voicebox.simulator.faults import QUOTA_MESSAGE
from voicebox.simulator.server import SimConfig, Simulator

FAST = SimConfig(first_message="", reply_delay_s=0.0, seconds_per_char=0.02, lead_s=0.3)


def sim_with(**changes: Any) -> Simulator:
    return Simulator(dataclasses.replace(FAST, **changes))


@pytest.mark.asyncio
async def test_handshake_metadata_greeting_and_initiation_record() -> None:
    async with sim_with(output_format="ulaw_8000", first_message="Hi there, welcome.") as sim:
        init = m.initiation(dynamic_variables={"room": "kitchen"}, user_id="dev-1")
        async with convai(sim.ws_url, initiation=init) as client:
            meta = await client.wait_event(m.Metadata)
            assert meta == m.Metadata("conv_sim_1", "ulaw_8000", "pcm_16000")
            await client.wait_event(m.AgentResponseComplete)
            kinds = [type(e) for e in client.events if not isinstance(e, m.Ping)]
            assert kinds[0] is m.Metadata
            assert kinds[1] is m.AgentResponse
            assert kinds[-1] is m.AgentResponseComplete
            response = client.of(m.AgentResponse)[0]
            audio = client.of(m.Audio)
            assert response.text == "Hi there, welcome."
            assert response.event_id == audio[0].event_id
            ids = [a.event_id for a in audio]
            assert ids == sorted(set(ids)) and ids[0] >= 1
            assert all(len(a.audio) == 800 for a in audio[:-1])  # 100 ms of μ-law at 8 kHz
            assert sum(len(a.audio) for a in audio) >= 8000 * 0.4
        rec = sim.connection(1)
        assert rec.initiation is not None
        assert rec.initiation.dynamic_variables == {"room": "kitchen"}
        assert rec.initiation.user_id == "dev-1"
        assert rec.initiation.source_info["source"] == "voicebox"
        await sim.wait_for(lambda: rec.closed)
        assert (rec.close_code, rec.closed_by) == (1000, "client")


@pytest.mark.asyncio
async def test_ping_pong_latency_recorded() -> None:
    async with sim_with(ping_interval_s=0.05) as sim, convai(sim.ws_url) as client:
        await client.wait_event(m.Ping, count=3)
        rec = sim.connection()
        await sim.wait_for(lambda: len(rec.pong_latencies_s) >= 3)
        assert rec.pongs[:3] == [1, 2, 3]
        assert all(latency >= 0 for latency in rec.pong_latencies_s)
        later = await client.wait_event(m.Ping, count=4)
        assert later.ping_ms is not None  # the server's RTT estimate from earlier pongs


@pytest.mark.asyncio
async def test_user_turn_detected_and_answered() -> None:
    async with sim_with() as sim, convai(sim.ws_url) as client:
        await client.wait_event(m.Metadata)
        await client.send_audio(utterance(1.0, 1.0))
        final = await client.wait_event(m.UserTranscript)
        assert final.text.startswith("user turn 1 (")
        reply = await client.wait_event(m.AgentResponse)
        assert reply.text.startswith("You spoke for ")
        assert "turn 1" in reply.text
        await client.wait_event(m.AgentResponseComplete)
        order = [type(e) for e in client.events if not isinstance(e, m.Ping | m.Audio)]
        assert order.index(m.TentativeUserTranscript) < order.index(m.UserTranscript)
        assert order.index(m.UserTranscript) < order.index(m.AgentResponse)
        rec = sim.connection()
        assert len(rec.turns) == 1 and 0.7 < rec.turns[0] < 1.1
        assert rec.user_audio_s == pytest.approx(2.0, abs=0.03)
        assert rec.user_audio_chunks == 100


@pytest.mark.asyncio
async def test_barge_in_interrupts_and_corrects_the_reply() -> None:
    long_text = "This is a long answer that keeps going for quite a while. " * 3
    async with sim_with(seconds_per_char=0.05, lead_s=0.2) as sim, convai(sim.ws_url) as client:
        await client.wait_event(m.Metadata)
        await sim.speak(long_text)
        await client.wait_event(m.Audio, count=2)
        await client.send_audio(utterance(0.6, 1.0))
        interruption = await client.wait_event(m.Interruption)
        correction = await client.wait_event(m.AgentResponseCorrection)
        assert correction.event_id == interruption.event_id
        assert correction.original == long_text
        assert long_text.startswith(correction.corrected)
        assert len(correction.corrected) < len(long_text)
        at = client.events.index(interruption)
        before = [e.event_id for e in client.events[:at] if isinstance(e, m.Audio)]
        assert max(before) == interruption.event_id
        reply = await client.wait_event(m.AgentResponse, count=2)  # the answer to the barge-in
        assert reply.text.startswith("You spoke for ")
        after_ids = [e.event_id for e in client.events[at:] if isinstance(e, m.Audio)]
        assert after_ids and min(after_ids) > interruption.event_id
        assert sim.connection().interruptions == [interruption.event_id]


@pytest.mark.asyncio
async def test_client_tool_call_round_trip() -> None:
    async with sim_with(tool_call_turns=frozenset({1})) as sim, convai(sim.ws_url) as client:
        await client.wait_event(m.Metadata)
        await client.send_audio(utterance(0.5, 1.0))
        call = await client.wait_event(m.ClientToolCall)
        assert call.tool_name == "get_time"
        assert call.parameters == {"turn": 1}
        assert not client.of(m.AgentResponse)  # the agent waits for the result
        await client.ws.send(m.client_tool_result(call.tool_call_id, "12:34", False))
        reply = await client.wait_event(m.AgentResponse)
        assert reply.text == "The get_time tool said: 12:34"
        assert sim.connection().tool_results == [
            m.ClientToolResult(call.tool_call_id, "12:34", False)
        ]


@pytest.mark.asyncio
async def test_end_call_after_turns_closes_1000() -> None:
    async with sim_with(end_call_after_turns=1) as sim:
        async with convai(sim.ws_url) as client:
            await client.wait_event(m.Metadata)
            await client.send_audio(utterance(0.5, 1.0))
            assert await client.wait_closed() == 1000
            tool = client.of(m.AgentToolResponse)
            assert [(t.tool_name, t.tool_type, t.is_called) for t in tool] == [
                ("end_call", "system", True)
            ]
            responses = [r.text for r in client.of(m.AgentResponse)]
            assert responses[-1] == "Goodbye."
            assert client.events.index(tool[0]) < client.events.index(
                client.of(m.AgentResponse)[-1]
            )
        await sim.wait_for(lambda: sim.connection().closed)
        assert sim.connection().closed_by == "server"


@pytest.mark.asyncio
async def test_duration_cap_from_override_sends_error_then_1000() -> None:
    overrides = m.build_overrides("", None, None, None, 1)
    async with sim_with(first_message="I would greet you") as sim:
        async with convai(sim.ws_url, initiation=m.initiation(overrides=overrides)) as client:
            assert await client.wait_closed() == 1000
            errors = client.of(m.ErrorEvent)
            assert [(e.code, e.error_type) for e in errors] == [(1000, "max_duration_exceeded")]
            assert not client.of(m.AgentResponse)  # first_message "" disabled the greeting
        assert sim.connection().max_duration_s == 1.0


@pytest.mark.asyncio
async def test_client_messages_are_recorded_and_user_message_answered() -> None:
    async with sim_with() as sim, convai(sim.ws_url) as client:
        await client.wait_event(m.Metadata)
        await client.ws.send(m.contextual_update("timer done", "timer"))
        await client.ws.send(m.user_activity())
        await client.ws.send(m.feedback("like", 1))
        await client.ws.send(m.user_message("lights on"))
        reply = await client.wait_event(m.AgentResponse)
        assert reply.text == "You wrote: lights on"
        rec = sim.connection()
        assert rec.contextual_updates == [m.ContextualUpdate("timer done", "timer")]
        assert rec.user_activity == 1
        assert rec.feedback == [m.Feedback("like", 1)]
        assert rec.user_messages == ["lights on"]


@pytest.mark.asyncio
async def test_bad_first_frame_and_unknown_agent_close_1008() -> None:
    async with sim_with(agent_ids=frozenset({"agent_ok"})) as sim:
        async with convai(sim.ws_url, initiation=m.user_activity(), agent_id="agent_ok") as c:
            assert await c.wait_closed() == 1008
            assert not c.of(m.Metadata)
        async with convai(sim.ws_url, agent_id="agent_nope") as c:
            assert await c.wait_closed() == 1008
            assert c.close_reason == "Agent not found"


# -- faults, observed from the client side


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("spec", "code", "reason"),
    [
        ("1:close:1012", 1012, "service restart"),
        ("1:close:1011:3c", 1011, "internal error"),
        ("1:close:3000:0.1:stale branch", 3000, "stale branch"),
        ("1:close:1008", 1008, "policy violation"),
    ],
)
async def test_fault_close_codes(spec: str, code: int, reason: str) -> None:
    async with sim_with(faults=(), ping_interval_s=60) as sim:
        sim.set_fault(spec)
        async with convai(sim.ws_url) as client:
            await client.wait_event(m.Metadata)
            if ":3c" in spec:
                await client.send_audio(utterance(0.1, 0.0))
            assert await client.wait_closed() == code
            assert client.close_reason == reason
        rec = sim.connection()
        await sim.wait_for(lambda: rec.closed)
        if ":3c" in spec:
            assert rec.user_audio_chunks >= 3
        assert rec.faults_applied and (rec.close_code, rec.closed_by) == (code, "server")


@pytest.mark.asyncio
async def test_fault_only_on_the_chosen_connection() -> None:
    async with sim_with() as sim:
        sim.set_fault("2:close:1013")
        async with convai(sim.ws_url) as first:
            await first.wait_event(m.Metadata)
        async with convai(sim.ws_url) as second:
            assert await second.wait_closed() == 1013
        async with convai(sim.ws_url) as third:
            await third.wait_event(m.Metadata)
            await third.ws.send(m.user_message("still fine?"))
            await third.wait_event(m.AgentResponse)
        assert [c.faults_applied != [] for c in sim.connections] == [False, True, False]


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "retry_after"), [(401, None), (429, "2"), (503, "1")])
async def test_fault_http_status_at_handshake(status: int, retry_after: str | None) -> None:
    spec = f"all:http:{status}" + (":2" if status == 429 else "")
    async with sim_with(faults=()) as sim:
        sim.set_fault(spec)
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{sim.ws_url}/v1/convai/conversation?agent_id=a"):
                pass
        response = info.value.response
        assert response.status_code == status
        assert response.headers.get("Retry-After") == retry_after
        assert "detail" in json.loads(response.body)
        assert sim.connection().http_status == status


@pytest.mark.asyncio
async def test_fault_drop_gives_1006() -> None:
    async with sim_with(faults=()) as sim:
        sim.set_fault("1:drop:2c")
        async with convai(sim.ws_url) as client:
            await client.wait_event(m.Metadata)
            await client.send_audio(utterance(0.1, 0.0))
            assert await client.wait_closed() == 1006
            assert client.closed is not None and client.closed.rcvd is None


@pytest.mark.asyncio
async def test_fault_silent_is_half_open_until_client_keepalive_gives_up() -> None:
    async with sim_with(ping_interval_s=0.05) as sim:
        sim.set_fault("1:silent:0.2")
        url = f"{sim.ws_url}/v1/convai/conversation?agent_id=a"
        async with convai(url, ping_interval=0.2, ping_timeout=0.3, close_timeout=0.3) as client:
            await client.wait_event(m.Metadata)
            await sim.wait_for(lambda: sim.connection().faults_applied)
            pings_at_fault = len(client.of(m.Ping))
            assert await client.wait_closed() == 1006  # no close frame ever came back
            assert client.closed is not None and client.closed.sent is not None
            assert client.closed.sent.code == 1011  # our keepalive ping timed out
            assert len(client.of(m.Ping)) <= pings_at_fault + 1
        assert not sim.connection().closed  # the server side still holds the socket


@pytest.mark.asyncio
async def test_fault_malformed_burst_then_carries_on() -> None:
    async with sim_with() as sim:
        sim.set_fault("1:malformed")
        async with convai(sim.ws_url) as client:
            await client.wait_event(m.Metadata)
            await client.wait_for(lambda: len(client.of(m.Unknown)) >= 1)
            kinds = {e.kind for e in client.of(m.Malformed)}
            assert kinds == {"binary", "json", "not_object", "missing_type", "missing_field"} | {
                "base64",
                "bad_type",
            }
            await client.ws.send(m.user_message("are you ok"))
            reply = await client.wait_event(m.AgentResponse)
            assert reply.text == "You wrote: are you ok"


@pytest.mark.asyncio
async def test_fault_quota_flat_error_then_1002() -> None:
    async with sim_with() as sim:
        sim.set_fault("1:quota")
        async with convai(sim.ws_url) as client:
            assert await client.wait_closed() == 1002
            assert client.close_reason == QUOTA_MESSAGE
            assert client.of(m.ErrorEvent) == [m.ErrorEvent(None, None, QUOTA_MESSAGE, None)]


@pytest.mark.asyncio
async def test_fault_delayed_metadata() -> None:
    async with sim_with(ping_interval_s=0.02) as sim:
        sim.set_fault("1:delay:0.3")
        async with convai(sim.ws_url) as client:
            await client.wait_event(m.Metadata)
            assert isinstance(client.events[0], m.Metadata)  # nothing (not even pings) before it
        assert sim.connection().faults_applied == ["delay 0.3s"]


@pytest.mark.asyncio
async def test_inject_now_and_unknown_paths() -> None:
    async with sim_with() as sim:
        async with convai(sim.ws_url) as client:
            await client.wait_event(m.Metadata)
            await sim.inject("1:close:1013")
            assert await client.wait_closed() == 1013
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{sim.ws_url}/v1/nowhere"):
                pass
        assert info.value.response.status_code == 404


# -- signed URLs


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.asyncio
async def test_signed_url_requires_key_and_is_single_use() -> None:
    async with sim_with(api_key="sk_test_key", require_signature=True) as sim:
        endpoint = f"{sim.url}/v1/convai/conversation/get-signed-url?agent_id=agent_x"
        status, body = await asyncio.to_thread(_get, endpoint, {})
        assert status == 401 and body["detail"]["status"] == "invalid_api_key"
        status, body = await asyncio.to_thread(_get, endpoint, {"xi-api-key": "wrong"})
        assert status == 401
        status, body = await asyncio.to_thread(_get, endpoint, {"xi-api-key": "sk_test_key"})
        assert status == 200
        signed = body["signed_url"]
        assert signed.startswith(f"{sim.ws_url}/v1/convai/conversation?agent_id=agent_x&")
        assert "conversation_signature=" in signed
        async with convai(signed + "&source=test") as client:
            assert (await client.wait_event(m.Metadata)).conversation_id == "conv_sim_1"
        for url in (signed, signed.replace("signature=", "signature=x")):  # reused, forged
            with pytest.raises(InvalidStatus) as info:
                async with connect(url):
                    pass
            assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as info:  # private agent: plain URL refused
            async with connect(f"{sim.ws_url}/v1/convai/conversation?agent_id=agent_x"):
                pass
        assert info.value.response.status_code == 403


@pytest.mark.asyncio
async def test_signed_url_without_key_configured() -> None:
    async with sim_with() as sim:
        endpoint = f"{sim.url}/v1/convai/conversation/get-signed-url?agent_id=agent_y"
        status, body = await asyncio.to_thread(_get, endpoint, {})
        assert status == 200
        async with convai(body["signed_url"]) as client:
            await client.wait_event(m.Metadata)
        assert sim.signed_urls_issued == 1


@pytest.mark.asyncio
async def test_tts_path_is_routed_to_the_tts_endpoint() -> None:
    async with sim_with() as sim:
        url = f"{sim.ws_url}/v1/text-to-speech/voice_1/stream-input?output_format=nonsense"
        async with connect(url) as ws:
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass
            assert ws.close_code == 1008
            assert ws.close_reason != "tts not available"  # the TTS endpoint itself answered
        assert len(sim.tts_requests) == 1
        assert not sim.connections  # not counted as a convai connection
