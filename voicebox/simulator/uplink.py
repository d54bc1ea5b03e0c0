"""`SlowUplink`: a loopback TCP proxy whose client-to-server direction is paced to a byte rate.

The network between the box and the service, as the tests and benches need it: a slow uplink
(bytes from the client forwarded at `rate` bytes/s, the way a congested upload link drains),
and outages (`down(seconds)`: every connection dropped, new ones refused until it is over).
The server-to-client direction is not paced.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

READ_BYTES = 2048  # forwarded per step, so the pace is smooth at tens of kB/s


class SlowUplink:
    """Proxy 127.0.0.1:port -> target, client-to-server paced to `rate` bytes/s (None: not)."""

    def __init__(self, target_host: str, target_port: int, rate: float | None) -> None:
        self.target = (target_host, target_port)
        self.rate = rate
        self.port = 0
        self.connections = 0
        self.forwarded = 0  # client-to-server bytes
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._down_until = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def down(self, seconds: float) -> None:
        """An outage: drop every connection now and refuse new ones for `seconds`."""
        self._down_until = time.monotonic() + seconds
        self._drop_all()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._down_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, self.rate)),
            asyncio.create_task(self._pump(up_reader, writer, None)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float | None
    ) -> None:
        started = time.monotonic()
        sent = 0
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(READ_BYTES if rate else 65536):
                writer.write(data)
                await writer.drain()
                if rate:
                    sent += len(data)
                    self.forwarded += len(data)
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    elif ahead < -0.5:  # idle a while: no credit saved up for a burst
                        started, sent = time.monotonic(), 0
