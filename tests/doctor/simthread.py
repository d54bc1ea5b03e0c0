"""The simulator on its own event loop in a thread, for code under test that blocks (REST, pty)."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from voicebox.simulator.server import SimConfig, Simulator


class SimThread:
    """`with SimThread(SimConfig(...)) as sim: sim.url` -- a live simulator on 127.0.0.1."""

    def __init__(self, config: SimConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.config = config
        self.sim: Simulator | None = None

    def __enter__(self) -> SimThread:
        self.thread.start()

        async def start() -> Simulator:
            sim = Simulator(self.config)
            await sim.start()
            return sim

        self.sim = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    @property
    def url(self) -> str:
        assert self.sim is not None
        return self.sim.url

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.sim is not None:
            asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
