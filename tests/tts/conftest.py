"""TTS test fixtures: the simulator stream-input endpoint on loopback and a recording port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.server import serve

from voicebox.audio.formats import PCM_16000, AudioFormat
from voicebox.audio.port import AudioStats, OnChunk
from voicebox.config import Config, with_changes
from voicebox.simulator.tts import TtsRequest, serve_tts

KEY = "sk_test_tts_0123456789abcdef"


@dataclass
class Sim:
    """What serve_tts reads from the simulator: the key it requires and the request log."""

    api_key: str | None = KEY
    tts_requests: list[TtsRequest] = field(default_factory=list)
    base: str = ""


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Sim]:
    state = Sim()

    async def handler(ws: Any) -> None:
        await serve_tts(ws, state)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        state.base = f"http://127.0.0.1:{port}"
        yield state


def make_config(tmp_path: Path, base: str, **changes: Any) -> Config:
    cfg: Config = with_changes(
        Config(),
        **{
            "agent.api_base": base,
            "paths.state_dir": str(tmp_path / "state"),
            "audio.output.backend": "file",
            "audio.output.path": str(tmp_path / "out.wav"),
            "audio.output.sample_rate": 16000,
            **changes,
        },
    )
    return cfg


@pytest.fixture
def dead_base() -> str:
    """A loopback URL where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class RecordingPort:
    """An AudioPort test double that records calls; the test decides when the agent stops."""

    input_format = PCM_16000

    def __init__(self, output_format: AudioFormat | None = None, playing: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._playing = playing
        self.agent_done = asyncio.Event()
        if output_format is not None:
            self.output_format = output_format

    def finish_agent(self) -> None:
        self._playing = False
        self.agent_done.set()

    async def start(self, on_chunk: OnChunk) -> None:
        self.calls.append(("start", None))

    def set_input_format(self, fmt: AudioFormat) -> None:
        self.calls.append(("input_format", fmt.name))

    def set_output_format(self, fmt: AudioFormat) -> None:
        self.calls.append(("output_format", fmt.name))

    def play(self, data: bytes) -> None:
        self.calls.append(("play", data))

    def end_reply(self) -> None:
        self.calls.append(("end_reply", None))

    def interrupt(self) -> None:
        self.calls.append(("interrupt", None))
        self._playing = False

    @property
    def playing(self) -> bool:
        return self._playing

    async def drain(self, timeout: float) -> bool:
        self.calls.append(("drain", None))
        if not self._playing:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self.agent_done.wait()
        except TimeoutError:
            return False
        return True

    def set_volume(self, volume: float) -> None:
        pass

    def set_prebuffer_ms(self, ms: int) -> None:
        pass

    async def stop(self) -> None:
        pass

    def stats(self) -> AudioStats:
        return AudioStats()

    def names(self) -> list[str]:
        return [name for name, _ in self.calls if name != "drain"]

    def played(self) -> bytes:
        return b"".join(data for name, data in self.calls if name == "play")
