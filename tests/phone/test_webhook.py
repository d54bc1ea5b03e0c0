"""Webhooks and stream tokens: a token past its TTL, a webhook repeated for a live call."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import aiohttp
import pytest

from tests.phone.rig import ACCOUNT, PhoneRig, phone_rig
from tests.phone.test_call import greeted, sim_config
from voicebox.phone import server as phone_server

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _token(twiml: str) -> str:
    stream = ET.fromstring(twiml).find("Connect/Stream")
    assert stream is not None, twiml
    return next(p.get("value", "") for p in stream.findall("Parameter") if p.get("name") == "token")


async def _open_stream(rig: PhoneRig, call_sid: str, token: str) -> int | None:
    """A Media Stream as Twilio opens it; the close code the bridge answers with (None: open)."""
    start = {
        "event": "start",
        "start": {
            "streamSid": "MZ" + "9" * 32,
            "callSid": call_sid,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            "customParameters": {"token": token},
        },
    }
    async with aiohttp.ClientSession() as http, http.ws_connect(rig.server.stream_url()) as ws:
        await ws.send_str(json.dumps({"event": "connected"}))
        await ws.send_str(json.dumps(start))
        try:
            msg = await ws.receive(timeout=5)
        except TimeoutError:
            return None
        assert msg.type == aiohttp.WSMsgType.CLOSE
        return ws.close_code


async def test_a_stream_token_past_its_ttl_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phone_server, "TOKEN_TTL_S", 0.5)
    async with phone_rig(sim_config()) as rig:
        sid = "CA" + "5" * 32
        params = {"CallSid": sid, "AccountSid": ACCOUNT, "From": "+1555", "To": "+1556"}
        status, twiml = await rig.fake.post_signed(rig.voice_url, params)
        assert status == 200
        await asyncio.sleep(1.0)  # twice the TTL; nothing else looks at the pending tokens
        assert await _open_stream(rig, sid, _token(twiml)) == 1008
        assert not rig.server.calls and not rig.sim.connections
        assert [e["REASON"] for e in rig.logs.events("stream.rejected")] == ["expired token"]


async def test_a_webhook_repeated_for_a_live_call_opens_no_second_conversation() -> None:
    async with phone_rig(sim_config(), **{"phone.max_calls": 2}) as rig:
        call = await rig.call()
        await greeted(rig, call)
        live = rig.server.calls[call.sid]
        params = {
            "CallSid": call.sid,
            "AccountSid": ACCOUNT,
            "From": call.from_,
            "To": call.to,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        # Twilio's retry or a replayed capture: answered with the same TwiML, no new slot.
        status, twiml = await rig.fake.post_signed(rig.voice_url, params)
        assert status == 200 and twiml == call.twiml
        assert rig.server.active_calls == 1
        # Its (spent) token opens no second stream, and the first call stays tracked.
        assert await _open_stream(rig, call.sid, _token(twiml)) == 1008
        assert rig.server.calls == {call.sid: live}
        assert len(rig.sim.connections) == 1
        other = await rig.call()  # the second slot is still free
        assert other.rejected is None and other.stream_url is not None
        await rig.fake.wait_for(lambda: other.sid in rig.server.calls)
        for c in (call, other):
            c.hang_up()
            await asyncio.wait_for(c.stopped.wait(), 10)
