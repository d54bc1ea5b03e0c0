"""The simulated agent server: convai WebSocket, signed-URL REST endpoint and TTS routing.

One `websockets` server on loopback serves the same paths as api.elevenlabs.io, so the daemon
works unchanged with `agent.api_base: http://127.0.0.1:PORT`:

    GET /v1/convai/conversation/get-signed-url?agent_id=A   -> {"signed_url": "ws://.../v1/convai/
                                                               conversation?agent_id=A&
                                                               conversation_signature=S"}
    GET /v1/convai/agents/{agent_id}                        -> the agent's settings (agents.py)
    WS  /v1/convai/conversation?agent_id=A[&conversation_signature=S]
    WS  /v1/text-to-speech/{voice_id}/stream-input          -> voicebox.simulator.tts.serve_tts

Per conversation the agent greets (unless the initiation overrides first_message with ""), pings
every `ping_interval_s`, detects the user's turns with an energy VAD on the received audio,
answers each turn with transcripts, a text response and a synthetic voice streamed faster than
real time, handles barge-in (interruption + correction), client tool calls, end_call and the
duration cap. Faults (see voicebox.simulator.faults for the `N:KIND[:ARG]` grammar) are applied
per connection. Tests drive it through `Simulator` and its records; `voicebox simulate` runs it
in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import re
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import numpy as np
import numpy.typing as npt
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voicebox import logs
from voicebox.audio.formats import AudioFormat, decode, encode
from voicebox.convai import messages as m
from voicebox.simulator import chaos
from voicebox.simulator.agents import (
    AGENTS_PATH,
    TOOLS_PATH,
    ToolListing,
    agent_settings,
    builtin_names,
    tool_config,
    tool_name,
)
from voicebox.simulator.bursts import BurstLog
from voicebox.simulator.faults import OVERSIZE_BYTES, QUOTA_MESSAGE, Fault, FaultError, parse_fault
from voicebox.simulator.vad import EnergyVad, SpeechEnd, SpeechStart
from voicebox.simulator.voice import speech_bytes

log = logging.getLogger("voicebox.simulator")

CONVAI_PATH = "/v1/convai/conversation"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
TTS_PATH = re.compile(r"^/v1/text-to-speech/([^/]+)/(stream-input|multi-stream-input)$")

# What the "malformed" fault sends, one frame each: every way a server frame can be bad.
MALFORMED_BURST: tuple[str | bytes, ...] = (
    "{this is not json",
    b"\x00\x01\x02 binary frame",
    '["not", "an", "object"]',
    '{"no_type": true}',
    '{"type": "audio"}',
    '{"type": "audio", "audio_event": {"audio_base_64": "@@not base64@@", "event_id": 1}}',
    '{"type": "ping", "ping_event": {"event_id": "seven"}}',
    '{"type": "sim_unknown_event", "sim_unknown_event": {}}',
)


@dataclass(frozen=True)
class SimConfig:
    """How the simulated agent behaves. Times are seconds unless the name says otherwise."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port
    api_key: str | None = None  # required (xi-api-key) for signed URLs when set
    agent_ids: frozenset[str] | None = None  # None accepts any agent id
    overrides_disabled: frozenset[str] = frozenset()  # agents whose settings allow no override
    # the client tools the agents declare (get-agent); None: the daemon's built-in tools
    client_tools: tuple[str, ...] | None = None
    tool_listing: ToolListing = "inline"  # inline, ids, or ids_unreadable (simulator.agents)
    require_signature: bool = False  # a private agent: the socket needs a signed URL
    output_format: str = "pcm_16000"
    input_format: str = "pcm_16000"
    max_duration_s: float = 600.0
    ping_interval_s: float = 2.0
    initiation_timeout_s: float = 10.0
    metadata_delay_s: float = 0.0
    first_message: str = "Hello, this is the voicebox simulator."
    reply_delay_s: float = 0.1  # the "LLM" thinking before each reply
    seconds_per_char: float = 0.05  # voice length per character of reply text
    max_reply_s: float = 6.0
    chunk_ms: int = 100  # audio per `audio` event
    lead_s: float = 1.0  # how far ahead of real-time playout the sender runs (bursts)
    vad_threshold_dbfs: float = -40.0
    vad_hangover_ms: int = 600
    interruptions: bool = True
    voice_harmonics: int = 5  # the agent's voice: 5 stays under 1 kHz, 20 is as wide as a voice
    # The agent's voice for a reply's text at a sample rate, int16 mono (e.g. espeak-ng, so the
    # words can be heard); None: speech-like audio whose length follows seconds_per_char.
    voice: Callable[[str, int], npt.NDArray[np.int16]] | None = None
    tool_call_turns: frozenset[int] = frozenset()  # user turns answered via a client tool call
    tool_name: str = "get_time"
    # user turn -> (tool, parameters): the agent answers that turn by calling the tool, then says
    # the tool's answer (set_timer, set_alarm... as a real agent would)
    tool_script: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    tool_timeout_s: float = 10.0
    end_call_after_turns: int | None = None  # agent says goodbye and closes 1000 after N turns
    signed_url_ttl_s: float = 900.0
    silent_hold_s: float = 300.0  # a "silent" connection is aborted after this long
    record_audio: bool = False  # keep the audio each way in SimConnection (echo measurements)
    faults: tuple[Fault, ...] = ()
    count_bursts: bool = False  # decode numbered speech bursts in user audio (simulator.bursts)


@dataclass
class SentReply:
    """One reply's voice as sent (SimConfig.record_audio): where its playout starts (loop time),
    its samples in the output format, and how many seconds played before an interruption."""

    start: float
    pcm: bytes
    played_s: float | None = None  # None: it played whole


@dataclass
class SimConnection:
    """What happened on one convai handshake (tests read these)."""

    index: int  # 1-based, counts every convai handshake including rejected ones
    agent_id: str
    http_status: int | None = None  # set when the handshake was rejected
    conversation_id: str = ""
    initiation: m.Initiation | None = None
    first_message: str = ""
    max_duration_s: float = 0.0
    metadata_sent: bool = False
    opened_at: float = 0.0  # loop time of the handshake
    metadata_at: float | None = None  # loop time the metadata went out
    first_audio_at: float | None = None  # loop time of the first user audio after it
    closed_at: float | None = None
    user_audio_chunks: int = 0
    user_audio_bytes: int = 0
    user_audio_s: float = 0.0
    turns: list[float] = field(default_factory=list)  # duration of each detected user turn
    agent_responses: list[str] = field(default_factory=list)
    audio_events_sent: int = 0
    interruptions: list[int] = field(default_factory=list)  # event ids sent in interruptions
    pings_sent: int = 0
    pongs: list[int] = field(default_factory=list)
    pong_latencies_s: list[float] = field(default_factory=list)
    tool_calls: list[str] = field(default_factory=list)
    tool_results: list[m.ClientToolResult] = field(default_factory=list)
    contextual_updates: list[m.ContextualUpdate] = field(default_factory=list)
    user_messages: list[str] = field(default_factory=list)
    user_activity: int = 0
    feedback: list[m.Feedback] = field(default_factory=list)
    unknown_received: list[str] = field(default_factory=list)
    malformed_received: list[m.Malformed] = field(default_factory=list)
    faults_applied: list[str] = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None  # the first close frame of the exchange; 1006 if none
    close_reason: str = ""
    closed_by: str = ""  # "server", "client" or "" (no close frame)
    # With SimConfig.record_audio: the user audio as received, (loop time of arrival, bytes),
    # and each reply's voice.
    received_audio: list[tuple[float, bytes]] = field(default_factory=list)
    sent_replies: list[SentReply] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.metadata_sent and not self.closed


@dataclass
class _Reply:
    text: str
    duration_s: float
    start: float = 0.0  # loop time its playout starts at the client (estimated)
    last_event_id: int = 0
    sending: bool = True


class _Session:
    """One convai conversation on one accepted WebSocket."""

    def __init__(self, sim: Simulator, ws: ServerConnection, rec: SimConnection) -> None:
        self.sim = sim
        self.cfg = sim.config
        self.ws = ws
        self.rec = rec
        self.loop = asyncio.get_running_loop()
        self.fmt_in = AudioFormat.parse(self.cfg.input_format)
        self.fmt_out = AudioFormat.parse(self.cfg.output_format)
        self.vad = EnergyVad(
            self.fmt_in.rate,
            threshold_dbfs=self.cfg.vad_threshold_dbfs,
            hangover_ms=self.cfg.vad_hangover_ms,
        )
        self.faults = [f for f in sim.faults_for(rec.index) if f.kind not in ("http", "delay")]
        self.delay_s = max(
            [self.cfg.metadata_delay_s]
            + [f.delay_s for f in sim.faults_for(rec.index) if f.kind == "delay"]
        )
        self.event_id = 0
        self.ping_id = 0
        self.ping_sent: dict[int, float] = {}
        self.rtt_ms: int | None = None
        self.turn = 0
        self.next_tentative_s = 0.0
        self.reply: _Reply | None = None  # the latest reply (may still be playing)
        self.reply_task: asyncio.Task[None] | None = None
        self.playout_end = 0.0
        self.tool_waiters: dict[str, asyncio.Future[m.ClientToolResult]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.silent = False
        self.ending = False
        self.reader: asyncio.Task[None] | None = None

    # -- helpers

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.loop.create_task(self._guard(coro))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda _: coro.close())  # cancelled before it ran: no warning
        return task

    async def _guard(self, coro: Awaitable[None]) -> None:
        try:
            await coro
        except ConnectionClosed:
            pass
        except Exception as exc:  # a simulator bug: say so, keep serving the others
            logs.event(
                log,
                "sim.task_failed",
                logging.ERROR,
                conn=self.rec.index,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _next_event_id(self) -> int:
        self.event_id += 1
        return self.event_id

    async def send(self, frame: str | bytes) -> None:
        if not self.silent:
            await self.ws.send(frame)

    async def close(self, code: int, reason: str) -> None:
        if not self.silent:
            await self.ws.close(code, reason)

    # -- lifecycle

    async def run(self) -> None:
        rec = self.rec
        try:
            if not await self._start():
                return
            self._spawn(self._pinger())
            self._spawn(self._duration_cap(rec.max_duration_s))
            for fault in self.faults:
                if not fault.after_chunks:
                    self._spawn(self._fault_after(fault, fault.after_s))
            if rec.first_message:
                self._start_reply(self._speak(rec.first_message, delay_s=0.0))
            reader = self.reader = self.loop.create_task(self._read_loop())
            await asyncio.wait({reader})
            if self.silent:  # half-open: socket stays open, nothing read or sent
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.cfg.silent_hold_s):
                        await self.sim.stopping.wait()
                if self.ws.transport is not None:
                    self.ws.transport.abort()
            elif not reader.cancelled():
                exc = reader.exception()
                if exc is not None and not isinstance(exc, ConnectionClosed):
                    raise exc
        except ConnectionClosed:
            pass
        finally:
            for task in [*self.tasks, self.reader]:
                if task is not None:
                    task.cancel()
            for fut in self.tool_waiters.values():
                fut.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.wait_closed(), self.cfg.silent_hold_s)
            self._record_close()

    async def _start(self) -> bool:
        rec, cfg = self.rec, self.cfg
        if not rec.agent_id:
            await self.ws.close(1008, "agent_id is required")
            return False
        if cfg.agent_ids is not None and rec.agent_id not in cfg.agent_ids:
            await self.ws.close(1008, "Agent not found")
            return False
        try:
            async with asyncio.timeout(cfg.initiation_timeout_s):
                first = await self.ws.recv()
        except TimeoutError:
            await self.ws.close(1008, "no conversation_initiation_client_data received")
            return False
        init = m.decode_client(first)
        if not isinstance(init, m.Initiation):
            await self.ws.close(1008, "first message must be conversation_initiation_client_data")
            return False
        rec.initiation = init
        if init.overrides and rec.agent_id in cfg.overrides_disabled:
            # what the service does with an override the agent's settings do not allow
            message = "Override not allowed by the agent's configuration"
            error = {"code": 1008, "error_type": "override_error", "message": message}
            await self.send(json.dumps({"type": "error", "error_event": error}))
            await self.ws.close(1008, message)
            return False
        agent = init.overrides.get("agent")
        first_message = agent.get("first_message") if isinstance(agent, dict) else None
        rec.first_message = first_message if isinstance(first_message, str) else cfg.first_message
        conversation = init.overrides.get("conversation")
        cap = conversation.get("max_duration_seconds") if isinstance(conversation, dict) else None
        rec.max_duration_s = cfg.max_duration_s
        if isinstance(cap, int | float) and not isinstance(cap, bool) and cap > 0:
            rec.max_duration_s = float(cap)
        if self.delay_s > 0:
            rec.faults_applied.append(f"delay {self.delay_s:g}s")
            logs.event(log, "sim.fault", conn=rec.index, fault="delay", delay_s=self.delay_s)
            await asyncio.sleep(self.delay_s)
        rec.conversation_id = f"conv_sim_{rec.index}"
        await self.send(
            m.encode_server(m.Metadata(rec.conversation_id, cfg.output_format, cfg.input_format))
        )
        rec.metadata_sent = True
        rec.metadata_at = self.loop.time()
        logs.event(
            log,
            "sim.conversation.started",
            conn=rec.index,
            conversation_id=rec.conversation_id,
            source=init.source_info.get("source"),
            max_duration_s=rec.max_duration_s,
        )
        self.sim.notify()
        return True

    def _record_close(self) -> None:
        rec = self.rec
        proto = self.ws.protocol
        rcvd, sent = proto.close_rcvd, proto.close_sent
        if rcvd is not None and (sent is None or proto.close_rcvd_then_sent):
            rec.close_code, rec.close_reason, rec.closed_by = rcvd.code, rcvd.reason, "client"
        elif sent is not None:
            rec.close_code, rec.close_reason, rec.closed_by = sent.code, sent.reason, "server"
        else:
            rec.close_code, rec.close_reason, rec.closed_by = 1006, "", ""
        rec.closed = True
        rec.closed_at = self.loop.time()
        logs.event(
            log,
            "sim.connection.closed",
            conn=rec.index,
            conversation_id=rec.conversation_id or None,
            close_code=rec.close_code,
            close_reason=rec.close_reason,
            closed_by=rec.closed_by or "nobody",
            turns=len(rec.turns),
            user_audio_s=round(rec.user_audio_s, 2),
        )
        self.sim.notify()

    # -- receiving

    async def _read_loop(self) -> None:
        rec = self.rec
        async for frame in self.ws:
            ev = m.decode_client(frame)
            if isinstance(ev, m.UserAudioChunk):
                await self._on_audio(ev.audio)
            elif isinstance(ev, m.Pong):
                rec.pongs.append(ev.event_id)
                sent = self.ping_sent.pop(ev.event_id, None)
                if sent is not None:
                    rtt = self.loop.time() - sent
                    rec.pong_latencies_s.append(rtt)
                    self.rtt_ms = round(rtt * 1000)
            elif isinstance(ev, m.ClientToolResult):
                rec.tool_results.append(ev)
                waiter = self.tool_waiters.pop(ev.tool_call_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(ev)
            elif isinstance(ev, m.ContextualUpdate):
                rec.contextual_updates.append(ev)
                logs.event(log, "sim.contextual_update", conn=rec.index, chars=len(ev.text))
            elif isinstance(ev, m.UserMessage):
                rec.user_messages.append(ev.text)
                await self._interrupt()
                self._start_reply(self._speak(f"You wrote: {ev.text}"))
            elif isinstance(ev, m.UserActivity):
                rec.user_activity += 1
            elif isinstance(ev, m.Feedback):
                rec.feedback.append(ev)
            elif isinstance(ev, m.Malformed):
                rec.malformed_received.append(ev)
                logs.event(
                    log,
                    "sim.client_malformed",
                    logging.WARNING,
                    conn=rec.index,
                    kind=ev.kind,
                    detail=ev.detail,
                )
                await self.close(1008, f"invalid message: {ev.kind}")
            elif isinstance(ev, m.Unknown | m.Other):
                rec.unknown_received.append(ev.type)
            elif isinstance(ev, m.Initiation):
                rec.unknown_received.append("conversation_initiation_client_data")
            self.sim.notify()

    async def _on_audio(self, data: bytes) -> None:
        rec = self.rec
        if rec.first_audio_at is None:
            rec.first_audio_at = self.loop.time()
        rec.user_audio_chunks += 1
        rec.user_audio_bytes += len(data)
        rec.user_audio_s += len(data) / (self.fmt_in.bytes_per_sample * self.fmt_in.rate)
        if self.cfg.record_audio:
            rec.received_audio.append((self.loop.time(), data))
        for fault in self.faults:
            if fault.after_chunks == rec.user_audio_chunks:
                self._spawn(self._fault_after(fault, 0.0))
        pcm = decode(data, self.fmt_in)
        if self.sim.bursts is not None:
            self.sim.bursts.feed(rec.index, pcm, self.loop.time())
        for ev in self.vad.feed(pcm):
            if isinstance(ev, SpeechStart):
                self.next_tentative_s = ev.at_s
                if self.cfg.interruptions:
                    await self._interrupt()
            elif isinstance(ev, SpeechEnd):
                await self._on_turn(ev.duration_s)
        if self.vad.in_speech and self.vad.time_s >= self.next_tentative_s:
            self.next_tentative_s = self.vad.time_s + 0.5
            text = f"user turn {self.turn + 1}"
            await self.send(m.encode_server(m.TentativeUserTranscript(text, self.event_id)))

    async def _on_turn(self, duration_s: float) -> None:
        self.turn += 1
        n = self.turn
        self.rec.turns.append(duration_s)
        text = f"user turn {n} ({duration_s:.1f}s)"
        logs.event(log, "sim.turn", conn=self.rec.index, turn=n, duration_s=round(duration_s, 2))
        await self.send(m.encode_server(m.UserTranscript(text, self._next_event_id())))
        self._start_reply(self._respond(n, duration_s))

    # -- the agent speaking

    def _start_reply(self, coro: Coroutine[Any, Any, None]) -> None:
        if self.ending:
            coro.close()
            return
        if self.reply_task is not None and not self.reply_task.done():
            self.reply_task.cancel()
        self.reply_task = self._spawn(coro)

    async def _respond(self, n: int, duration_s: float) -> None:
        if n in self.cfg.tool_script:
            name, parameters = self.cfg.tool_script[n]
            result = await self.call_tool(name, parameters)
            text = f"The {name} tool did not answer." if result is None else result.result
        elif n in self.cfg.tool_call_turns:
            result = await self.call_tool(self.cfg.tool_name, {"turn": n})
            if result is None:
                text = f"The {self.cfg.tool_name} tool did not answer."
            else:
                text = f"The {self.cfg.tool_name} tool said: {result.result}"
        else:
            text = f"You spoke for {duration_s:.1f} seconds in turn {n}."
        await self._speak(text)
        end_after = self.cfg.end_call_after_turns
        if end_after is not None and n >= end_after:
            await self._end_call()

    async def call_tool(self, name: str, parameters: dict[str, Any]) -> m.ClientToolResult | None:
        call_id = f"sim_call_{self.rec.index}_{len(self.rec.tool_calls) + 1}"
        self.rec.tool_calls.append(call_id)
        waiter: asyncio.Future[m.ClientToolResult] = self.loop.create_future()
        self.tool_waiters[call_id] = waiter
        logs.event(log, "sim.tool_call", conn=self.rec.index, tool=name, tool_call_id=call_id)
        event = m.ClientToolCall(name, call_id, parameters, self._next_event_id())
        await self.send(m.encode_server(event))
        try:
            async with asyncio.timeout(self.cfg.tool_timeout_s):
                return await waiter
        except TimeoutError:
            self.tool_waiters.pop(call_id, None)
            return None

    async def _speak(self, text: str, delay_s: float | None = None) -> None:
        """Stream one reply: agent_response, audio events ahead of real time, then complete."""
        cfg, fmt = self.cfg, self.fmt_out
        await asyncio.sleep(cfg.reply_delay_s if delay_s is None else delay_s)
        if cfg.voice is not None:
            pcm = encode(await asyncio.to_thread(cfg.voice, text, fmt.rate), fmt)
            duration = len(pcm) / fmt.bytes_per_sample / fmt.rate
        else:
            duration = min(cfg.max_reply_s, max(0.4, len(text) * cfg.seconds_per_char))
            pcm = speech_bytes(duration, fmt, f0=180.0, harmonics=cfg.voice_harmonics)
        step = max(1, fmt.rate * cfg.chunk_ms // 1000) * fmt.bytes_per_sample
        byte_rate = fmt.rate * fmt.bytes_per_sample
        reply = _Reply(text, duration)
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            event_id = self._next_event_id()
            reply.last_event_id = event_id
            if offset == 0:
                reply.start = max(self.loop.time(), self.playout_end)
                self.playout_end = reply.start
                self.reply = reply
                self.rec.agent_responses.append(text)
                if cfg.record_audio:
                    self.rec.sent_replies.append(SentReply(reply.start, pcm))
                await self.send(m.encode_server(m.AgentResponse(text, event_id)))
                logs.event(
                    log,
                    "sim.reply",
                    conn=self.rec.index,
                    event_id=event_id,
                    duration_s=round(duration, 2),
                )
            await self.send(m.encode_server(m.Audio(event_id, chunk, None)))
            self.rec.audio_events_sent += 1
            self.playout_end += len(chunk) / byte_rate
            ahead = self.playout_end - self.loop.time()
            if ahead > cfg.lead_s:
                await asyncio.sleep(ahead - cfg.lead_s)
        reply.sending = False
        await self.send(m.encode_server(m.AgentResponseComplete()))
        self.sim.notify()

    async def _interrupt(self) -> None:
        """Barge-in: if the agent's audio is still being sent or played, cut it."""
        if self.ending:
            return
        reply = self.reply
        now = self.loop.time()
        if self.reply_task is not None and not self.reply_task.done():
            self.reply_task.cancel()  # also drops a reply still "thinking"
        if reply is None or not (reply.sending or now < self.playout_end):
            return
        reply.sending = False
        self.playout_end = now
        heard = min(1.0, max(0.0, (now - reply.start) / reply.duration_s))
        corrected = reply.text[: round(len(reply.text) * heard)]
        self.rec.interruptions.append(reply.last_event_id)
        if self.cfg.record_audio and self.rec.sent_replies:
            self.rec.sent_replies[-1].played_s = max(0.0, now - reply.start)
        logs.event(
            log,
            "sim.interruption",
            conn=self.rec.index,
            event_id=reply.last_event_id,
            heard=round(heard, 2),
        )
        await self.send(m.encode_server(m.Interruption(reply.last_event_id)))
        correction = m.AgentResponseCorrection(reply.text, corrected, reply.last_event_id)
        await self.send(m.encode_server(correction))
        self.sim.notify()

    async def _end_call(self) -> None:
        self.ending = True
        call = m.AgentToolResponse(
            "end_call", f"sim_end_{self.rec.index}", "system", False, True, self._next_event_id()
        )
        await self.send(m.encode_server(call))
        await self._speak("Goodbye.", delay_s=0.0)
        wait = min(5.0, max(0.0, self.playout_end - self.loop.time()))
        await asyncio.sleep(wait)
        logs.event(log, "sim.end_call", conn=self.rec.index)
        await self.close(1000, "Agent ended the conversation")

    # -- timers

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.ping_interval_s)
            await self.ping()

    async def ping(self) -> None:
        self.ping_id += 1
        self.ping_sent[self.ping_id] = self.loop.time()
        self.rec.pings_sent += 1
        await self.send(m.encode_server(m.Ping(self.ping_id, self.rtt_ms)))

    async def _duration_cap(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._cap_now(seconds)

    async def _cap_now(self, seconds: float) -> None:
        if self.ending:
            return
        self.ending = True
        logs.event(log, "sim.max_duration", conn=self.rec.index, max_duration_s=seconds)
        error = m.ErrorEvent(
            1000,
            "max_duration_exceeded",
            "Maximum duration exceeded",
            f"conversation reached its {seconds:g} s limit",
        )
        await self.send(m.encode_server(error))
        await self.close(1000, "Maximum duration exceeded")

    async def _fault_after(self, fault: Fault, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
        await self.apply_fault(fault)

    async def apply_fault(self, fault: Fault) -> None:
        rec = self.rec
        rec.faults_applied.append(fault.describe())
        logs.event(
            log,
            "sim.fault",
            logging.WARNING,
            conn=rec.index,
            fault=fault.kind,
            code=fault.code or None,
        )
        self.sim.notify()
        if fault.kind == "close":
            await self.close(fault.code, fault.reason)
        elif fault.kind == "drop":
            if self.ws.transport is not None:
                self.ws.transport.abort()
        elif fault.kind == "silent":
            self.silent = True
            if self.ws.transport is not None:
                self.ws.transport.pause_reading()
            for task in [*self.tasks, self.reader]:
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
        elif fault.kind == "malformed":
            for frame in MALFORMED_BURST:
                await self.send(frame)
        elif fault.kind == "quota":
            await self.send(m.flat_error(QUOTA_MESSAGE))
            await asyncio.sleep(0.5)
            await self.close(1002, QUOTA_MESSAGE)
        elif fault.kind == "cap":
            await self._cap_now(self.loop.time() - (rec.metadata_at or self.loop.time()))
        elif fault.kind == "interrupt":
            await self._interrupt()
        elif fault.kind == "tool":
            self._spawn(self._tool_now())
        elif fault.kind == "end_call":
            if not self.ending:
                self._start_reply(self._end_call())
        elif fault.kind == "oversize":
            pad = "A" * OVERSIZE_BYTES
            await self.send(f'{{"type":"audio","audio_event":{{"audio_base_64":"{pad}"}}}}')

    async def _tool_now(self) -> None:
        await self.call_tool(self.cfg.tool_name, {"chaos": True})


def _json_response(
    connection: ServerConnection, status: int, body: dict[str, Any], **headers: str
) -> Response:
    response = connection.respond(status, json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


_HTTP_FAULT_BODY = {
    401: ("invalid_api_key", "Invalid API key"),
    403: ("forbidden", "Signature is invalid or expired"),
    404: ("not_found", "Agent not found"),
    429: ("too_many_concurrent_requests", "Too many concurrent requests"),
    500: ("internal_error", "Internal server error"),
    503: ("system_busy", "Service unavailable"),
}


class Simulator:
    """The local agent. `await start()` returns the port; `url` is the agent.api_base to use."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        AudioFormat.parse(self.config.output_format)  # fail early, naming the bad format
        AudioFormat.parse(self.config.input_format)
        self.connections: list[SimConnection] = []
        self.signed_urls_issued = 0
        self.tts_requests: list[Any] = []  # voicebox.simulator.tts.TtsRequest records
        self.stopping = asyncio.Event()
        self.port = 0
        self._faults: list[Fault] = list(self.config.faults)
        self._server: Server | None = None
        self._sessions: dict[int, _Session] = {}
        self._accepted: dict[ServerConnection, SimConnection] = {}
        self._signatures: dict[str, tuple[str, float]] = {}
        self._changed = asyncio.Event()
        self.bursts: BurstLog | None = BurstLog() if self.config.count_bursts else None

    # -- lifecycle

    async def start(self) -> int:
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            ping_interval=None,  # pings are the protocol's JSON pings; a silent fault stays silent
            close_timeout=2,
            max_size=16 * 1024 * 1024,
        )
        self.port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0
        logs.event(log, "sim.listening", url=self.url, faults=len(self._faults) or None)
        return self.port

    async def stop(self) -> None:
        self.stopping.set()
        for session in list(self._sessions.values()):
            if session.silent and session.ws.transport is not None:
                session.ws.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        logs.event(log, "sim.stopped", connections=len(self.connections))

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_key(self) -> str | None:
        return self.config.api_key

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    # -- faults and introspection

    def set_fault(self, fault: Fault | str) -> None:
        """Add a fault for future connections (a Fault or a `N:KIND[:ARG]` spec)."""
        self._faults.append(parse_fault(fault) if isinstance(fault, str) else fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults_for(self, index: int) -> list[Fault]:
        return [f for f in self._faults if f.applies_to(index)]

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Return once `predicate()` is true (re-checked on every recorded change)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def connection(self, index: int | None = None) -> SimConnection:
        """The record of connection `index` (1-based), or of the latest one."""
        if not self.connections:
            raise LookupError("no connection yet")
        return self.connections[-1] if index is None else self.connections[index - 1]

    async def wait_connection(
        self, index: int | None = None, timeout: float = 10.0
    ) -> SimConnection:
        """Wait until connection `index` (default: any new one) has sent its metadata."""
        want = index if index is not None else len(self.connections) + 1
        await self.wait_for(
            lambda: (
                len(self.connections) >= want
                and (self.connections[want - 1].metadata_sent or self.connections[want - 1].closed)
            ),
            timeout,
        )
        return self.connections[want - 1]

    def _session(self, index: int | None) -> _Session:
        rec = self.connection(index)
        session = self._sessions.get(rec.index)
        if session is None:
            raise LookupError(f"connection {rec.index} is not live")
        return session

    # -- triggers for deterministic tests and demos

    async def speak(self, text: str, index: int | None = None) -> None:
        """Make the agent say `text` now (starts a reply; returns once it has started)."""
        session = self._session(index)
        session._start_reply(session._speak(text, delay_s=0.0))
        await asyncio.sleep(0)

    async def interrupt(self, index: int | None = None) -> None:
        """Act as if the user barged in now."""
        await self._session(index)._interrupt()

    async def tool_call(
        self,
        name: str | None = None,
        parameters: dict[str, Any] | None = None,
        index: int | None = None,
    ) -> m.ClientToolResult | None:
        """Send a client_tool_call now and wait for its result (None on tool timeout)."""
        session = self._session(index)
        return await session.call_tool(name or self.config.tool_name, parameters or {})

    async def ping(self, index: int | None = None) -> None:
        await self._session(index).ping()

    async def inject(self, fault: Fault | str, index: int | None = None) -> None:
        """Apply a fault (close, drop, silent, malformed, quota) to a live connection now."""
        parsed = parse_fault(fault) if isinstance(fault, str) else fault
        await self._session(index).apply_fault(parsed)

    async def send_raw(self, frame: str | bytes, index: int | None = None) -> None:
        await self._session(index).send(frame)

    # -- HTTP side

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query, keep_blank_values=True)
        agent_id = query.get("agent_id", [""])[0]
        if url.path == SIGNED_URL_PATH:
            return self._signed_url(connection, request, agent_id)
        if url.path.startswith(AGENTS_PATH):
            return self._get_agent(connection, request, url.path[len(AGENTS_PATH) :])
        if url.path.startswith(TOOLS_PATH):
            return self._get_tool(connection, request, url.path[len(TOOLS_PATH) :])
        if TTS_PATH.match(url.path):
            return None
        if url.path != CONVAI_PATH:
            return _json_response(connection, 404, {"detail": "Not Found"})
        rec = SimConnection(len(self.connections) + 1, agent_id)
        rec.opened_at = asyncio.get_running_loop().time()
        self.connections.append(rec)
        logs.event(log, "sim.connection.opened", conn=rec.index, agent_id=agent_id or None)
        response = self._handshake_check(connection, rec, query)
        if response is not None:
            rec.http_status = response.status_code
            rec.closed = True
            logs.event(
                log,
                "sim.handshake.rejected",
                logging.WARNING,
                conn=rec.index,
                status=response.status_code,
            )
        else:
            self._accepted[connection] = rec
        self.notify()
        return response

    def _handshake_check(
        self, connection: ServerConnection, rec: SimConnection, query: dict[str, list[str]]
    ) -> Response | None:
        for fault in self.faults_for(rec.index):
            if fault.kind == "http":
                rec.faults_applied.append(fault.describe())
                logs.event(
                    log,
                    "sim.fault",
                    logging.WARNING,
                    conn=rec.index,
                    fault="http",
                    status=fault.code,
                )
                status_name, message = _HTTP_FAULT_BODY.get(fault.code, ("error", "error"))
                body = {"detail": {"status": status_name, "message": message}}
                headers = {}
                if fault.code in (429, 503):
                    headers["Retry_After"] = f"{fault.retry_after_s:g}"
                return _json_response(connection, fault.code, body, **headers)
        signature = query.get("conversation_signature", [None])[0]
        if signature is None:
            if self.config.require_signature:
                body = {"detail": {"status": "missing_signature", "message": "Signed URL needed"}}
                return _json_response(connection, 403, body)
            return None
        issued = self._signatures.pop(signature, None)
        loop_time = asyncio.get_running_loop().time()
        if issued is None or issued[0] != rec.agent_id or issued[1] < loop_time:
            body = {"detail": {"status": "invalid_signature", "message": "Invalid signature"}}
            return _json_response(connection, 403, body)
        return None

    def _signed_url(
        self, connection: ServerConnection, request: Request, agent_id: str
    ) -> Response:
        key = self.config.api_key
        if key is not None and request.headers.get("xi-api-key") != key:
            body = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
            logs.event(log, "sim.signed_url.rejected", logging.WARNING, status=401)
            return _json_response(connection, 401, body)
        if not agent_id:
            body = {"detail": {"status": "invalid_request", "message": "agent_id is required"}}
            return _json_response(connection, 422, body)
        if self.config.agent_ids is not None and agent_id not in self.config.agent_ids:
            body = {"detail": {"status": "agent_not_found", "message": "Agent not found"}}
            return _json_response(connection, 404, body)
        signature = secrets.token_urlsafe(24)
        expires = asyncio.get_running_loop().time() + self.config.signed_url_ttl_s
        self._signatures[signature] = (agent_id, expires)
        self.signed_urls_issued += 1
        host = request.headers.get("Host") or f"{self.config.host}:{self.port}"
        query = urlencode(
            {"agent_id": agent_id, "conversation_signature": signature}, quote_via=quote
        )
        logs.event(log, "sim.signed_url.issued", agent_id=agent_id)
        self.notify()
        return _json_response(connection, 200, {"signed_url": f"ws://{host}{CONVAI_PATH}?{query}"})

    def _get_agent(self, connection: ServerConnection, request: Request, raw_id: str) -> Response:
        """GET /v1/convai/agents/{id}: 401 without the key, 404 for an unknown agent."""
        key = self.config.api_key
        if key is not None and request.headers.get("xi-api-key") != key:
            body = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
            logs.event(log, "sim.get_agent.rejected", logging.WARNING, status=401)
            return _json_response(connection, 401, body)
        agent_id = unquote(raw_id)
        known = self.config.agent_ids
        if not agent_id or "/" in agent_id or (known is not None and agent_id not in known):
            body = {"detail": {"status": "agent_not_found", "message": "Agent not found"}}
            return _json_response(connection, 404, body)
        cfg = self.config
        settings = agent_settings(
            agent_id,
            first_message=cfg.first_message,
            max_duration_s=cfg.max_duration_s,
            enable_auth=cfg.require_signature,
            overrides_enabled=agent_id not in cfg.overrides_disabled,
            client_tools=self._client_tools(),
            tool_listing=cfg.tool_listing,
        )
        return _json_response(connection, 200, settings)

    def _client_tools(self) -> tuple[str, ...]:
        tools = self.config.client_tools
        return builtin_names() if tools is None else tools

    def _get_tool(self, connection: ServerConnection, request: Request, raw_id: str) -> Response:
        """GET /v1/convai/tools/{id}: a workspace tool the agents list in tool_ids; 401 without
        the key, 403 when SimConfig.tool_listing is ids_unreadable, 404 for any other id."""
        key = self.config.api_key
        if key is not None and request.headers.get("xi-api-key") != key:
            body = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
            return _json_response(connection, 401, body)
        name = tool_name(unquote(raw_id))
        if self.config.tool_listing == "inline" or name is None or name not in self._client_tools():
            body = {"detail": {"status": "tool_not_found", "message": "Tool not found"}}
            return _json_response(connection, 404, body)
        if self.config.tool_listing == "ids_unreadable":
            body = {"detail": {"status": "missing_permissions", "message": "Cannot read tools"}}
            return _json_response(connection, 403, body)
        logs.event(log, "sim.get_tool", tool=name)
        tool = {"id": unquote(raw_id), "tool_config": tool_config(name)}
        return _json_response(connection, 200, tool)

    # -- WebSocket side

    async def _handle(self, ws: ServerConnection) -> None:
        path = urlsplit(ws.request.path if ws.request else "").path
        if TTS_PATH.match(path):
            await self._serve_tts(ws)
            return
        rec = self._accepted.pop(ws, None)
        if rec is None:  # cannot happen: process_request routes every path
            await ws.close(1008, "unknown path")
            return
        session = _Session(self, ws, rec)
        self._sessions[rec.index] = session
        try:
            await session.run()
        finally:
            self._sessions.pop(rec.index, None)

    async def _serve_tts(self, ws: ServerConnection) -> None:
        try:
            tts = importlib.import_module("voicebox.simulator.tts")
            serve_tts: Callable[[ServerConnection, Simulator], Awaitable[None]] = tts.serve_tts
        except (ImportError, AttributeError):
            await ws.close(1008, "tts not available")
            return
        await serve_tts(ws, self)


# -- `voicebox simulate`


def _chaos_from_args(args: argparse.Namespace) -> list[chaos.ChaosEvent] | None:
    if not getattr(args, "chaos", None):
        return None
    spec = chaos.parse_chaos(args.chaos)
    kinds = chaos.KINDS
    if getattr(args, "chaos_kinds", None):
        kinds = tuple(k.strip() for k in args.chaos_kinds.split(",") if k.strip())
    return chaos.schedule(spec, kinds)


def _config_from_args(args: argparse.Namespace) -> SimConfig:
    faults = tuple(parse_fault(spec) for spec in args.fault)
    for name in (args.output_format, args.input_format):
        AudioFormat.parse(name)
    if not args.max_duration_s > 0:
        raise ValueError(f"--max-duration-s must be > 0, got {args.max_duration_s}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    return SimConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key or None,
        output_format=args.output_format,
        input_format=args.input_format,
        max_duration_s=args.max_duration_s,
        faults=faults,
    )


async def _run_until_signal(config: SimConfig, events: list[chaos.ChaosEvent] | None = None) -> int:
    sim = Simulator(config)
    try:
        await sim.start()
    except OSError as exc:
        logs.event(
            log,
            "sim.start_failed",
            logging.ERROR,
            host=config.host,
            port=config.port,
            error=exc.strerror or str(exc),
        )
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(chaos.run_chaos(sim, events)) if events else None
    await stop.wait()
    if runner is not None:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    await sim.stop()
    return 0


def main_simulate(args: argparse.Namespace) -> int:
    """`voicebox simulate`: run the local agent in the foreground until SIGINT/SIGTERM."""
    logs.setup("info")
    if args.api_key:
        logs.register_secret(args.api_key)
    try:
        config = _config_from_args(args)
        events = _chaos_from_args(args)
    except (FaultError, ValueError) as exc:
        print(f"voicebox simulate: {exc}", file=sys.stderr)
        return 2
    if events:
        for n, ev in enumerate(events, 1):
            logs.event(log, "sim.chaos.planned", n=n, at_s=ev.at_s, fault=ev.kind)
    return asyncio.run(_run_until_signal(config, events))
