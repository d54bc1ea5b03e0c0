"""`PhoneCall`: one phone call from the stream's `start` to its end, the agent behind it.

The conversation is the convai `Supervisor` (one_conversation, always listening) over a
`MediaStreamPort`. The call ends in one of three ways, and never leaves the call or a session
open:
- the agent ends it (end_call, or any normal close): the supervisor has played the goodbye out
  (the port waited for the mark after it), then the call is completed with the REST API;
- the caller hangs up (`stop`, the stream closing, or the status callback): the session is
  closed with 1000;
- the agent cannot be reached (degraded, or reconnecting longer than phone.give_up_s): a short
  announcement, then the call is completed with the REST API and the session stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from voicebox.announcements import Announcer
from voicebox.config import Config, Secret, with_changes
from voicebox.convai.connection import LatencyStats
from voicebox.convai.supervisor import Supervisor
from voicebox.convai.tools import builtin_tools
from voicebox.logs import event
from voicebox.phone import context, media
from voicebox.phone.port import MediaStreamPort
from voicebox.state import State

log = logging.getLogger("voicebox.phone")

STOP_WAIT_S = 5.0  # after completing a call, how long Twilio has to send `stop`
END_WAIT_S = 5.0  # after the caller hung up, how long the session has to close
ANNOUNCE_MAX_S = 15.0
WRITE_QUEUE = 1024  # frames waiting for the socket (~20 s of audio), oldest dropped
_TROUBLE = (State.RECONNECTING, State.DEGRADED, State.CONNECTING)

Complete = Callable[[str], Awaitable[str]]


def _latency(name: str, stats: LatencyStats) -> dict[str, Any]:
    """p50/p99 of what the bridge adds on one direction, as call.ended fields."""
    summary = stats.summary()
    if not summary:
        return {}
    return {f"{name}_p50_ms": summary["p50_ms"], f"{name}_p99_ms": summary["p99_ms"]}


class PhoneCall:
    """One call on one accepted Media Stream."""

    def __init__(
        self,
        cfg: Config,
        api_key: Secret | None,
        start: media.Start,
        ws: web.WebSocketResponse,
        complete: Complete,
        counters: dict[str, int],
    ) -> None:
        # A phone line is always listening; a normal end ends the call.
        self.cfg = with_changes(cfg, **{"conversation.mode": "always_on"})
        self.call_sid = start.call_sid
        self.stream_sid = start.stream_sid
        self.started = time.monotonic()
        self.ws = ws
        self._complete = complete
        self._counters = counters  # the server's, shared by all calls
        self._out: deque[tuple[str, float | None]] = deque()
        self._out_ready = asyncio.Event()
        self.outbound = LatencyStats()  # agent audio in -> media frame written to Twilio
        self.port = MediaStreamPort(start.stream_sid, self._queue)
        self.tools = builtin_tools(self.port, status=self.snapshot)
        self.supervisor = Supervisor(
            self.cfg, self.port, api_key, self.tools, self._on_state, one_conversation=True
        )
        announce_cfg = with_changes(
            self.cfg,
            **{
                "announcements.enabled": True,
                "announcements.degraded": cfg.phone.failure_message,
                "announcements.rule": "interrupt",
                "audio.output.sample_rate": 8000,  # synthesised as pcm_8000: the line's rate
            },
        )
        self._announcer = Announcer(announce_cfg, self.port, api_key)
        self.state = State.CONNECTING
        self.conversation_ids: list[str] = []
        self.ended_by = ""
        self.malformed = 0
        self.dtmf: list[str] = []
        self._malformed_kinds: set[str] = set()
        self._hung_up = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._unreachable = asyncio.Event()
        self._trouble_since: float | None = time.monotonic()
        self._give_up_s = cfg.phone.give_up_s
        self._give_up_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """The call from start to end; returns when the call and its session are over."""
        context.CALL_SID.set(self.call_sid)
        context.STREAM_SID.set(self.stream_sid)
        event(log, "call.started", call_sid=self.call_sid, stream_sid=self.stream_sid)
        await self.port.start(self.supervisor.on_mic_chunk)
        writer = asyncio.create_task(self._writer(), name="phone-writer")
        reader = asyncio.create_task(self._reader(), name="phone-reader")
        conversation = asyncio.create_task(self.supervisor.run(), name="phone-conversation")
        self._give_up_task = asyncio.create_task(self._watch_trouble(), name="phone-give-up")
        unreachable = asyncio.create_task(self._unreachable.wait())
        hung_up = asyncio.create_task(self._hung_up.wait())
        shutdown = asyncio.create_task(self._shutdown.wait())
        try:
            await asyncio.wait(
                {reader, conversation, unreachable, hung_up, shutdown},
                return_when=asyncio.FIRST_COMPLETED,
            )
            if reader.done() or self._hung_up.is_set():
                await self._caller_hung_up(conversation)
            elif conversation.done():
                await self._agent_ended(reader)
            elif self._shutdown.is_set():
                self.ended_by = "shutdown"
                await self.supervisor.stop()
                await self._complete_call(reader)
            else:
                await self._give_up(conversation, reader)
        finally:
            for task in (reader, unreachable, hung_up, shutdown, self._give_up_task):
                task.cancel()
            if not conversation.done():
                await self.supervisor.stop()
                conversation.cancel()
            await asyncio.gather(conversation, return_exceptions=True)
            await self.port.stop()
            writer.cancel()
            await asyncio.gather(writer, reader, return_exceptions=True)
            if not self.ws.closed:
                await self.ws.close()
            self.closed.set()
            event(
                log,
                "call.ended",
                call_sid=self.call_sid,
                stream_sid=self.stream_sid,
                conversation_id=self.conversation_ids[-1] if self.conversation_ids else None,
                by=self.ended_by or "shutdown",
                duration_s=round(time.monotonic() - self.started, 2),
                heard_s=round(self.port.heard_s, 2),
                sessions=len(self.conversation_ids),
                malformed=self.malformed or None,
                **_latency("caller_to_agent", self.port.inbound),
                **_latency("agent_to_caller", self.outbound),
            )

    def hang_up(self) -> None:
        """The caller is gone (status callback): end the conversation."""
        self._hung_up.set()

    def shut_down(self) -> None:
        """The service stops: close the session and complete the call."""
        self._shutdown.set()

    async def _caller_hung_up(self, conversation: asyncio.Task[None]) -> None:
        self.ended_by = "caller"
        self._counters["ended_by_caller"] += 1
        event(log, "call.hangup", call_sid=self.call_sid)
        self.supervisor.end_conversation()  # the session closes with 1000
        try:
            async with asyncio.timeout(END_WAIT_S):
                await asyncio.shield(conversation)
        except TimeoutError:
            await self.supervisor.stop()

    async def _agent_ended(self, reader: asyncio.Task[None]) -> None:
        """The conversation ended normally and its goodbye has played out: hang up."""
        self.ended_by = "agent"
        self._counters["completed_by_agent"] += 1
        event(
            log,
            "call.goodbye_played",
            call_sid=self.call_sid,
            last_mark=self.port.last_mark,
            heard_s=round(self.port.heard_s, 2),
            outstanding=self.port.playing or None,
        )
        await self._complete_call(reader)

    async def _give_up(self, conversation: asyncio.Task[None], reader: asyncio.Task[None]) -> None:
        self.ended_by = "unreachable"
        self._counters["failed"] += 1
        event(
            log,
            "call.agent_unreachable",
            logging.WARNING,
            call_sid=self.call_sid,
            state=str(self.state),
        )
        await self.supervisor.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ANNOUNCE_MAX_S):
                await self._announcer.announce("degraded")
        await self._complete_call(reader)

    async def _complete_call(self, reader: asyncio.Task[None]) -> None:
        event(log, "call.completing", call_sid=self.call_sid)
        try:
            status = await self._complete(self.call_sid)
        except Exception as exc:  # RestError: logged; the stream still ends below
            event(log, "call.complete_failed", logging.ERROR, call_sid=self.call_sid, error=exc)
            return
        event(log, "call.completed", call_sid=self.call_sid, status=status)
        with contextlib.suppress(TimeoutError):  # Twilio ends the stream with `stop`
            async with asyncio.timeout(STOP_WAIT_S):
                await asyncio.shield(reader)

    # --- the stream ----------------------------------------------------------------------------

    async def _reader(self) -> None:
        """Twilio's messages until `stop` or the socket closes."""
        port = self.port
        async for msg in self.ws:
            t = time.perf_counter()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                ev = media.parse(msg.data)
            else:
                continue
            tp = type(ev)
            if tp is media.Media:
                assert isinstance(ev, media.Media)
                port.feed(ev.payload, t)
            elif tp is media.Mark:
                assert isinstance(ev, media.Mark)
                port.on_mark(ev.name)
            elif tp is media.Stop:
                event(log, "stream.stopped", call_sid=self.call_sid, stream_sid=self.stream_sid)
                return
            elif tp is media.Dtmf:
                assert isinstance(ev, media.Dtmf)
                self.dtmf.append(ev.digit)  # never logged: callers key in PINs and card numbers
                event(log, "call.dtmf", logging.DEBUG, call_sid=self.call_sid, n=len(self.dtmf))
            elif tp is media.Malformed or tp is media.Unknown:
                self._bad(ev)
        event(log, "stream.closed", call_sid=self.call_sid, code=self.ws.close_code)

    def _bad(self, ev: media.StreamEvent) -> None:
        self.malformed += 1
        self._counters["malformed"] += 1
        kind = ev.kind if isinstance(ev, media.Malformed) else f"unknown:{ev.event}"  # type: ignore[union-attr]
        if kind not in self._malformed_kinds and len(self._malformed_kinds) < 32:
            self._malformed_kinds.add(kind)
            detail = ev.detail if isinstance(ev, media.Malformed) else ""
            event(
                log,
                "stream.malformed",
                logging.WARNING,
                call_sid=self.call_sid,
                kind=kind,
                detail=detail or None,
            )

    def _queue(self, frame: str, t0: float | None) -> None:
        if len(self._out) >= WRITE_QUEUE:
            self._out.popleft()
        self._out.append((frame, t0))
        self._out_ready.set()

    async def _writer(self) -> None:
        out = self._out
        ws = self.ws
        while True:
            if not out:
                self._out_ready.clear()
                await self._out_ready.wait()
                continue
            frame, t0 = out.popleft()
            if ws.closed:
                continue
            try:
                await ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                continue
            if t0 is not None:
                self.outbound.add(time.perf_counter() - t0)

    # --- conversation state ----------------------------------------------------------------------

    def _on_state(self, state: State, fields: dict[str, Any]) -> None:
        self.state = state
        cid = fields.get("conversation_id")
        if cid and cid not in self.conversation_ids:
            self.conversation_ids.append(cid)
            event(
                log,
                "call.conversation",
                call_sid=self.call_sid,
                stream_sid=self.stream_sid,
                conversation_id=cid,
            )
        if state in (State.LISTENING, State.SPEAKING):
            self._trouble_since = None
        elif state in _TROUBLE and self._trouble_since is None:
            self._trouble_since = time.monotonic()
        if state is State.DEGRADED:
            self._unreachable.set()

    async def _watch_trouble(self) -> None:
        """Reconnecting (or never connected) for longer than give_up_s: the agent is gone."""
        while True:
            await asyncio.sleep(0.5)
            since = self._trouble_since
            if since is not None and time.monotonic() - since >= self._give_up_s:
                self._unreachable.set()
                return

    def snapshot(self) -> dict[str, Any]:
        sup = self.supervisor.snapshot()
        return {
            "stream_sid": self.stream_sid,
            "conversation_id": sup["conversation_id"],
            "state": str(self.state),
            "age_s": round(time.monotonic() - self.started, 1),
            "heard_s": round(self.port.heard_s, 2),
            "turns": sup["turns"],
            "reconnects": sup["counters"]["reconnects"],
            "malformed": self.malformed,
        }
