"""A raw convai client for the simulator tests: records decoded events, answers pings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebox.convai import messages as m
from voicebox.simulator.voice import silence, speech_like

T = TypeVar("T")
CHUNK = 320  # 20 ms at 16 kHz


def utterance(speech_s: float = 1.0, silence_s: float = 1.0, rate: int = 16000) -> np.ndarray:
    """A speech-like user turn followed by enough silence to end it."""
    return np.concatenate([speech_like(speech_s, rate, f0=120.0), silence(silence_s, rate)])


class RawClient:
    def __init__(self, ws: ClientConnection, *, auto_pong: bool = True) -> None:
        self.ws = ws
        self.auto_pong = auto_pong
        self.events: list[Any] = []
        self.closed: ConnectionClosed | None = None  # set when the close was not 1000/1001
        self.done = False
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for frame in self.ws:
                event = m.decode_server(frame)
                self.events.append(event)
                if isinstance(event, m.Ping) and self.auto_pong:
                    await self.ws.send(m.pong(event.event_id))
                self._changed.set()
        except ConnectionClosed as exc:
            self.closed = exc
        finally:
            self.done = True
            self._changed.set()

    @property
    def close_code(self) -> int | None:
        """The close code the server sent (1006 when there was no close frame)."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    def of(self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                if predicate():
                    return
                await self._changed.wait()

    async def wait_event(self, kind: type[T], count: int = 1, timeout: float = 15.0) -> T:
        await self.wait_for(lambda: len(self.of(kind)) >= count, timeout)
        return self.of(kind)[count - 1]

    async def wait_closed(self, timeout: float = 15.0) -> int | None:
        await self.wait_for(lambda: self.done, timeout)
        return self.close_code

    async def send_audio(self, samples: np.ndarray) -> None:
        data = samples.astype("<i2").tobytes()
        for i in range(0, len(data), CHUNK * 2):
            await self.ws.send(m.user_audio_chunk(data[i : i + CHUNK * 2]))
            await asyncio.sleep(0)

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5)


@contextlib.asynccontextmanager
async def convai(
    url: str,
    *,
    initiation: str | None = None,
    agent_id: str = "agent_test",
    auto_pong: bool = True,
    **connect_kwargs: Any,
) -> AsyncIterator[RawClient]:
    """Connect to the simulator's convai socket and send the initiation frame."""
    target = url if "?" in url else f"{url}/v1/convai/conversation?agent_id={agent_id}"
    async with connect(target, **connect_kwargs) as ws:
        client = RawClient(ws, auto_pong=auto_pong)
        with contextlib.suppress(ConnectionClosed):  # the server may refuse at once
            await ws.send(initiation if initiation is not None else m.initiation())
        try:
            yield client
        finally:
            client._task.cancel()
