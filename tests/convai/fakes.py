"""A recording AudioPort for the conversation engine's tests (tests only).

Played audio "plays out" at `speed` times real time on the event loop, so `playing` and `drain`
behave like a device; everything the engine asks of audio is recorded in order in `events`.
"""

from __future__ import annotations

import asyncio
from collections import deque

from voicebox.audio.formats import PCM_16000, AudioFormat
from voicebox.audio.port import AudioStats, OnChunk


class RecordingAudio:
    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._input = PCM_16000
        self.output = PCM_16000
        self.volume = 1.0
        self.prebuffer_ms = 0
        self.queue: deque[bytes] = deque()
        self.played = bytearray()  # bytes that reached the "speaker"
        self.received = bytearray()  # every byte given to play()
        self.events: list[tuple[str, object]] = []
        self.interrupts = 0
        self.on_chunk: OnChunk | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def input_format(self) -> AudioFormat:
        return self._input

    async def start(self, on_chunk: OnChunk) -> None:
        self.on_chunk = on_chunk
        self._task = asyncio.create_task(self._playout())

    def set_input_format(self, fmt: AudioFormat) -> None:
        self._input = AudioFormat("pcm", fmt.rate)
        self.events.append(("input_format", fmt.name))

    def set_output_format(self, fmt: AudioFormat) -> None:
        self.output = fmt
        self.events.append(("output_format", fmt.name))

    def play(self, data: bytes) -> None:
        self.queue.append(bytes(data))
        self.received += data
        self.events.append(("play", bytes(data)))

    def end_reply(self) -> None:
        self.events.append(("end_reply", None))

    def interrupt(self) -> None:
        self.queue.clear()
        self.interrupts += 1
        self.events.append(("interrupt", None))

    @property
    def playing(self) -> bool:
        return bool(self.queue)

    async def drain(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while self.queue:  # noqa: ASYNC110 (the playout task empties it)
                    await asyncio.sleep(0.005)
        except TimeoutError:
            return False
        self.events.append(("drained", None))
        return True

    def set_volume(self, volume: float) -> None:
        self.volume = volume

    def set_prebuffer_ms(self, ms: int) -> None:
        self.prebuffer_ms = ms

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def stats(self) -> AudioStats:
        return AudioStats(interrupts=self.interrupts)

    async def _playout(self) -> None:
        tick = 0.01
        while True:
            await asyncio.sleep(tick)
            budget = int(self.output.rate * self.output.bytes_per_sample * tick * self.speed)
            while budget > 0 and self.queue:
                head = self.queue[0]
                take = head[:budget]
                self.played += take
                budget -= len(take)
                if len(take) == len(head):
                    self.queue.popleft()
                else:
                    self.queue[0] = head[len(take) :]
