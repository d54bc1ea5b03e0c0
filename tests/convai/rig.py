"""A Supervisor wired to the local simulator and a recording audio port, with a real-time mic."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from tests.convai.fakes import RecordingAudio
from voicebox.config import Config, Secret, with_changes
from voicebox.convai.supervisor import Supervisor
from voicebox.convai.tools import ToolRegistry, builtin_tools, local_now
from voicebox.logs import fields_of
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.uplink import SlowUplink
from voicebox.simulator.voice import speech_like
from voicebox.state import State

CHUNK_S = 0.02

# Fast, test-sized timings: set through the config, never by patching internals.
FAST = {
    "agent.agent_id": "agent_test",
    "conversation.reconnect.initial_s": 0.05,
    "conversation.reconnect.max_s": 0.2,
    "conversation.reconnect.degraded_s": 1.0,
    "conversation.reconnect.quick_failure_s": 0.3,
    "conversation.reconnect.stable_after_s": 5.0,
    "conversation.receive_timeout_s": 0.2,
    "conversation.rollover": False,
    "conversation.mode": "always_on",
}


class LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for r in self.records:
            fields = fields_of(r)
            if fields.get("EVENT") == name:
                out.append({**fields, "_level": r.levelno, "_msg": r.getMessage()})
        return out


class Rig:
    def __init__(
        self, sim: Simulator, sup: Supervisor, audio: RecordingAudio, logs: LogRecords
    ) -> None:
        self.sim = sim
        self.sup = sup
        self.audio = audio
        self.logs = logs
        self.states: list[tuple[State, dict[str, Any]]] = []
        self._speech: list[np.ndarray[Any, Any]] = []
        self._changed = asyncio.Event()

    def on_state(self, state: State, fields: dict[str, Any]) -> None:
        self.states.append((state, dict(fields)))
        self._changed.set()

    def say(self, seconds: float) -> None:
        """The user speaks for `seconds` (speech-like audio into the mic, in real time)."""
        self._speech.append(speech_like(seconds, 16000))

    def state_names(self) -> list[State]:
        return [s for s, _ in self.states]

    async def wait_state(self, state: State, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.sup.state != state:
                self._changed.clear()
                await self._changed.wait()

    async def wait(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 (polls plain attributes)
                await asyncio.sleep(0.01)

    async def mic(self) -> None:
        n = int(16000 * CHUNK_S)
        silence = np.zeros(n, dtype=np.int16)
        pending = np.zeros(0, dtype=np.int16)
        while True:
            await asyncio.sleep(CHUNK_S)
            if len(pending) == 0 and self._speech:
                pending = self._speech.pop(0)
            if len(pending):
                chunk, pending = pending[:n], pending[n:]
                if len(chunk) < n:
                    chunk = np.concatenate([chunk, silence[: n - len(chunk)]])
            else:
                chunk = silence
            self.sup.on_mic_chunk(chunk)


@asynccontextmanager
async def rig(
    sim_config: SimConfig | None = None,
    *,
    api_key: str | None = None,
    tools: ToolRegistry | None = None,
    audio_speed: float = 1.0,
    start: bool = True,
    uplink: SlowUplink | None = None,
    clock: Callable[[], datetime.datetime] | None = None,
    **changes: Any,
) -> AsyncIterator[Rig]:
    """Start the simulator, a Supervisor against it, the fake audio port and the mic feed.

    `uplink`: a SlowUplink (not started) the supervisor connects through; its target is set here.
    `clock`: the wall clock the supervisor tells sessions (default the box's).
    """
    sim = Simulator(sim_config or SimConfig(ping_interval_s=0.3))
    await sim.start()
    if uplink is not None:
        uplink.target = ("127.0.0.1", sim.port)
        await uplink.start()
    keys = {**FAST, "agent.api_base": uplink.url if uplink is not None else sim.url}
    keys.update({k.replace("__", "."): v for k, v in changes.items()})
    cfg: Config = with_changes(Config(), **keys)
    audio = RecordingAudio(speed=audio_speed)
    logs = LogRecords()
    logger = logging.getLogger("voicebox.convai")
    logger.addHandler(logs)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    holder: list[Rig] = []
    sup = Supervisor(
        cfg,
        audio,
        Secret(api_key) if api_key else None,
        tools if tools is not None else builtin_tools(audio),
        lambda s, f: holder[0].on_state(s, f),
        clock=clock or local_now,
    )
    r = Rig(sim, sup, audio, logs)
    holder.append(r)
    await audio.start(sup.on_mic_chunk)
    mic = asyncio.create_task(r.mic())
    runner = asyncio.create_task(sup.run()) if start else None
    r.runner = runner  # type: ignore[attr-defined]
    try:
        yield r
    finally:
        mic.cancel()
        await sup.stop()
        if runner is not None:
            async with asyncio.timeout(10):
                await runner
        await audio.stop()
        if uplink is not None:
            await uplink.stop()
        await sim.stop()
        logger.removeHandler(logs)
        logger.setLevel(old_level)
