"""An announcement's drain() on the real AudioEngine while an agent reply streams in meanwhile."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from tests.tts.conftest import make_config
from voicebox.announcements import Announcer
from voicebox.audio.engine import AudioEngine
from voicebox.simulator.voice import silence


class WatchedEngine(AudioEngine):
    """The real engine, noting what was queued last when drain() ends the current reply."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[str] = []
        self.last_before_drain: list[str] = []

    def play(self, data: bytes) -> None:
        self.calls.append("phrase" if data[:2] != b"AG" else "agent")
        super().play(data)

    def end_reply(self) -> None:
        self.calls.append("end_reply")
        super().end_reply()

    async def drain(self, timeout: float) -> bool:
        self.last_before_drain = self.calls[-2:]
        return await super().drain(timeout)


@pytest.mark.asyncio
async def test_drain_ends_only_the_phrase_even_with_an_agent_reply_streaming(
    tmp_path: Path,
) -> None:
    # drain() ends "the current reply" at once; an agent reply that joined the ring between the
    # phrase's play() and drain() would be ended too. The agent here streams a chunk every loop
    # turn from the moment the wait rule lets the phrase go.
    with wave.open(str(tmp_path / "in.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(silence(5.0).astype("<i2").tobytes())
    cfg = make_config(
        tmp_path,
        "http://127.0.0.1:9",
        **{"audio.input.backend": "file", "audio.input.path": str(tmp_path / "in.wav")},
    )
    engine = WatchedEngine(cfg.audio)
    await engine.start(lambda chunk: None)
    announcer = Announcer(cfg, engine, None)  # no key: the tone, at once
    chunk = b"AG" + bytes(318)  # 10 ms of near-silence at 16 kHz, marked as the agent's

    async def agent() -> None:
        while not engine.calls:  # noqa: ASYNC110 (the phrase goes first)
            await asyncio.sleep(0)
        for _ in range(200):
            engine.play(chunk)
            await asyncio.sleep(0)

    try:
        streaming = asyncio.create_task(agent())
        await announcer.announce("ready")
        await streaming
        engine.end_reply()
    finally:
        await engine.stop()
    assert engine.calls[:2] == ["phrase", "end_reply"]
    assert engine.last_before_drain == ["phrase", "end_reply"]  # no agent audio in between
    assert "agent" in engine.calls[2:]  # the agent's reply did stream in meanwhile
