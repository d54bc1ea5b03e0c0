"""Frames that once broke `media.parse`: never an exception, the call goes on."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.phone.rig import phone_rig
from tests.phone.test_call import greeted, sim_config, turn
from voicebox.phone import media

DEEP = "[" * 100_000  # under the 1 MiB message limit
START_INF = json.dumps(
    {
        "event": "start",
        "start": {"streamSid": "MZ1", "callSid": "CA1", "mediaFormat": {"sampleRate": 8000}},
    }
).replace("8000", "1e400")


@pytest.mark.parametrize(
    "frame",
    [
        DEEP,
        '{"a": ' * 50_000,
        START_INF,
        START_INF.replace("1e400", "-1e400"),
        START_INF.replace("1e400", "NaN"),
        START_INF.replace('"sampleRate": 1e400', '"channels": 1e999'),
    ],
)
def test_parse_never_raises_on_deep_nesting_or_infinite_numbers(frame: str) -> None:
    ev = media.parse(frame)
    assert isinstance(ev, media.Malformed)
    assert ev.kind in {"json", "fields"} and len(ev.detail) <= 200


@pytest.mark.asyncio
@pytest.mark.slow
async def test_bad_frames_mid_call_or_before_start_leave_no_traceback_and_the_call_goes_on() -> (
    None
):
    async with phone_rig(sim_config()) as rig:
        # Before `start` (unauthenticated): refused like any stream without a start.
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(rig.server.stream_url()) as ws:
                await ws.send_str(DEEP)
                await ws.send_str(START_INF)
            await rig.fake.wait_for(lambda: rig.server.counters["malformed"] >= 2)
        call = await rig.call()
        await greeted(rig, call)
        before = rig.server.counters["malformed"]
        for frame in (DEEP, START_INF):
            await call.send_raw(frame)
        await rig.fake.wait_for(lambda: rig.server.counters["malformed"] >= before + 2)
        await turn(rig, call)  # still the same working call
        assert not call.stopped.is_set() and call.sid in rig.server.calls
        assert len(rig.sim.connections) == 1
        call.hang_up()
        await asyncio.wait_for(call.stopped.wait(), 10)
    assert not [r for r in rig.logs.records if r.exc_info], "a traceback was logged"
    assert rig.logs.events("stream.malformed")
