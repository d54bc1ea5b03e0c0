"""The Supervisor against the local simulator on loopback: every class of end, and the session."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.convai.rig import rig
from voicebox import volume
from voicebox.convai import messages as m
from voicebox.convai.connection import conversation_url
from voicebox.convai.tools import ToolRegistry, builtin_tools
from voicebox.simulator.server import SimConfig
from voicebox.state import State

QUIET = {"first_message": "", "ping_interval_s": 0.3}  # no greeting: the session starts quiet


def test_conversation_url_is_derived_and_quoted() -> None:
    assert (
        conversation_url("https://api.elevenlabs.io", "a b&c=d")
        == "wss://api.elevenlabs.io/v1/convai/conversation?agent_id=a%20b%26c%3Dd"
    )
    assert conversation_url("http://127.0.0.1:8765/", "x") == (
        "ws://127.0.0.1:8765/v1/convai/conversation?agent_id=x"
    )


@pytest.mark.asyncio
async def test_1012_reconnects_with_backoff_and_audio_flows_again() -> None:
    sim = SimConfig(faults=(m_fault("1:close:1012:0.5"),), ping_interval_s=0.2, first_message="")
    async with rig(sim) as r:
        first = await r.sim.wait_connection(1)
        await r.sim.wait_for(lambda: first.closed)
        assert first.close_code == 1012 and first.closed_by == "server"
        assert first.pings_sent >= 1 and first.pongs  # pongs answered on the first session
        second = await r.sim.wait_connection(2)
        await r.sim.wait_for(lambda: second.user_audio_chunks >= 10)
        await r.wait_state(State.LISTENING)
        closed = r.logs.events("session.closed")
        assert closed[0]["CLOSE_CODE"] == 1012 and closed[0]["CLASS"] == "transient"
        assert closed[0]["CONVERSATION_ID"] == "conv_sim_1"
        scheduled = r.logs.events("reconnect.scheduled")
        assert scheduled[0]["ATTEMPT"] == 1 and 0 <= scheduled[0]["DELAY_S"] <= 0.05
        assert State.RECONNECTING in r.state_names()
        snap = r.sup.snapshot()
        assert snap["conversation_id"] == "conv_sim_2"
        assert snap["counters"]["reconnects"] == 1
        assert snap["last_close"]["code"] == 1012
        assert snap["pong_latency"]["n"] >= 2  # every ping was answered and timed
        assert snap["pong_ms_p50"] is not None  # the service's RTT estimate, for tuning


def m_fault(spec: str) -> Any:
    from voicebox.simulator.faults import parse_fault

    return parse_fault(spec)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "cause", "key"),
    [
        ("all:close:1008", "rejected", None),
        ("all:http:401", "API key rejected", None),
        ("all:http:403", "API key rejected", None),
        ("all:quota", "quota exceeded", None),
        ("all:close:1011", "sessions in a row", None),  # the quick-failure breaker
    ],
)
async def test_config_failures_degrade_without_a_hot_loop(
    fault: str, cause: str, key: str | None
) -> None:
    sim = SimConfig(faults=(m_fault(fault),), **QUIET)  # type: ignore[arg-type]
    async with rig(sim, api_key=key, conversation__reconnect__degraded_s=1.5) as r:
        await r.wait_state(State.DEGRADED, timeout=10)
        entered = len(r.sim.connections)
        await asyncio.sleep(0.5)  # well inside degraded_s (1.5 s): no new attempt
        assert len(r.sim.connections) == entered
        await r.sim.wait_for(lambda: len(r.sim.connections) == entered + 1, timeout=5)
        errors = r.logs.events("session.degraded")
        assert len(errors) == 1 and cause in errors[0]["CAUSE"]
        assert r.sup.snapshot()["degraded"] is True
    # A hot loop would be hundreds of connections; the breaker allows quick_failures + retries.
    assert len(r.sim.connections) <= 5


@pytest.mark.asyncio
async def test_private_agent_fetches_a_signed_url_per_connection() -> None:
    sim = SimConfig(
        api_key="sk_test_123",
        require_signature=True,
        faults=(m_fault("1:close:1012:0.3"),),
        **QUIET,
    )  # type: ignore[arg-type]
    async with rig(sim, api_key="sk_test_123", agent__requires_auth=True) as r:
        await r.sim.wait_connection(2)
        await r.wait_state(State.LISTENING)
        assert r.sim.signed_urls_issued == 2
        assert all(c.http_status is None for c in r.sim.connections)
    text = " ".join(rec.getMessage() for rec in r.logs.records)
    assert "sk_test_123" not in text


@pytest.mark.asyncio
async def test_wrong_key_for_signed_url_is_a_config_error() -> None:
    sim = SimConfig(api_key="right", require_signature=True, **QUIET)  # type: ignore[arg-type]
    async with rig(sim, api_key="wrong", agent__requires_auth=True) as r:
        await r.wait_state(State.DEGRADED)
        [err] = r.logs.events("session.degraded")
        assert "401" in err["CAUSE"] and "API key" in err["CAUSE"]
        assert r.sim.connections == []


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["1:drop:0.3", "1:silent:0.3"])
async def test_drop_and_half_open_are_detected_and_reconnected(fault: str) -> None:
    # A greeting is streaming when the fault hits, so the link is expected to be busy.
    sim = SimConfig(faults=(m_fault(fault),), ping_interval_s=5.0, first_message="x" * 80)
    async with rig(sim) as r:
        second = await r.sim.wait_connection(2, timeout=10)
        await r.sim.wait_for(lambda: second.user_audio_chunks >= 5)
        [closed] = r.logs.events("session.closed")
        assert closed["CLASS"] == "transient" and closed["CLOSE_CODE"] == 1006
        if "silent" in fault:
            assert "half-open" in closed["REASON"]
            assert r.logs.events("link.half_open")


@pytest.mark.asyncio
async def test_duration_cap_restarts_at_once_with_the_context_and_no_greeting() -> None:
    sim = SimConfig(ping_interval_s=0.3, reply_delay_s=0.0, max_reply_s=0.5)
    async with rig(
        sim, agent__overrides__first_message="Hello!", agent__overrides__max_duration_s=3
    ) as r:
        first = await r.sim.wait_connection(1)
        assert first.max_duration_s == 3 and first.first_message == "Hello!"
        r.say(0.5)
        await r.sim.wait_for(lambda: first.closed, timeout=10)
        second = await r.sim.wait_connection(2)
        await r.sim.wait_for(lambda: second.contextual_updates, timeout=5)
        assert second.first_message == ""  # the override was configured, so no greeting
        text = second.contextual_updates[0].text
        assert "user: user turn 1" in text and "agent: You spoke for" in text
        [closed] = r.logs.events("session.closed")
        assert closed["CLASS"] == "duration_cap"
        [scheduled] = r.logs.events("reconnect.scheduled")
        assert scheduled["DELAY_S"] == 0
        assert r.sup.snapshot()["counters"]["duration_caps"] == 1


@pytest.mark.asyncio
async def test_duration_cap_restart_is_not_reported_as_trouble_after_an_earlier_drop() -> None:
    # A 1012 first (backoff attempt 1, conversation not yet stable), then the cap on the next
    # session: the cap restart is a planned continuation, so it is CONNECTING, not RECONNECTING
    # (which would light the trouble LED and speak "Reconnecting").
    sim = SimConfig(max_duration_s=1.5, faults=(m_fault("1:close:1012:0.3"),), **QUIET)  # type: ignore[arg-type]
    async with rig(sim, conversation__reconnect__initial_s=0.05) as r:
        third = await r.sim.wait_connection(3, timeout=15)
        await r.sim.wait_for(lambda: third.conversation_id != "", timeout=5)
        classes = [e["CLASS"] for e in r.logs.events("session.closed")]
        assert classes == ["transient", "duration_cap"]
        cap_at = max(i for i, (s, f) in enumerate(r.states) if s is State.RECONNECTING)
        after_cap = r.states[cap_at + 1 :]
        assert (State.CONNECTING, {"reason": "duration_cap"}) in after_cap
        assert State.RECONNECTING not in [s for s, _ in after_cap]


@pytest.mark.asyncio
async def test_a_session_lost_mid_reply_lets_the_received_audio_play_out() -> None:
    # The close comes while the greeting is still streaming: what arrived must be ended as a
    # reply (played out, no underrun, state leaves speaking), not left waiting for more.
    sim = SimConfig(
        first_message="x" * 120, faults=(m_fault("1:close:1012:0.4"),), ping_interval_s=5.0
    )
    async with rig(sim) as r:
        first = await r.sim.wait_connection(1)
        await r.sim.wait_for(lambda: first.closed, timeout=10)
        await r.sim.wait_connection(2)
        kinds = [kind for kind, _ in r.audio.events]
        assert "play" in kinds
        first_play = kinds.index("play")
        assert "end_reply" in kinds[first_play:]


@pytest.mark.asyncio
async def test_half_open_link_is_found_by_a_probe_even_when_no_reply_is_due() -> None:
    # Nobody speaks, so no reply is due: the link must still be probed when it goes quiet, or
    # only the keepalive (10 s + 10 s) would notice, while the user's words go nowhere.
    sim = SimConfig(faults=(m_fault("1:silent:0.5"),), **QUIET)  # type: ignore[arg-type]
    async with rig(sim, conversation__receive_timeout_s=0.5) as r:
        await r.sim.wait_connection(2, timeout=8)
        [closed] = r.logs.events("session.closed")
        assert closed["CLASS"] == "transient"
        assert r.logs.events("link.half_open")


@pytest.mark.asyncio
async def test_duration_cap_without_first_message_override_sends_none() -> None:
    async with rig(SimConfig(max_duration_s=0.6, **QUIET)) as r:  # type: ignore[arg-type]
        await r.sim.wait_connection(2)
        init = r.sim.connection(2).initiation
        assert init is not None and "agent" not in init.overrides


@pytest.mark.asyncio
async def test_end_call_plays_the_goodbye_then_idles() -> None:
    sim = SimConfig(end_call_after_turns=1, reply_delay_s=0.0, max_reply_s=0.5, **QUIET)  # type: ignore[arg-type]
    idle_snapshot: list[tuple[int, int, bool]] = []
    async with rig(sim, conversation__mode="push_to_talk", audio_speed=0.5) as r:

        def on_state(state: State, fields: dict[str, Any]) -> None:
            r.states.append((state, fields))
            r._changed.set()
            if state == State.IDLE:
                idle_snapshot.append((len(r.audio.played), len(r.audio.received), r.audio.playing))

        r.on_state = on_state  # type: ignore[method-assign]
        r.sup.press()
        await r.wait_state(State.LISTENING)
        r.say(0.4)
        await asyncio.sleep(0.5)
        r.sup.release()
        conn = r.sim.connection(1)
        await r.sim.wait_for(lambda: conn.closed, timeout=10)
        await r.wait_state(State.IDLE, timeout=10)
        assert conn.close_code == 1000 and conn.closed_by == "server"
        assert "Goodbye." in conn.agent_responses
        played, received, playing = idle_snapshot[-1]
        assert received > 0 and played == received and not playing
        assert ("drained", None) in r.audio.events
        [closed] = r.logs.events("session.closed")
        assert closed["CLASS"] == "normal"
        await asyncio.sleep(0.3)
        assert len(r.sim.connections) == 1  # idle: no new session until the next press


@pytest.mark.asyncio
async def test_push_to_talk_first_words_are_buffered_and_idle_closes() -> None:
    sim = SimConfig(faults=(m_fault("1:delay:0.8"),), reply_delay_s=0.0, max_reply_s=0.3, **QUIET)  # type: ignore[arg-type]
    async with rig(sim, conversation__mode="push_to_talk", conversation__idle_close_s=0.8) as r:
        assert r.sup.state == State.IDLE
        r.sup.press()
        r.say(0.6)  # spoken while the session is still connecting
        await asyncio.sleep(0.7)
        r.sup.release()
        conn = await r.sim.wait_connection(1)
        await r.sim.wait_for(lambda: conn.turns, timeout=5)
        assert conn.turns[0] >= 0.4  # the whole utterance reached the agent
        assert r.sup.snapshot()["counters"]["resume_dropped"] == 0
        await r.sim.wait_for(lambda: conn.closed, timeout=10)
        assert (
            conn.close_code == 1000 and conn.closed_by == "client" and conn.close_reason == "idle"
        )
        await r.wait_state(State.IDLE)
        await asyncio.sleep(0.3)
        assert len(r.sim.connections) == 1


@pytest.mark.asyncio
async def test_resume_buffer_drops_oldest_and_counts() -> None:
    sim = SimConfig(faults=(m_fault("2:delay:0.6"), m_fault("1:close:1012:0.3")), **QUIET)  # type: ignore[arg-type]
    async with rig(sim, conversation__resume_buffer_s=0.2) as r:
        r.say(2.0)
        second = await r.sim.wait_connection(2)
        await r.sim.wait_for(lambda: second.user_audio_chunks >= 10)
        dropped = r.sup.snapshot()["counters"]["resume_dropped"]
        assert dropped > 0  # ~0.6 s captured while reconnecting, 0.2 s kept


@pytest.mark.asyncio
async def test_interruption_flushes_and_stale_audio_never_plays() -> None:
    async with rig(SimConfig(**QUIET)) as r:  # type: ignore[arg-type]
        conn = await r.sim.wait_connection(1)
        await r.wait_state(State.LISTENING)
        await r.sim.speak("a long answer " * 20)
        await r.wait(lambda: r.audio.received)
        await r.sim.interrupt()
        await r.sim.wait_for(lambda: conn.interruptions)
        stale_id = conn.interruptions[0]
        for eid in (stale_id - 1, stale_id):
            await r.sim.send_raw(m.encode_server(m.Audio(eid, b"STALE!", None)))
        await r.sim.send_raw(m.encode_server(m.Audio(stale_id + 1000, b"FRESH!", None)))
        await r.wait(lambda: b"FRESH!" in r.audio.received)
        assert b"STALE!" not in r.audio.received
        kinds = [k for k, _ in r.audio.events]
        assert "interrupt" in kinds
        assert r.sup.snapshot()["counters"]["stale_audio"] == 2


@pytest.mark.asyncio
async def test_barge_in_on_press_interrupts_locally() -> None:
    async with rig(SimConfig(**QUIET), conversation__mode="push_to_talk") as r:  # type: ignore[arg-type]
        r.sup.press()
        await r.wait_state(State.LISTENING)
        r.sup.release()
        await r.sim.speak("words " * 40)
        await r.wait_state(State.SPEAKING)
        r.sup.press()
        assert r.audio.interrupts == 1 and not r.audio.playing
        conn = r.sim.connection(1)
        await r.sim.wait_for(lambda: conn.user_activity >= 1)
        assert r.sup.snapshot()["counters"]["barge_ins"] == 1


@pytest.mark.asyncio
async def test_tools_known_unknown_failing_and_slow_never_block_pongs() -> None:
    audio_tools = ToolRegistry()
    release = asyncio.Event()

    async def slow(p: dict[str, Any]) -> str:
        await release.wait()
        return "slow done"

    def broken(p: dict[str, Any]) -> str:
        raise ValueError("no lamp")

    async with rig(SimConfig(**QUIET), tools=audio_tools) as r:  # type: ignore[arg-type]
        for name, fn in builtin_tools(r.audio).__dict__["_tools"].items():
            audio_tools.register(name, fn)
        audio_tools.register("slow", slow)
        audio_tools.register("broken", broken)
        conn = await r.sim.wait_connection(1)
        await r.wait_state(State.LISTENING)
        res = await r.sim.tool_call("set_volume", {"level": 30})
        assert res is not None and not res.is_error and r.audio.volume == volume.gain(30)
        res = await r.sim.tool_call("no_such_tool")
        assert res is not None and res.is_error and "unknown tool" in res.result
        res = await r.sim.tool_call("broken")
        assert res is not None and res.is_error and "no lamp" in res.result
        pending = asyncio.create_task(r.sim.tool_call("slow"))
        await r.sim.wait_for(lambda: len(conn.tool_calls) == 4)
        assert not r.sup.quiet()  # a tool call is pending
        pongs = len(conn.pongs)
        await r.sim.ping()
        await r.sim.wait_for(lambda: len(conn.pongs) > pongs, timeout=5)
        assert not pending.done()  # the slow tool is still running; receiving was not blocked
        release.set()
        res = await pending
        assert res is not None and res.result == "slow done" and not res.is_error
        assert r.sup.snapshot()["counters"]["tool_calls"] == 4


@pytest.mark.asyncio
async def test_malformed_frames_are_counted_and_never_fatal() -> None:
    async with rig(SimConfig(**QUIET)) as r:  # type: ignore[arg-type]
        conn = await r.sim.wait_connection(1)
        await r.wait_state(State.LISTENING)
        await r.sim.inject("1:malformed")
        pongs = len(conn.pongs)
        await r.sim.ping()
        await r.sim.wait_for(lambda: len(conn.pongs) > pongs)
        snap = r.sup.snapshot()
        assert snap["counters"]["malformed"] == 7 and snap["counters"]["unknown"] == 1
        assert not conn.closed and len(r.sim.connections) == 1
        kinds = {e["KIND"] for e in r.logs.events("frame.malformed")}
        assert kinds == {
            "json",
            "binary",
            "not_object",
            "missing_type",
            "missing_field",
            "base64",
            "bad_type",
        }


@pytest.mark.asyncio
async def test_proactive_rollover_at_a_quiet_moment() -> None:
    sim = SimConfig(max_duration_s=30.0, reply_delay_s=0.0, max_reply_s=0.4, **QUIET)  # type: ignore[arg-type]
    async with rig(
        sim,
        conversation__rollover=True,
        conversation__max_duration_s=30,
        conversation__rollover_margin_s=29.0,
        agent__overrides__first_message="Hi there",
    ) as r:
        first = await r.sim.wait_connection(1)
        r.say(0.4)
        await r.sim.wait_for(lambda: first.closed, timeout=15)
        assert first.close_code == 1000 and first.closed_by == "client"
        assert first.close_reason == "rollover"
        second = r.sim.connection(2)
        assert second.first_message == ""
        assert second.contextual_updates and "user turn 1" in second.contextual_updates[0].text
        await r.sim.wait_for(lambda: second.user_audio_chunks >= 5)
        snap = r.sup.snapshot()
        assert snap["rollovers"] == 1 and snap["conversation_id"] == "conv_sim_2"
        assert snap["counters"]["duration_caps"] == 0
        assert not [e for e in r.logs.events("session.closed") if e["CLASS"] != "normal"]


@pytest.mark.asyncio
async def test_stop_closes_cleanly_and_is_idempotent() -> None:
    async with rig(SimConfig(**QUIET)) as r:  # type: ignore[arg-type]
        conn = await r.sim.wait_connection(1)
        await r.wait_state(State.LISTENING)
        await r.sup.stop()
        await r.sup.stop()
        await r.sim.wait_for(lambda: conn.closed)
        assert conn.close_code == 1000 and conn.closed_by == "client"
    assert r.sup.state == State.STOPPING
    json.dumps(r.sup.snapshot())  # the status socket serialises it


@pytest.mark.asyncio
async def test_http_429_honours_retry_after() -> None:
    async with rig(SimConfig(faults=(m_fault("1:http:429"),), **QUIET)) as r:  # type: ignore[arg-type]
        second = await r.sim.wait_connection(2, timeout=10)
        await r.sim.wait_for(lambda: second.user_audio_chunks > 0)
        assert r.sim.connection(1).http_status == 429
        [scheduled] = r.logs.events("reconnect.scheduled")
        assert scheduled["DELAY_S"] >= 1.0  # the simulator's Retry-After: 1
        [failed] = r.logs.events("connect.failed")
        assert failed["CLASS"] == "transient" and "429" in failed["REASON"]


@pytest.mark.asyncio
async def test_end_conversation_goes_idle_until_the_next_press() -> None:
    async with rig(SimConfig(**QUIET)) as r:  # type: ignore[arg-type]
        first = await r.sim.wait_connection(1)
        await r.wait_state(State.LISTENING)
        r.sup.end_conversation()
        await r.wait_state(State.IDLE)
        await r.sim.wait_for(lambda: first.closed)
        assert first.closed_by == "client" and first.close_reason == "end of conversation"
        await asyncio.sleep(0.3)
        assert len(r.sim.connections) == 1
        r.sup.press()
        await r.sim.wait_connection(2)
        await r.wait_state(State.LISTENING)


@pytest.mark.asyncio
async def test_update_config_and_runtime_knobs() -> None:
    from voicebox.config import with_changes

    async with rig(SimConfig(**QUIET), conversation__mode="push_to_talk") as r:  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert r.sup.state == State.IDLE and not r.sim.connections
        r.sup.set_receive_timeout(3.5)
        r.sup.set_resume_buffer_s(1.5)
        snap = r.sup.snapshot()
        assert snap["receive_timeout_s"] == 3.5 and snap["resume_buffer_s"] == 1.5
        cfg = with_changes(r.sup._cfg, **{"conversation.mode": "always_on"})
        r.sup.update_config(cfg)  # SIGHUP into always_on: a session opens by itself
        await r.sim.wait_connection(1)
        await r.wait_state(State.LISTENING)
        assert r.sup.snapshot()["mode"] == "always_on"
