"""Phone calls end to end: the Twilio fake calls in, the bridge runs the simulator as the agent."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.phone.rig import ACCOUNT, TOKEN, PhoneRig, phone_rig
from voicebox.config import Secret
from voicebox.phone.rest import RestError
from voicebox.phone.server import MEDIA_PATH, place_call
from voicebox.simulator.server import SimConfig
from voicebox.simulator.twilio import FakeCall
from voicebox.status import metrics_text

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def sim_config(fmt: str = "ulaw_8000", **changes: object) -> SimConfig:
    settings: dict[str, object] = {
        "output_format": fmt,
        "input_format": fmt,
        "ping_interval_s": 1.0,
        **changes,
    }
    return SimConfig(**settings)  # type: ignore[arg-type]


async def greeted(rig: PhoneRig, call: FakeCall) -> None:
    """Wait until the caller has heard the greeting and the agent has stopped talking."""
    await rig.fake.wait_for(lambda: call.heard_s() > 0.5)
    sim_call = rig.sim.connection(1)
    await rig.fake.wait_for(lambda: sim_call.agent_responses and not _playing(rig, call))


def _playing(rig: PhoneRig, call: FakeCall) -> bool:
    live = rig.server.calls.get(call.sid)
    return live is not None and live.port.playing


async def turn(rig: PhoneRig, call: FakeCall, seconds: float = 1.2) -> None:
    """The caller says something and the agent's answer has been played to the end."""
    conn = rig.sim.connection()
    turns = len(conn.turns)
    rig.say(call, seconds)
    await rig.fake.wait_for(lambda: len(conn.turns) > turns)
    replies = len(conn.agent_responses)
    heard = call.heard_s()
    await rig.fake.wait_for(lambda: len(conn.agent_responses) > replies or call.stopped.is_set())
    # The answer's text comes before its audio: wait until the caller hears it, then its end.
    await rig.fake.wait_for(lambda: call.heard_s() > heard or call.stopped.is_set())
    await rig.fake.wait_for(lambda: not _playing(rig, call) or call.stopped.is_set())


@pytest.mark.parametrize("fmt", ["ulaw_8000", "pcm_16000"])
async def test_end_call_plays_the_whole_goodbye_then_completes_the_call(fmt: str) -> None:
    async with phone_rig(sim_config(fmt, end_call_after_turns=2)) as rig:
        call = await rig.call()
        await greeted(rig, call)
        await turn(rig, call)
        rig.say(call, 1.2)  # the second turn: the agent answers, says goodbye and ends the call
        await asyncio.wait_for(call.stopped.wait(), 30)

        # The goodbye was played in full: every frame sent was heard, every mark answered by
        # playout (none cleared), and the REST completion came after the last mark.
        assert call.completed_by_rest_at is not None
        assert call.clears == []
        assert call.media_in > 0 and len(call.heard) == call.media_in
        echoed = [name for name, _ in call.marks_echoed]
        assert echoed == call.marks_received
        last_mark_at = call.marks_echoed[-1][1]
        assert call.completed_by_rest_at >= last_mark_at
        updates = [r for r in rig.fake.rest_log if r[1].endswith(f"/Calls/{call.sid}.json")]
        assert updates == [("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.sid}.json", 200)]

        # The end_call sequence as logged, in order, each line carrying the call's SID.
        names = ["agent.end_call", "session.closed", "call.goodbye_played", "call.completed"]
        records = [r for r in rig.logs.records if getattr(r, "EVENT", None) in names]
        assert [r.EVENT for r in records] == names  # type: ignore[attr-defined]
        assert all(getattr(r, "CALL_SID", None) == call.sid for r in records)
        closed = rig.logs.events("session.closed")[0]
        assert closed["CLASS"] == "normal" and closed["CLOSE_CODE"] == 1000
        assert rig.logs.events("call.goodbye_played")[0]["LAST_MARK"] == echoed[-1]
        ended = rig.logs.events("call.ended")[0]
        assert ended["BY"] == "agent" and ended["CONVERSATION_ID"] == "conv_sim_1"
        assert rig.server.counters["completed_by_agent"] == 1
        assert len(rig.sim.connections) == 1 and rig.sim.connection(1).turns


async def test_interruption_clears_twilio_and_the_stale_audio_is_not_heard() -> None:
    long_greeting = "Hello, this is the voicebox simulator speaking a long greeting for you."
    async with phone_rig(sim_config(first_message=long_greeting)) as rig:
        call = await rig.call()
        await rig.fake.wait_for(lambda: call.heard_s() > 0.6)
        rig.say(call, 1.0)  # the caller talks over the greeting
        await rig.fake.wait_for(lambda: call.clears)
        conn = rig.sim.connection(1)
        assert conn.interruptions, "the simulator saw the barge-in"
        # Twilio had agent audio buffered; the clear dropped it and none of it was played.
        assert call.clears[0][1] > 0
        assert call.stale_heard == 0
        # The conversation goes on: the caller's turn is answered and heard.
        await rig.fake.wait_for(lambda: len(conn.agent_responses) >= 2)
        cleared_at = call.clears[-1][0]
        await rig.fake.wait_for(lambda: call.heard_s(after=cleared_at) > 0.3)
        call.hang_up()
        await asyncio.wait_for(call.stopped.wait(), 10)


async def test_caller_hang_up_closes_the_session_normally() -> None:
    async with phone_rig(sim_config()) as rig:
        call = await rig.call()
        await greeted(rig, call)
        call.hang_up()
        conn = rig.sim.connection(1)
        await rig.sim.wait_for(lambda: conn.closed)
        assert conn.close_code == 1000 and conn.closed_by == "client"
        await rig.fake.wait_for(lambda: not rig.server.calls)
        assert call.completed_by_rest_at is None
        assert not [r for r in rig.fake.rest_log if "/Calls/" in r[1]], "no REST for a hang-up"
        assert rig.logs.events("call.ended")[0]["BY"] == "caller"
        assert rig.server.counters["ended_by_caller"] == 1


async def test_a_1012_mid_call_reconnects_and_the_call_goes_on() -> None:
    async with phone_rig(sim_config()) as rig:
        call = await rig.call()
        await greeted(rig, call)
        await rig.sim.inject("1:close:1012", index=1)
        second = await rig.sim.wait_connection(2)
        assert second.metadata_sent
        await rig.fake.wait_for(lambda: second.agent_responses and not _playing(rig, call))
        await turn(rig, call)
        assert second.turns, "the caller's turn reached the new session"
        assert not call.stopped.is_set() and call.completed_by_rest_at is None
        assert len(rig.server.calls) == 1
        ids = [e["CONVERSATION_ID"] for e in rig.logs.events("call.conversation")]
        assert ids == ["conv_sim_1", "conv_sim_2"]
        call.hang_up()
        await asyncio.wait_for(call.stopped.wait(), 10)


async def test_unrecoverable_agent_failure_announces_then_completes_the_call() -> None:
    async with phone_rig(sim_config(faults=())) as rig:
        rig.sim.set_fault("all:http:401")
        call = await rig.call()
        await asyncio.wait_for(call.stopped.wait(), 30)
        assert call.completed_by_rest_at is not None
        heard_before = [t for t, _, f in call.heard if t <= call.completed_by_rest_at]
        assert call.heard_s() > 0 and heard_before, "the caller heard the announcement"
        assert rig.logs.events("call.agent_unreachable")
        assert rig.logs.events("call.ended")[0]["BY"] == "unreachable"
        assert rig.server.counters["failed"] == 1


async def test_unsigned_or_badly_signed_webhook_is_refused() -> None:
    async with phone_rig(sim_config()) as rig:
        params = {"CallSid": "CA" + "1" * 32, "AccountSid": ACCOUNT, "From": "+1555", "To": "+1"}
        status, _ = await rig.fake.post_signed(rig.voice_url, params, signature="")
        assert status == 403
        status, _ = await rig.fake.post_signed(rig.voice_url, params, signature="bm90IGl0")
        assert status == 403
        rejected = rig.logs.events("webhook.rejected")
        assert [e["REASON"] for e in rejected] == ["no signature", "bad signature"]
        assert rig.server.active_calls == 0
        assert all(TOKEN not in r.getMessage() for r in rig.logs.records)


async def test_over_max_calls_the_next_call_is_answered_busy() -> None:
    async with phone_rig(sim_config(), **{"phone.max_calls": 1}) as rig:
        first = await rig.call()
        await greeted(rig, first)
        second = await rig.call()
        assert second.rejected == "busy" and second.stream_url is None
        assert rig.server.counters["busy"] == 1
        snap = rig.server.snapshot()
        assert snap["active_calls"] == 1 and snap["state"] == "1 active call"
        assert snap["calls"][first.sid]["conversation_id"] == "conv_sim_1"
        text = metrics_text(rig.server.metrics())
        assert "voicebox_active_calls 1\n" in text and "voicebox_counters_phone_busy 1\n" in text
        first.hang_up()
        await asyncio.wait_for(first.stopped.wait(), 10)
        await rig.fake.wait_for(lambda: rig.server.active_calls == 0)
        # A webhook Twilio retries for the same call takes no second slot.
        params = {"CallSid": "CA" + "7" * 32, "AccountSid": ACCOUNT, "From": "+1", "To": "+2"}
        answers = [(await rig.fake.post_signed(rig.voice_url, params))[1] for _ in range(2)]
        assert answers[0] == answers[1] and "<Stream" in answers[0]
        assert rig.server.active_calls == 1


async def test_a_stream_with_an_unknown_token_is_closed_1008() -> None:
    async with phone_rig(sim_config()) as rig, aiohttp.ClientSession() as http:
        url = rig.server.stream_url()
        assert url.endswith(MEDIA_PATH)
        async with http.ws_connect(url) as ws:
            start = {
                "event": "start",
                "start": {
                    "streamSid": "MZ1",
                    "callSid": "CA1",
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
                    "customParameters": {"token": "not-a-token"},
                },
            }
            await ws.send_str(json.dumps({"event": "connected"}))
            await ws.send_str(json.dumps(start))
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1008
        assert rig.server.counters["unknown_tokens"] == 1
        assert not rig.sim.connections, "no convai session for a rejected stream"


async def test_malformed_stream_messages_are_counted_and_the_call_goes_on() -> None:
    async with phone_rig(sim_config()) as rig:
        call = await rig.call()
        await greeted(rig, call)
        for frame in (
            "{not json",
            b"\x00binary",
            "[1, 2]",
            '{"no_event": 1}',
            '{"event": "media", "media": {"payload": "@@@"}}',
            '{"event": "mark"}',
            '{"event": "something_new"}',
        ):
            await call.send_raw(frame)
        await rig.fake.wait_for(lambda: rig.server.counters["malformed"] >= 7)
        kinds = {e["KIND"] for e in rig.logs.events("stream.malformed")}
        assert kinds == {"json", "binary", "not_object", "no_event", "base64", "fields"} | {
            "unknown:something_new"
        }
        await turn(rig, call)  # still a working call
        assert rig.sim.connection(1).turns
        call.hang_up()
        await asyncio.wait_for(call.stopped.wait(), 10)


async def test_voicebox_call_places_an_outbound_call_that_opens_the_same_stream(
    tmp_path: Path,
) -> None:
    async with phone_rig(sim_config()) as rig:
        phone = rig.server.cfg.phone
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"phone:\n  enabled: true\n  public_url: {phone.public_url}\n"
            f"  account_sid: {ACCOUNT}\n  from_number: '+15550100002'\n"
            f"  api_base: {phone.api_base}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicebox", "call", "+15550100003", "--config", str(cfg),
            env={**os.environ, "TWILIO_AUTH_TOKEN": TOKEN},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        sid = out.decode().split()[1]
        assert out.decode().strip() == f"call {sid} to +15550100003: queued"
        assert TOKEN not in (out + err).decode()
        await rig.fake.wait_for(lambda: sid in rig.server.calls)
        call = rig.fake.calls[sid]
        assert call.direction == "outbound-api" and call.to == "+15550100003"
        await greeted(rig, call)
        call.hang_up()
        await asyncio.wait_for(call.stopped.wait(), 10)
        # The status callback after the hang-up was signed and accepted.
        await rig.fake.wait_for(lambda: rig.logs.events("call.status"))
        assert rig.logs.events("call.status")[0]["STATUS"] == "completed"


async def test_rest_requests_with_a_wrong_token_fail_cleanly() -> None:
    async with phone_rig(sim_config()) as rig:
        cfg = rig.server.cfg
        with pytest.raises(RestError, match="HTTP 401 code 20003"):
            await place_call(cfg, Secret("wrong-token"), "+15550100003")
        assert not rig.fake.calls


async def test_a_normal_close_right_after_the_goodbye_still_lets_the_caller_hear_all_of_it() -> (
    None
):
    # The service closes 1000 as soon as the goodbye is sent, not once it has been heard: the
    # bridge must keep the call up until Twilio's mark says the audio has played.
    async with phone_rig(sim_config()) as rig:
        call = await rig.call()
        await greeted(rig, call)
        heard_before = call.heard_s()
        await rig.sim.speak("Thank you for calling, this is a long goodbye. Take care now.")
        await rig.fake.wait_for(lambda: call.heard_s() > heard_before + 0.3)
        closed_at = time.monotonic()
        await rig.sim.inject("1:close:1000", index=1)
        await asyncio.wait_for(call.stopped.wait(), 20)
        assert rig.sim.connection(1).close_code == 1000
        assert call.completed_by_rest_at is not None
        assert len(call.heard) == call.media_in, "every frame that reached Twilio was played"
        assert call.heard_s(after=closed_at) > 0.3, "the goodbye went on playing after the close"
        assert call.completed_by_rest_at >= call.marks_echoed[-1][1]
        assert [name for name, _ in call.marks_echoed] == call.marks_received
