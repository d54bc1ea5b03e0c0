"""The stream-input client against the simulator endpoint and against misbehaving servers."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError

from tests.tts.conftest import KEY, Sim
from voicebox.config import Secret, TtsConfig
from voicebox.simulator.tts import VOICE_SETTINGS_CHANGED, word_tone
from voicebox.tts import TtsError, synthesize

TTS = TtsConfig()


def expected_audio(text: str, rate: int) -> bytes:
    return b"".join(word_tone(w, rate).astype("<i2").tobytes() for w in text.split())


@pytest.mark.asyncio
async def test_message_sequence_and_audio(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="voicebox")
    text = "Hello there. How are you today?"
    audio = await synthesize(text, TTS, sim.base, Secret(KEY), "pcm_22050")
    assert audio == expected_audio(text, 22050)
    (done,) = [r.getMessage() for r in caplog.records if "tts.synthesised" in r.getMessage()]
    assert f"aligned_chars={len(text.replace(' ', ''))}" in done
    (req,) = sim.tts_requests
    assert req.key_sent and req.close_code == 1000 and req.error is None
    assert req.voice_id == TTS.voice_id
    assert req.query == {"model_id": TTS.model_id, "output_format": "pcm_22050"}
    first, *chunks, eos = req.messages
    assert first["text"] == " "
    assert first["voice_settings"] == dataclasses.asdict(TTS.voice_settings)
    assert first["generation_config"]["chunk_length_schedule"]
    assert [m["text"] for m in chunks] == ["Hello there. ", "How are you today? "]
    assert all("voice_settings" not in m for m in chunks)
    assert [m.get("flush", False) for m in chunks] == [False, True]
    assert eos == {"text": ""}
    assert all("key" not in json.dumps(m).lower() for m in req.messages)


@pytest.mark.asyncio
async def test_ulaw_output(sim: Sim) -> None:
    audio = await synthesize("Ready.", TTS, sim.base, Secret(KEY), "ulaw_8000")
    assert len(audio) == len(word_tone("Ready.", 8000))


@pytest.mark.asyncio
async def test_wrong_key_is_an_error_with_the_service_message(sim: Sim) -> None:
    with pytest.raises(TtsError) as info:
        await synthesize("Ready.", TTS, sim.base, Secret("sk_wrong_key_000"), "pcm_16000")
    assert info.value.message == "Invalid API key" and info.value.code == 1008
    assert sim.tts_requests[0].close_code == 1008


@pytest.mark.asyncio
async def test_missing_key_is_rejected(sim: Sim) -> None:
    with pytest.raises(TtsError, match="Invalid API key"):
        await synthesize("Ready.", TTS, sim.base, None, "pcm_16000")
    assert not sim.tts_requests[0].key_sent


async def raw_exchange(url: str, sends: list[dict[str, Any]]) -> tuple[list[Any], int | None]:
    """Send messages on a raw socket; the frames received and the close code."""
    frames: list[Any] = []
    async with connect(url, additional_headers={"xi-api-key": KEY}) as ws:
        try:
            for message in sends:
                await ws.send(json.dumps(message))
        except ConnectionClosedError:
            pass
        try:
            async for raw in ws:
                frames.append(json.loads(raw))
        except ConnectionClosedError:
            pass
    return frames, ws.close_code


def ws_url(sim: Sim, query: str) -> str:
    return sim.base.replace("http", "ws") + "/v1/text-to-speech/v1d/stream-input?" + query


@pytest.mark.asyncio
async def test_sim_rejects_changed_voice_settings(sim: Sim) -> None:
    frames, code = await raw_exchange(
        ws_url(sim, "model_id=m&output_format=pcm_16000"),
        [
            {"text": " ", "voice_settings": {"stability": 0.5}},
            {"text": "Hi ", "voice_settings": {"stability": 0.5}},  # unchanged: fine
            {"text": "there ", "voice_settings": {"stability": 0.9}},
        ],
    )
    assert code == 1008
    assert frames[-1]["message"] == VOICE_SETTINGS_CHANGED and frames[-1]["code"] == 1008
    assert not any("audio" in f for f in frames)


@pytest.mark.parametrize(
    ("query", "first", "fragment"),
    [
        ("model_id=m&output_format=pcm_16000&colour=red", " ", "unknown query parameter"),
        ("output_format=pcm_16000", " ", "model_id is required"),
        ("model_id=m", " ", "output_format"),  # the service's default is MP3
        ("model_id=m?output_format=pcm_16000", " ", "output_format"),  # a second '?'
        ("model_id=m&output_format=pcm_16000&auto_mode=None", " ", "auto_mode"),
        ("model_id=m&output_format=pcm_16000", "Hello", "single space"),
    ],
)
@pytest.mark.asyncio
async def test_sim_checks_query_and_first_message(
    sim: Sim, query: str, first: str, fragment: str
) -> None:
    frames, code = await raw_exchange(ws_url(sim, query), [{"text": first}, {"text": ""}])
    assert code == 1008
    assert fragment in frames[-1]["message"]


@pytest.mark.parametrize(
    ("frames", "close", "message", "code"),
    [
        ([], (1011, "overloaded"), "overloaded", 1011),
        ([], (1008, ""), "closed with code 1008", 1008),
        (
            [{"message": "Quota exceeded", "error": "quota_exceeded", "code": 1008}],
            (1008, "q"),
            "Quota exceeded",
            1008,
        ),  # fmt: skip
        ([{"error": "bad_thing"}], (1000, ""), "bad_thing", "bad_thing"),
    ],
)
@pytest.mark.asyncio
async def test_error_frames_and_abnormal_closes(
    frames: list[dict[str, Any]], close: tuple[int, str], message: str, code: object
) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        audio = {"audio": "AAAA", "isFinal": False}
        await ws.send(json.dumps(audio))
        for frame in frames:
            await ws.send(json.dumps(frame))
        await ws.close(*close)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with pytest.raises(TtsError) as info:
            await synthesize("Ready.", TTS, f"http://127.0.0.1:{port}", Secret(KEY), "pcm_16000")
    assert info.value.message == message and info.value.code == code


@pytest.mark.asyncio
async def test_final_frame_ends_the_read_and_falsy_final_does_not() -> None:
    pcm = np.arange(100, dtype="<i2").tobytes()
    import base64

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps({"audio": base64.b64encode(b"\x01").decode()}))  # half a sample
        for final in (None, False, 0):
            await ws.send(json.dumps({"audio": base64.b64encode(pcm).decode(), "isFinal": final}))
        await ws.send(json.dumps({"audio": "", "isFinal": True}))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        audio = await synthesize("Ok.", TTS, f"http://127.0.0.1:{port}", Secret(KEY), "pcm_16000")
    assert audio == (b"\x01" + pcm * 3)[:-1]  # whole samples only


@pytest.mark.asyncio
async def test_server_down_and_silent_server(dead_base: str) -> None:
    with pytest.raises(TtsError, match="cannot reach 127.0.0.1"):
        await synthesize("Ready.", TTS, dead_base, Secret(KEY), "pcm_16000")

    async def silent(ws: ServerConnection) -> None:
        await ws.wait_closed()

    quick = dataclasses.replace(TTS, timeout_s=0.3)
    async with serve(silent, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with pytest.raises(TtsError, match="no complete answer within 0.3 s"):
            await synthesize("Ready.", quick, f"http://127.0.0.1:{port}", Secret(KEY), "pcm_16000")


@pytest.mark.asyncio
async def test_handshake_refusal() -> None:
    def refuse(connection: Any, request: Any) -> Any:
        return connection.respond(401, "no\n")

    async def never(ws: ServerConnection) -> None:
        raise AssertionError("not reached")

    async with serve(never, "127.0.0.1", 0, process_request=refuse) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with pytest.raises(TtsError) as info:
            await synthesize("Ready.", TTS, f"http://127.0.0.1:{port}", Secret(KEY), "pcm_16000")
    assert info.value.code == 401 and "HTTP 401" in str(info.value)


@pytest.mark.asyncio
async def test_rejection_at_connect_keeps_the_service_message(sim: Sim) -> None:
    bad = dataclasses.replace(TTS, model_id="")
    with pytest.raises(TtsError) as info:
        await synthesize("Ready.", bad, sim.base, Secret(KEY), "pcm_16000")
    assert info.value.message == "model_id is required" and info.value.code == 1008


@pytest.mark.asyncio
async def test_through_the_simulators_own_server() -> None:
    from voicebox.simulator.server import SimConfig, Simulator

    async with Simulator(SimConfig(api_key=KEY)) as simulator:
        audio = await synthesize("Back online.", TTS, simulator.url, Secret(KEY), "pcm_16000")
        with pytest.raises(TtsError, match="Invalid API key"):
            await synthesize(
                "Back online.", TTS, simulator.url, Secret("sk_nope_1234"), "pcm_16000"
            )
    assert audio == expected_audio("Back online.", 16000)
    assert [r.close_code for r in simulator.tts_requests] == [1000, 1008]


@pytest.mark.asyncio
async def test_key_stays_out_of_debug_logs(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await synthesize("Ready.", TTS, sim.base, Secret(KEY), "pcm_16000")
    with pytest.raises(TtsError):
        await synthesize("Ready.", TTS, sim.base, Secret(KEY + "x"), "pcm_16000")
    ours = [r for r in caplog.records if not r.name.startswith("websockets.server")]
    assert any(r.name == "voicebox.tts" for r in ours)
    assert all(KEY not in r.getMessage() for r in ours)


@pytest.mark.asyncio
async def test_sim_closes_an_idle_socket_after_the_inactivity_timeout(sim: Sim) -> None:
    frames, code = await raw_exchange(
        ws_url(sim, "model_id=m&output_format=pcm_16000&inactivity_timeout=1"), [{"text": " "}]
    )
    assert code == 1008 and frames[-1]["error"] == "input_timeout_exceeded"
