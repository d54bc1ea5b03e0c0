"""The conversation WebSocket: URL and signed-URL fetch, the handshake, and one session's I/O loop.

`open_socket` connects (fetching a signed URL first for private agents, so the API key travels
only in the `xi-api-key` header of that HTTPS request) and raises `ConnectFailure` carrying the
classified end on any failure. `SessionLink` runs one `Session` over one socket: the receive loop
(decode, pong first, then the session's actions), a sender for mic frames, the session's timers,
client tools as tasks, and a prober: a WebSocket ping every probe interval while the session
lives, each pong confirming the mic audio written before its ping (voicebox.convai.replay), and
no pong within the probe timeout of the ping's write declaring the link half-open.

The sender keeps at most WINDOW_BYTES written and not yet confirmed by a pong (a ping goes out
when half of it is used): what waits ahead of a ping in the socket's buffers is bounded, so a
slow but working uplink answers probes in time, and a burst (the replay after an outage) is
paced by the link's own pongs instead of being handed to the kernel at once. Frames that do not
fit wait in the link's queue; the oldest are dropped only when the queue is full, which is
logged (`mic.dropped`, once per episode) and counted (`out_dropped`).

Memory is bounded whatever the service sends. The largest legitimate event is an `audio` event
holding one utterance: pcm_48000 is 96,000 B/s, 128,000 B/s in base64, and the alignment adds
~15 B per character (~0.2 kB/s); a 10 s utterance in one event is 1.28 MB (the SDK's old 1 MiB
limit broke on a long first message, elevenlabs-python #482). MAX_FRAME = 2 MiB holds 16 s of
pcm_48000 (49 s of pcm_16000); text events (transcripts, tool calls, metadata) are kilobytes.
websockets pauses reading once MAX_QUEUE frames wait, so at most MAX_QUEUE frames plus the one
being read are held: QUEUE_BYTES = (MAX_QUEUE + 1) * MAX_FRAME = 6 MiB (was 65 * 16 MiB). A
larger frame fails the connection with 1009 before its payload is read; it is counted
(`oversize_frames`), logged once as `frame.oversize`, and the session reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State as WsState

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover (the C speedups are missing on this platform)
    from websockets.utils import apply_mask

from voicebox.audio.port import AudioPort, Chunk
from voicebox.config import AgentConfig, Secret, api_base_problem
from voicebox.convai import messages
from voicebox.convai.policy import EndClass, SessionEnd, classify_end
from voicebox.convai.replay import FrameWindow, MicFrame
from voicebox.convai.session import (
    Action,
    Close,
    EndReply,
    Heard,
    Interrupt,
    LogEvent,
    Play,
    Ready,
    RunTool,
    Send,
    Session,
    SetInputFormat,
    SetOutputFormat,
)
from voicebox.convai.tools import ToolRegistry
from voicebox.logs import event

log = logging.getLogger("voicebox.convai")

CONVERSATION_PATH = "/v1/convai/conversation"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
MAX_FRAME = 2 * 1024 * 1024  # see the module docstring for the arithmetic
MAX_QUEUE = 2  # frames waiting for the receive loop before websockets stops reading
QUEUE_BYTES = (MAX_QUEUE + 1) * MAX_FRAME
CLOSE_TIMEOUT_S = 2.0
KEEPALIVE_S = 10.0
TOOL_TIMEOUT_S = 20.0
PROBE_INTERVAL_S = 1.0  # defaults until the tuner says otherwise (tuning.probe_timing)
PROBE_TIMEOUT_S = 1.5
TICK_S = 0.1
TICK_CHECK_S = 0.5  # while mic chunks run the ticks, the ticker task only checks they still do
OUT_QUEUE = 256  # mic frames waiting for the socket (~5 s of 20 ms chunks) beyond a replay
WINDOW_BYTES = 32 * 1024  # written, no pong yet: ~0.5 s ahead of a ping on a 60 kB/s uplink
PING_AT_BYTES = WINDOW_BYTES // 2  # unconfirmed bytes that call for a ping before the interval
WRITE_BUFFER_MAX = 64 * 1024  # above this the socket is slow: frames wait in the queue
MASK_POOL = 4096  # bytes of os.urandom fetched at once for client frame masks (1024 frames)


@dataclass(slots=True)
class _Ping:
    """One link probe in flight: when it was written and what was written before it."""

    sent_at: float  # loop time the ping was written
    seq: int  # the newest mic frame written before it
    written: int  # bytes written before it


class ConnectFailure(Exception):
    """A session could not be opened; `end` says why and how to retry."""

    def __init__(self, end: SessionEnd) -> None:
        super().__init__(end.reason)
        self.end = end


class BadUrl(ValueError):
    """agent.api_base cannot make a URL to connect to (a configuration problem)."""


def _base(api_base: str) -> urllib.parse.SplitResult:
    """api_base split, or BadUrl: checked as check-config checks it (scheme, host, IDNA, port)."""
    problem = api_base_problem(api_base)
    if problem is not None:
        raise BadUrl(problem)
    return urllib.parse.urlsplit(api_base)


def conversation_url(api_base: str, agent_id: str) -> str:
    """The WebSocket URL for a public agent: https->wss, http->ws, agent_id quoted."""
    parts = _base(api_base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + CONVERSATION_PATH
    query = urllib.parse.urlencode({"agent_id": agent_id}, quote_via=urllib.parse.quote)
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, query, ""))


def signed_url_request(api_base: str, agent_id: str) -> str:
    parts = _base(api_base)
    path = parts.path.rstrip("/") + SIGNED_URL_PATH
    query = urllib.parse.urlencode({"agent_id": agent_id}, quote_via=urllib.parse.quote)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _network_failure(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    return "network"


class _HttpStatus(Exception):
    def __init__(self, status: int, retry_after: str | None) -> None:
        self.status = status
        self.retry_after = retry_after


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is not followed (urllib would copy xi-api-key to the new URL, whatever its
    host or scheme): it stays an HTTPError, classified like any other refused request."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


def _fetch_signed_url_blocking(url: str, key: str, timeout: float) -> str:
    req = urllib.request.Request(url, headers={"xi-api-key": key, "Accept": "application/json"})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            body = json.loads(resp.read(1 << 20))
    except urllib.error.HTTPError as exc:
        with exc:  # closes the error response's socket
            raise _HttpStatus(exc.code, exc.headers.get("Retry-After")) from None
    signed = body.get("signed_url") if isinstance(body, dict) else None
    if not isinstance(signed, str) or not signed.startswith(("ws://", "wss://")):
        raise ValueError("get-signed-url answered without a ws(s) signed_url")
    return signed


def connect_end(exc: Exception) -> SessionEnd | None:
    """The classified end of a failure to open a session (building the URL from the config, the
    signed-URL fetch, the handshake); None for an exception none of these raise (a bug)."""
    if isinstance(exc, BadUrl):
        return classify_end(failure="bad_url", error_message=str(exc))
    if isinstance(exc, _HttpStatus):
        return classify_end(http_status=exc.status, retry_after_s=_retry_after(exc.retry_after))
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return classify_end(
            http_status=response.status_code,
            retry_after_s=_retry_after(response.headers.get("Retry-After")),
        )
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(exc.reason)
        return classify_end(failure=_network_failure(reason))
    if isinstance(exc, OSError | TimeoutError):
        return classify_end(failure=_network_failure(exc))
    if isinstance(exc, http.client.HTTPException | WebSocketException | ValueError):
        # Garbage from the peer: not HTTP (BadStatusLine), a broken handshake, bad JSON.
        detail = str(exc).strip() or type(exc).__name__
        return classify_end(failure="protocol", error_message=detail[:200])
    return None


def _failure(exc: Exception, what: str = "") -> ConnectFailure:
    end = connect_end(exc)
    if end is None:
        raise exc
    prefix = f"{what}: " if what else ""
    return ConnectFailure(SessionEnd(end.end_class, prefix + end.reason, end.retry_after_s))


async def fetch_signed_url(agent: AgentConfig, api_key: Secret | None) -> str:
    """GET get-signed-url with the key in the xi-api-key header; ConnectFailure on error."""
    if not api_key:
        raise ConnectFailure(
            SessionEnd(
                EndClass.CONFIG,
                "agent.requires_auth is set but no API key was found (systemd credential "
                "elevenlabs_api_key, $ELEVENLABS_API_KEY or agent.api_key_file)",
            )
        )
    try:
        url = signed_url_request(agent.api_base, agent.agent_id)
        return await asyncio.to_thread(
            _fetch_signed_url_blocking, url, api_key.reveal(), agent.connect_timeout_s
        )
    except Exception as exc:  # connect_end classifies, or _failure re-raises a bug
        raise _failure(exc, "signed URL") from None


async def open_socket(agent: AgentConfig, api_key: Secret | None) -> ClientConnection:
    """Connect to the agent; ConnectFailure(end) on any failure."""
    if not agent.agent_id.strip():
        raise ConnectFailure(SessionEnd(EndClass.CONFIG, "agent.agent_id is not set"))
    if agent.requires_auth:
        url = await fetch_signed_url(agent, api_key)
    else:
        try:
            url = conversation_url(agent.api_base, agent.agent_id)
        except BadUrl as exc:
            raise _failure(exc) from None
    try:
        return await connect(
            url,
            open_timeout=agent.connect_timeout_s,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=MAX_FRAME,
            compression=None,
            ping_interval=KEEPALIVE_S,
            ping_timeout=KEEPALIVE_S,
            max_queue=MAX_QUEUE,
        )
    except Exception as exc:  # connect_end classifies, or _failure re-raises a bug
        raise _failure(exc) from None


class LatencyStats:
    """Recent latencies in ms, bounded."""

    def __init__(self, size: int = 2048) -> None:
        self.values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self.values.append(seconds * 1000.0)

    def summary(self) -> dict[str, float]:
        if not self.values:
            return {}
        v = sorted(self.values)

        def pick(q: float) -> float:
            return v[min(len(v) - 1, int(q * len(v)))]

        return {
            "p50_ms": round(pick(0.5), 3),
            "p99_ms": round(pick(0.99), 3),
            "max_ms": round(v[-1], 3),
            "n": float(len(v)),
        }


class SessionLink:
    """One session over one open socket."""

    def __init__(
        self,
        ws: ClientConnection,
        session: Session,
        audio: AudioPort,
        tools: ToolRegistry,
        *,
        receive_timeout_s: Callable[[], float],
        on_ready: Callable[[SessionLink], None] | None = None,
        on_tick: Callable[[SessionLink], None] | None = None,
        on_heard: Callable[[str], None] | None = None,
        tool_timeout_s: float = TOOL_TIMEOUT_S,
        mic_to_wire: LatencyStats | None = None,
        pong_latency: LatencyStats | None = None,
        round_trip: LatencyStats | None = None,
        probe_timing: Callable[[], tuple[float, float]] | None = None,
        probe_rtt: LatencyStats | None = None,
        replay_s: float = 5.0,
    ) -> None:
        self.ws = ws
        self.session = session
        self.audio = audio
        self.tools = tools
        self._receive_timeout = receive_timeout_s
        self._on_ready = on_ready
        self._on_tick = on_tick
        self._on_heard = on_heard
        self._tool_timeout = tool_timeout_s
        self._loop = asyncio.get_running_loop()
        self._out: deque[tuple[str | bytes, float | None, int]] = deque()  # frame, t0, seq
        self._out_max = OUT_QUEUE
        self._out_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probe_timing = probe_timing or (lambda: (PROBE_INTERVAL_S, PROBE_TIMEOUT_S))
        self.probe_rtt = probe_rtt if probe_rtt is not None else LatencyStats(256)
        self.unconfirmed = FrameWindow(replay_s)  # mic frames sent, no pong since
        self.alive_at = -1e9  # loop time of the last pong (the link last proved it reads)
        self._closing: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        self.out_dropped = 0
        self._dropping = 0  # frames dropped since the queue last ran empty
        self.written_seq = -1  # the newest mic frame handed to the socket
        self.written_bytes = 0  # bytes handed to the socket
        self._acked_bytes = 0  # of them, written before a ping whose pong came back
        self._inflight: _Ping | None = None
        self._ping_wanted = False
        self._acked = asyncio.Event()
        self.mic_to_wire = mic_to_wire if mic_to_wire is not None else LatencyStats()
        self.pong_latency = pong_latency if pong_latency is not None else LatencyStats()
        self.round_trip = round_trip if round_trip is not None else LatencyStats(64)
        self.probes = 0
        self.oversize = False  # the service sent a frame larger than MAX_FRAME
        self.last_frame_at = self._loop.time()
        self.task: asyncio.Task[None] | None = None
        self._ticked_at = self.last_frame_at
        self._mic_ticked = False  # a mic chunk ran the tick since the ticker task last looked
        # Text frames are written here, not through websockets' Frame objects (see _queue);
        # only when no extension (compression) would have to transform them.
        self._raw = not ws.protocol.extensions
        self._head_len = -1
        self._head = b""
        self._masks = b""
        self._mask_at = 0

    # --- public --------------------------------------------------------------------------------

    def now(self) -> float:
        return self._loop.time()

    def send_mic(
        self,
        chunk: Chunk,
        rate: int,
        live: bool,
        t0: float | None = None,
        seq: int | None = None,
        replayed: bool = False,
    ) -> None:
        """Encode and queue one mic chunk (non-blocking; called on the loop).

        A live chunk numbered `seq` is kept (a copy) until a pong confirms it; `replayed`: it is
        a replay of a frame an ended link sent (never replayed again). Mic chunks also run the
        session's tick when it is due, so a live conversation needs no wakeup of its own for the
        timers (see _ticker).
        """
        now = self._loop.time()
        frame = self.session.mic_frame(chunk, rate, live, now)
        if frame is not None:
            if live and seq is not None and not self.done.is_set():
                self.unconfirmed.push(MicFrame(seq, chunk.copy(), rate, replayed))
            self._queue(frame, t0, seq if seq is not None else -1)
        if now - self._ticked_at >= TICK_S:
            self._mic_ticked = True
            self._tick(now)

    def reserve(self, frames: int) -> None:
        """Room in the send queue for `frames` more (a replay) on top of OUT_QUEUE."""
        self._out_max = OUT_QUEUE + max(0, frames)

    @property
    def unacked_bytes(self) -> int:
        """Bytes written that no pong has confirmed yet."""
        return self.written_bytes - self._acked_bytes

    def act(self, actions: list[Action]) -> None:
        """Carry out actions from outside the receive loop (sends are queued)."""
        for a in actions:
            if type(a) is Send:
                self._queue(a.frame, None)
            else:
                self._local(a)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session ourselves (idempotent); returns when the socket is closed."""
        if not self.done.is_set():
            self.act(self.session.close(code, reason))
        await self.done.wait()

    async def run(self) -> None:
        """Run until the socket closes; the outcome is recorded in the session."""
        session = self.session
        try:
            for a in session.open(self.now()):
                if type(a) is Send:
                    await self.ws.send(a.frame)
            self._spawn(self._sender())
            self._spawn(self._ticker())
            self._spawn(self._prober())
            await self._receive()
        except ConnectionClosed as exc:
            self._record_close(exc)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._dropping:
                self._log_dropped()
            if session.closed_at is None:
                code = self.ws.close_code
                session.closed(
                    code if code != 1006 else None, self.ws.close_reason or "", self.now()
                )
            if session.in_reply:  # what already arrived of the reply plays out; no underrun
                session.in_reply = False
                self.audio.end_reply()
            self.done.set()
            if self.ws.state.name != "CLOSED":
                self.ws.transport.abort()

    # --- internals -----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _queue(self, frame: str | bytes, t0: float | None, seq: int = -1) -> None:
        """Send a text frame (str, or its UTF-8 bytes) now if the socket keeps up and the window
        has room, else queue it; `seq` numbers a mic frame (-1: not one)."""
        if self.done.is_set():
            return
        ws = self.ws
        protocol = ws.protocol
        if (
            not self._out
            and protocol.state is WsState.OPEN
            and self.written_bytes - self._acked_bytes < WINDOW_BYTES
            and ws.transport.get_write_buffer_size() < WRITE_BUFFER_MAX
        ):
            # Fast path: nothing queued and the socket keeps up, so write the frame now (no task
            # switch per mic chunk). Without extensions and with nothing pending in the protocol,
            # the masked frame is built here, which is what protocol.send_text() would write
            # minus its per-frame Frame object, checks and buffer; else the protocol writes it.
            data = frame.encode() if type(frame) is str else frame
            assert isinstance(data, bytes)
            if self._raw and not protocol.writes:
                self._write_text(data)
            else:
                protocol.send_text(data)
                ws.send_data()
            self._wrote(len(data), seq)
            if t0 is not None:
                self.mic_to_wire.add(time.perf_counter() - t0)
            return
        if len(self._out) >= self._out_max:
            self._out.popleft()
            self.out_dropped += 1
            self._dropping += 1
            if self._dropping == 1:
                event(
                    log,
                    "mic.dropped",
                    logging.WARNING,
                    conversation_id=self.session.conversation_id,
                    queued=len(self._out),
                    unacked_bytes=self.unacked_bytes,
                    reason="send queue full: the uplink is slower than the mic",
                )
        self._out.append((frame, t0, seq))
        self._out_ready.set()

    def _log_dropped(self) -> None:
        event(
            log,
            "mic.dropped_end",
            logging.WARNING,
            conversation_id=self.session.conversation_id,
            dropped=self._dropping,
            out_dropped=self.out_dropped,
        )
        self._dropping = 0

    def _wrote(self, nbytes: int, seq: int) -> None:
        """A frame went to the socket: account for it, and ask for a ping at half the window."""
        self.written_bytes += nbytes + 8  # and its header and mask, near enough
        if seq > self.written_seq:
            self.written_seq = seq
        if self._inflight is None and self.unacked_bytes >= PING_AT_BYTES:
            self._ping_wanted = True
            self._out_ready.set()

    def _write_text(self, data: bytes) -> None:
        """One masked, unfragmented text frame straight to the transport (RFC 6455 5.2)."""
        n = len(data)
        if n != self._head_len:
            if n < 126:
                head = bytes((0x81, 0x80 | n))
            elif n < 1 << 16:
                head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
            else:
                head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
            self._head, self._head_len = head, n
        i = self._mask_at
        if i >= len(self._masks):
            self._masks, i = os.urandom(MASK_POOL), 0
        mask = self._masks[i : i + 4]
        self._mask_at = i + 4
        self.ws.transport.write(self._head + mask + apply_mask(data, mask))

    async def _sender(self) -> None:
        """Writes queued frames while the window has room; pings when half of it is used."""
        out = self._out
        ws = self.ws
        try:
            while True:
                if self._ping_wanted and self._inflight is None:
                    await self._send_ping()
                if not out:
                    if self._dropping:
                        self._log_dropped()
                    self._out_ready.clear()
                    await self._out_ready.wait()
                    continue
                if self.unacked_bytes >= WINDOW_BYTES:
                    if self._inflight is None:
                        await self._send_ping()
                    self._acked.clear()
                    await self._acked.wait()  # a pong, or the prober ends the link
                    continue
                frame, t0, seq = out.popleft()
                await ws.send(frame, text=True)
                self._wrote(len(frame), seq)  # str length: near enough for the window
                if t0 is not None:
                    self.mic_to_wire.add(time.perf_counter() - t0)
        except ConnectionClosed:
            return

    async def _send_ping(self) -> _Ping:
        """Write a ping now; its pong confirms the mic frames written before it."""
        self._ping_wanted = False
        ping = _Ping(self.now(), self.written_seq, self.written_bytes)
        self._inflight = ping
        self.probes += 1
        try:
            waiter = await self.ws.ping()
            assert isinstance(waiter, asyncio.Future)
        except ConnectionClosed:
            self._inflight = None
            raise
        ping.sent_at = self.now()
        waiter.add_done_callback(lambda fut: self._on_pong(ping, fut))
        return ping

    def _on_pong(self, ping: _Ping, fut: asyncio.Future[float]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # the connection closed: run() records how
        now = self.now()
        latency = fut.result()
        self.alive_at = now
        self.unconfirmed.confirm(ping.seq)
        self._acked_bytes = max(self._acked_bytes, ping.written)
        self.probe_rtt.add(latency if latency > 0 else now - ping.sent_at)
        if self._inflight is ping:
            self._inflight = None
        self._acked.set()
        if self.unacked_bytes >= PING_AT_BYTES:  # more went out meanwhile: confirm it too
            self._ping_wanted = True
            self._out_ready.set()

    async def _ticker(self) -> None:
        """Runs the tick every TICK_S unless mic chunks do (send_mic); then it only checks every
        TICK_CHECK_S that they still do, so a live conversation has no timer wakeups."""
        wait = TICK_S
        while True:
            await asyncio.sleep(wait)
            now = self.now()
            if self._mic_ticked:
                self._mic_ticked = False
                if now - self._ticked_at < 2 * TICK_S:  # and they still do
                    wait = TICK_CHECK_S
                    continue
            self._tick(now)
            wait = TICK_S

    def _tick(self, now: float) -> None:
        """Session timers, the receive watchdog and the owner's periodic check."""
        self._ticked_at = now
        if self.done.is_set():
            return
        self.act(self.session.tick(now, self.audio.playing))
        if self._on_tick is not None:
            self._on_tick(self)

    def _record_close(self, exc: ConnectionClosed) -> None:
        rcvd = exc.rcvd
        sent = exc.sent
        if rcvd is None and sent is not None and sent.code == 1009:  # our limit, not theirs
            self.oversize = True
            self.session.failure = "oversize"
        self.session.closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "", self.now())

    async def _receive(self) -> None:
        ws = self.ws
        session = self.session
        decode = messages.decode_server
        play = self.audio.play
        loop = self._loop
        while True:
            frame = await ws.recv()
            t_recv = time.perf_counter()
            self.last_frame_at = now = loop.time()
            ev = decode(frame)
            if type(ev) is messages.UserTranscript:  # the turn was heard (voicebox.convai.replay)
                self.unconfirmed.confirm(self.written_seq)
            for a in session.receive(ev, now):
                if type(a) is Play:  # most frames are agent audio
                    play(a.data)
                elif type(a) is Send:
                    await ws.send(a.frame)
                    if type(ev) is messages.Ping:
                        self.pong_latency.add(time.perf_counter() - t_recv)
                        self._sample_round_trip(ev)
                else:
                    self._local(a)

    def _sample_round_trip(self, ev: messages.ServerEvent) -> None:
        """The link's round trip: the service's own estimate, else our keepalive's."""
        assert isinstance(ev, messages.Ping)
        if ev.ping_ms is not None and ev.ping_ms >= 0:
            self.round_trip.add(ev.ping_ms / 1000.0)
        elif self.ws.latency > 0:
            self.round_trip.add(self.ws.latency)

    def _local(self, a: Action) -> None:
        t = type(a)
        if t is Play:
            assert isinstance(a, Play)
            self.audio.play(a.data)
        elif t is Interrupt:
            self.audio.interrupt()
        elif t is EndReply:
            self.audio.end_reply()
        elif t is RunTool:
            assert isinstance(a, RunTool)
            self._spawn(self._run_tool(a))
        elif t is SetOutputFormat:
            assert isinstance(a, SetOutputFormat)
            self.audio.set_output_format(a.fmt)
        elif t is SetInputFormat:
            assert isinstance(a, SetInputFormat)
            self.audio.set_input_format(a.fmt)
        elif t is Ready:
            self.ready.set()
            if self._on_ready is not None:
                self._on_ready(self)
        elif t is Close:
            assert isinstance(a, Close)
            if self._closing is None:
                self._closing = asyncio.create_task(self._close(a.code, a.reason))
        elif t is LogEvent:
            assert isinstance(a, LogEvent)
            event(log, a.name, a.level, **a.fields)
        elif t is Heard:
            assert isinstance(a, Heard)
            if self._on_heard is not None:
                self._on_heard(a.text)
        elif t is Send:
            assert isinstance(a, Send)
            self._queue(a.frame, None)

    async def _close(self, code: int, reason: str) -> None:
        # Frames already queued (tool results, last audio) go out before the close frame.
        for _ in range(20):
            if not self._out:
                break
            await asyncio.sleep(0.005)
        try:
            await self.ws.close(code, reason)
        except Exception:  # closing a broken socket: run() records the outcome
            self.ws.transport.abort()

    async def _run_tool(self, call: RunTool) -> None:
        result, is_error = await self.tools.run(call.name, call.parameters, self._tool_timeout)
        self.act(self.session.tool_result(call.tool_call_id, result, is_error))

    async def _prober(self) -> None:
        """A ping every probe interval; its pong confirms the mic audio sent before it. No pong
        within the probe timeout: the link is half-open (the peer's WebSocket stack answers
        pings by itself, so a quiet but healthy service is never taken for dead)."""
        while True:
            interval, timeout = self._probe_timing()
            await asyncio.sleep(interval)
            try:
                ping = self._inflight or await self._send_ping()
            except ConnectionClosed:
                return
            # Timed from the ping's write: the window bounds what waits ahead of it.
            while self._inflight is ping:
                left = ping.sent_at + timeout - self.now()
                if left <= 0:
                    self._half_open(timeout)
                    return
                self._acked.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._acked.wait()
            now = self.now()
            if (
                self.session.expecting_frames()
                and now - self.last_frame_at >= self._receive_timeout()
            ):
                self.session.link_ok()  # a reply was due, but the service is only slow

    def _half_open(self, timeout: float) -> None:
        self.session.failure = "half_open"
        event(
            log,
            "link.half_open",
            logging.WARNING,
            conversation_id=self.session.conversation_id,
            waited_s=round(timeout, 2),
            silent_s=round(self.now() - max(self.alive_at, self.last_frame_at), 2),
        )
        self.ws.transport.abort()
