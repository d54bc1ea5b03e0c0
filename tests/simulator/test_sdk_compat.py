"""The official SDK's AsyncConversation talks to the simulator as it would to the real service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.simulator.client import utterance
from voicebox.simulator.server import SimConfig, Simulator

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SDK import-time warning


class FeedAndCollect:
    """An AsyncAudioInterface that speaks one utterance in 250 ms chunks and keeps the output."""

    def __init__(self) -> None:
        self.output_bytes = 0
        self.interrupts = 0
        self.stopped = False
        self._feeder: asyncio.Task[None] | None = None

    async def start(self, input_callback: Callable[[bytes], Awaitable[None]]) -> None:
        data = utterance(1.0, 1.0).astype("<i2").tobytes()

        async def feed() -> None:
            for i in range(0, len(data), 8000):  # 4000 samples, the SDK's recommended chunk
                await input_callback(data[i : i + 8000])
                await asyncio.sleep(0.01)

        self._feeder = asyncio.create_task(feed())

    async def stop(self) -> None:
        self.stopped = True
        if self._feeder is not None:
            self._feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feeder

    async def output(self, audio: bytes) -> None:
        self.output_bytes += len(audio)

    async def interrupt(self) -> None:
        self.interrupts += 1


@pytest.mark.asyncio
async def test_sdk_async_conversation_against_the_simulator() -> None:
    from elevenlabs import ElevenLabs
    from elevenlabs.conversational_ai.conversation import AsyncConversation, ClientTools

    config = SimConfig(
        api_key="sk_sim_key",
        first_message="",
        reply_delay_s=0.0,
        seconds_per_char=0.02,
        ping_interval_s=0.1,
        tool_call_turns=frozenset({1}),
        end_call_after_turns=1,
    )
    async with Simulator(config) as sim:
        transcripts: list[str] = []
        responses: list[str] = []
        disconnects: list[Any] = []
        ended = asyncio.Event()
        tools = ClientTools(loop=asyncio.get_running_loop())
        tools.register("get_time", lambda params: f"noon for turn {params['turn']}")

        async def on_transcript(text: str) -> None:
            transcripts.append(text)

        async def on_response(text: str) -> None:
            responses.append(text)

        async def on_disconnect(details: Any) -> None:
            disconnects.append(details)
            ended.set()

        audio = FeedAndCollect()
        conversation = AsyncConversation(
            ElevenLabs(api_key="sk_sim_key", base_url=sim.url, timeout=10),
            "agent_sdk",
            requires_auth=True,  # REST get-signed-url with xi-api-key, then the signed socket
            audio_interface=audio,
            client_tools=tools,
            callback_user_transcript=on_transcript,
            callback_agent_response=on_response,
            callback_disconnect=on_disconnect,
        )
        await conversation.start_session()
        try:
            async with asyncio.timeout(30):
                await ended.wait()
        finally:
            await conversation.end_session()
            with contextlib.suppress(Exception):
                await conversation.wait_for_session_end()

        rec = sim.connection()
        assert sim.signed_urls_issued == 1
        assert rec.initiation is not None
        assert rec.initiation.source_info["source"] == "python_sdk"
        assert transcripts and transcripts[0].startswith("user turn 1 (")
        assert responses == ["The get_time tool said: noon for turn 1", "Goodbye."]
        assert [r.result for r in rec.tool_results] == ["noon for turn 1"]
        assert audio.output_bytes > 0 and audio.stopped
        assert rec.pongs and rec.pongs == sorted(rec.pongs)
        assert [(d.reason, d.close_code) for d in disconnects] == [("agent", 1000)]
        assert rec.user_audio_s == pytest.approx(2.0, abs=0.01)
