"""Keeps a conversation available: opens sessions on demand, reconnects, rolls over, degrades.

The daemon drives the `Supervisor` with button presses and mic chunks and follows its `State`
through `on_state`. Each session end is classified (policy.classify_end) and acted on: idle or a
fresh session after a normal end, an immediate context-carrying restart at the duration cap,
jittered backoff after transient failures, and a slow retry period with one loud log line for
configuration problems. Mic audio captured while no session is ready is kept in a bounded buffer
and sent when the next one is, after the audio the ended link never got confirmed (replayed
after any end but a clean close; voicebox.convai.replay says what confirmed means). Near the cap
it rolls over to a new session at a quiet moment so the service never cuts the agent off.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from voicebox.audio.port import AudioPort, Chunk
from voicebox.config import Config, Secret
from voicebox.convai import messages
from voicebox.convai.connection import (
    CLOSE_TIMEOUT_S,
    MAX_FRAME,
    PROBE_INTERVAL_S,
    PROBE_TIMEOUT_S,
    ConnectFailure,
    LatencyStats,
    SessionLink,
    open_socket,
)
from voicebox.convai.policy import EndClass, ReconnectPolicy, SessionEnd, classify_end
from voicebox.convai.replay import FrameWindow, MicFrame, has_voice, plan_replay
from voicebox.convai.session import TRANSCRIPT_LINES, Send, Session, SessionSettings, context_text
from voicebox.convai.tools import ToolRegistry, local_now, time_variables
from voicebox.logs import event
from voicebox.state import State

log = logging.getLogger("voicebox.convai")

PREROLL_S = 1.5  # wake_word: mic kept while idle, for the words right after the wake word
USER_QUIET_S = 1.0  # the user counts as speaking this long after voice was last seen
VOICE_PEAK = 1000  # mic peak (int16) that counts as the user's voice, about -30 dBFS
DRAIN_MAX_S = 30.0  # longest goodbye we wait for after the agent ends the call
T = TypeVar("T")


class _Stopped(Exception):
    pass


def _cls(end: SessionEnd) -> dict[str, Any]:
    """The end class as a log field named `class` (a keyword in Python)."""
    return {"class": str(end.end_class)}


class Supervisor:
    """Opens, keeps and closes conversations; never raises for network or service errors."""

    def __init__(
        self,
        cfg: Config,
        audio: AudioPort,
        api_key: Secret | None,
        tools: ToolRegistry,
        on_state: Callable[[State, dict[str, Any]], None],
        *,
        one_conversation: bool = False,
        clock: Callable[[], datetime.datetime] = local_now,
    ) -> None:
        """one_conversation: a normal end (end_call, our own close) ends run() once the goodbye
        has played, instead of idling or opening the next session (a phone call). clock: the
        wall-clock time told to each session as dynamic variables (tools.time_variables)."""
        self._one_conversation = one_conversation
        self._clock = clock
        self._cfg = cfg
        self._audio = audio
        self._api_key = api_key
        self._tools = tools
        self._on_state = on_state
        conv = cfg.conversation
        self._policy = ReconnectPolicy(conv.reconnect)
        self._state = State.IDLE
        self._fields: dict[str, Any] = {}  # the fields last reported with the state
        self._mode = conv.mode
        self._always_on = conv.mode == "always_on"  # a conversation open around the clock
        self._hands_free = conv.mode != "push_to_talk"  # the mic is live while a session is
        self._wanted = self._always_on
        self._mic_live = self._always_on
        # wake_word: the last mic frames while idle, so what follows the word is not lost
        self._preroll = FrameWindow(PREROLL_S)
        self._woken = False  # the next attempt follows a wake word
        self.muted = False  # privacy mute: nothing opens, nothing is sent or kept
        self.on_heard: Callable[[str], None] = lambda text: None  # the user's final transcript
        self.limited = False  # the daily limit: nothing opens (the daemon lifts it for a press)
        self._receive_timeout = conv.receive_timeout_s
        self._buffer = FrameWindow(conv.resume_buffer_s)  # captured while no session is ready
        self._unconfirmed: list[MicFrame] = []  # from the link that ended, for the next one
        self._continue_after_close = False  # the service closed cleanly while the user talked
        self._seq = 0  # capture number of the next mic chunk
        self._probe_interval = PROBE_INTERVAL_S
        self._probe_timeout = PROBE_TIMEOUT_S
        self._link: SessionLink | None = None
        self._successor: dict[SessionLink, SessionLink] = {}
        self._rollover_tried: set[SessionLink] = set()
        self._rollover_task: asyncio.Task[None] | None = None
        self._history: deque[tuple[str, str]] = deque(maxlen=TRANSCRIPT_LINES)
        self._carry = False  # the next session continues the conversation
        self._cap_restart = False  # the next session replaces one that hit the duration cap
        self._after_cap = False  # the session being opened continues one that hit the cap
        self._wake = asyncio.Event()
        self._interrupt = asyncio.Event()  # cuts a backoff wait short (stop, end_conversation)
        self._stop = asyncio.Event()
        self._stopping = False
        self._last_close: dict[str, Any] = {}
        self._voice_at = -1e9  # perf_counter time the mic last carried voice (always_on)
        self._near_cap = False  # the current session is inside the rollover margin
        self.mic_to_wire = LatencyStats()
        self.pong_latency = LatencyStats()
        self.round_trip = LatencyStats(64)
        self.probe_rtt = LatencyStats(256)
        self._replayed_s = 0.0
        self._replay_dropped_s = 0.0
        self._counters = {
            "sessions": 0,
            "connect_failures": 0,
            "reconnects": 0,
            "malformed": 0,
            "unknown": 0,
            "stale_audio": 0,
            "tool_calls": 0,
            "turns": 0,
            "rollovers": 0,
            "duration_caps": 0,
            "barge_ins": 0,
            "degraded": 0,
            "replays": 0,
            "half_open": 0,
            "oversize_frames": 0,
            "out_dropped": 0,  # mic frames dropped from a full send queue (never sent)
            "wakes": 0,  # conversations opened by the wake word or its button
        }

    # --- the daemon's API ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    async def run(self) -> None:
        """Keep conversations available until stop()."""
        try:
            while not self._stopping:
                if not self._wanted:
                    if self.muted:
                        self._set_state(State.MUTED)
                    else:
                        self._set_state(State.IDLE, reason="daily_limit" if self.limited else None)
                    if self._one_conversation:
                        break
                    self._wake.clear()
                    if not self._wanted and not self._stopping:
                        await self._until_stopped(self._wake.wait())
                    continue
                try:
                    await self._attempt()
                except _Stopped:
                    raise
                except Exception as exc:  # a bug: say so loudly, then back off and go on
                    await self._failed(exc)
        except _Stopped:
            pass
        finally:
            rollover = self._rollover_task
            if rollover is not None:  # it closes what it opened; run() returns after that
                rollover.cancel()
                await asyncio.wait([rollover])  # (a cancel of run() itself still propagates)
            link = self._link
            if link is not None and not link.done.is_set():
                await self._close_link(link, "shutdown")

    async def stop(self) -> None:
        """Close the socket cleanly (1000, short timeout); idempotent."""
        if not self._stopping:
            self._stopping = True
            self._set_state(State.STOPPING)
            self._stop.set()
            self._interrupt.set()
            self._wake.set()
        link = self._link
        if link is not None and not link.done.is_set():
            await self._close_link(link, "shutdown")

    @property
    def last_seq(self) -> int:
        """The number of the last mic chunk (-1: none yet)."""
        return self._seq - 1

    def on_mic_chunk(self, chunk: Chunk) -> None:
        """One processed mic chunk (on the loop), numbered in capture order (`last_seq`)."""
        t0 = time.perf_counter()
        rate = self._audio.input_format.rate
        link = self._link
        # Only near a rollover does quiet() need to know whether the user is talking.
        if (
            self._near_cap
            and self._hands_free
            and len(chunk)
            and (int(chunk.max()) >= VOICE_PEAK or int(chunk.min()) <= -VOICE_PEAK)
        ):
            self._voice_at = t0
        seq = self._seq
        self._seq = seq + 1
        if self.muted:
            return
        if link is not None and link.session.ready:
            link.send_mic(chunk, rate, self._mic_live, t0, seq)
        elif self._wanted and self._mic_live and not self._stopping:
            self._buffer.push(MicFrame(seq, chunk.copy(), rate))
        elif self._mode == "wake_word" and not self._wanted:
            self._preroll.push(MicFrame(seq, chunk.copy(), rate))

    def wake(self, after_seq: int) -> str:
        """The wake word was heard, ending after mic chunk `after_seq`. Idle: open a hands-free
        conversation, sending what was said after the word (the pre-roll's chunks after
        `after_seq`, then buffered until the session is ready): "opened". The agent speaking:
        "barge_in". Else "ignored"."""
        if self._stopping or self.muted:
            return "ignored"
        if self.limited and not self._wanted:
            return "limited"
        if self._wanted:
            if self._barge_in():
                self._counters["barge_ins"] += 1
                return "barge_in"
            return "ignored"
        self._counters["wakes"] += 1
        self._wanted = True
        self._mic_live = True
        self._woken = True
        self._buffer.clear()
        for frame in self._preroll.take():
            if frame.seq > after_seq:
                self._buffer.push(frame)
        self._wake.set()
        return "opened"

    def start_conversation(self) -> str:
        """Open a hands-free conversation from outside (Home Assistant): "opened", or
        "already_open", "muted", "limited", "stopping" when nothing was opened."""
        if self._stopping:
            return "stopping"
        if self.muted:
            return "muted"
        if self._wanted:
            return "already_open"
        if self.limited:
            return "limited"
        self._wanted = True
        self._mic_live = True
        self._buffer.clear()
        self._preroll.clear()
        self._wake.set()
        return "opened"

    def tell(self, text: str, reply: bool) -> bool:
        """Send text into the open conversation: a user_message the agent answers (reply), or a
        contextual_update it only takes in. False when no session is up to take it."""
        link = self._link
        if link is None or not link.session.ready or link.done.is_set():
            return False
        frame = messages.user_message(text) if reply else messages.contextual_update(text)
        link.act([Send(frame)])
        return True

    def toggle(self) -> None:
        """The button in wake_word mode: idle, open a conversation (as the wake word does);
        the agent speaking, barge in; a conversation open and the agent silent, end it."""
        link = self._link
        speaking = self._audio.playing or (link is not None and link.session.speaking())
        if self._wanted and not speaking:
            self.end_conversation()
        else:
            self.wake(self._seq - 1)

    def set_muted(self, muted: bool) -> bool:
        """Privacy mute: close what is open (the agent cut mid-sentence), send and keep no mic
        audio, open nothing until unmuted; unmuted: idle again (always_on: a session opens).
        False when it already was so."""
        if muted == self.muted:
            return False
        if muted:
            self.end_conversation()
            self._preroll.clear()
            self.muted = True
            self._wake.set()  # the run loop reports MUTED (or will, once the link has closed)
        else:
            self.muted = False
            self._wanted = self._always_on and not self.limited
            self._mic_live = self._wanted
            self._wake.set()
        return True

    def set_limited(self, limited: bool) -> None:
        """The daily limit: close what is open and open nothing (a wake is refused) until it is
        lifted; lifted, always_on reopens."""
        if limited == self.limited:
            return
        self.limited = limited
        if limited:
            if self._wanted:
                self.end_conversation()
        elif not self.muted:
            self._wanted = self._always_on
            self._mic_live = self._always_on
        self._wake.set()

    @property
    def session_open(self) -> bool:
        link = self._link
        return link is not None and link.session.ready and not link.done.is_set()

    def quiet_for_s(self) -> float:
        """How long neither side has spoken in the open session (0 when none is open)."""
        link = self._link
        if link is None or not link.session.ready:
            return 0.0
        return max(0.0, link.now() - link.session.last_activity)

    def press(self) -> None:
        """Button down: open a session if none, mic live, barge in on the agent."""
        if self.muted or (self.limited and not self._wanted):
            return
        self._mic_live = True
        if self._barge_in():
            self._counters["barge_ins"] += 1
        if not self._wanted and not self._stopping:
            self._wanted = True
            self._wake.set()

    def cut_agent(self) -> None:
        """Silence the agent (an announcement that interrupts): its turn is cut as by a barge-in;
        with no session up, the audio still playing is dropped."""
        if not self._barge_in() and self._audio.playing:
            self._audio.interrupt()

    def _barge_in(self) -> bool:
        """Cut the agent's current turn in the session (the rest of it dropped, the service
        told); False when no session is up or the agent is not speaking."""
        link = self._link
        if link is None or not link.session.ready:
            return False
        if not (self._audio.playing or link.session.speaking()):
            return False
        link.act(link.session.barge_in(link.now()))
        return True

    def release(self) -> None:
        """Button up: mic gated (silence is streamed; the session is kept); hands-free: nothing."""
        if not self._hands_free:
            self._mic_live = False

    def end_conversation(self) -> None:
        """Long hold: close the current session (1000) and go idle."""
        self._wanted = False
        self._carry = False
        self._history.clear()
        self._buffer.clear()
        self._unconfirmed = []
        if not self._always_on:
            self._mic_live = False
        self._preroll.clear()
        self._interrupt.set()
        self._audio.interrupt()  # the user ended it: stop the agent mid-sentence too
        link = self._link
        if link is not None and not link.done.is_set():
            link.act(link.session.close(1000, "end of conversation"))

    def update_config(self, cfg: Config) -> None:
        """New timeouts apply now; agent settings from the next session."""
        self._cfg = cfg
        conv = cfg.conversation
        self._policy.update_config(conv.reconnect)
        self._receive_timeout = conv.receive_timeout_s
        self._buffer.seconds = conv.resume_buffer_s
        self._mode = conv.mode
        self._hands_free = conv.mode != "push_to_talk"
        if not self._wanted:
            self._preroll.clear()
        always_on = conv.mode == "always_on"
        if always_on != self._always_on:
            self._always_on = always_on
            self._mic_live = always_on or (self._hands_free and self._wanted)
            if always_on and not self._wanted and not self.muted and not self.limited:
                self._wanted = True
                self._wake.set()

    def set_receive_timeout(self, seconds: float) -> None:
        self._receive_timeout = max(0.05, float(seconds))

    def set_resume_buffer_s(self, seconds: float) -> None:
        self._buffer.seconds = max(0.0, float(seconds))
        if self._link is not None:
            self._link.unconfirmed.seconds = self._buffer.seconds

    def set_probe_timing(self, interval_s: float, timeout_s: float) -> None:
        """Link probes (WebSocket pings) while a session lives; see tuning.probe_timing."""
        self._probe_interval = max(0.1, float(interval_s))
        self._probe_timeout = max(0.1, float(timeout_s))

    def quiet(self) -> bool:
        """Neither side speaking, no tool call pending."""
        if self._audio.playing:
            return False
        if self._mic_live and not self._hands_free:
            return False
        if time.perf_counter() - self._voice_at < USER_QUIET_S:
            return False
        link = self._link
        if link is not None:
            s = link.session
            if s.in_reply or s.waiting_reply or s.pending_tools:
                return False
            if link.now() - s.user_active_at < USER_QUIET_S:
                return False
        return True

    def snapshot(self) -> dict[str, Any]:
        link = self._link
        counters = dict(self._counters)
        counters["resume_dropped"] = self._buffer.dropped
        counters["replayed_ms"] = round(self._replayed_s * 1000)
        counters["replay_dropped_ms"] = round(self._replay_dropped_s * 1000)
        if link is not None:
            counters["out_dropped"] += link.out_dropped
        age = None
        conversation_id = None
        if link is not None:
            s = link.session
            conversation_id = s.conversation_id
            if s.ready_at is not None:
                age = round(link.now() - s.ready_at, 1)
            for key, value in (
                ("malformed", s.malformed),
                ("unknown", s.unknown),
                ("stale_audio", s.stale_audio),
                ("tool_calls", s.tool_calls),
                ("turns", s.turns),
            ):
                counters[key] += value
        return {
            "state": str(self._state),
            "mode": self._mode,
            "muted": self.muted,
            "conversation_id": conversation_id,
            "age_s": age,
            "last_close": dict(self._last_close),
            "counters": counters,
            "turns": counters["turns"],
            "rollovers": counters["rollovers"],
            "degraded": self._policy.degraded,
            "pong_latency": self.pong_latency.summary(),  # ping received -> pong written
            "round_trip": self.round_trip.summary(),  # the link's RTT (service's ping_ms)
            "pong_ms_p50": self.round_trip.summary().get("p50_ms"),  # for adaptive tuning
            "mic_to_wire": self.mic_to_wire.summary(),
            "receive_timeout_s": self._receive_timeout,
            "resume_buffer_s": self._buffer.seconds,
            "probe": {
                "interval_s": self._probe_interval,
                "timeout_s": self._probe_timeout,
                "rtt": self.probe_rtt.summary(),
            },
            "probe_rtt_ms_p99": self.probe_rtt.summary().get("p99_ms"),  # for adaptive tuning
        }

    # --- sessions ------------------------------------------------------------------------------

    def _set_state(self, state: State, **fields: Any) -> None:
        """Report a state; the same state again only when it brings a field value not reported
        with it before (a new conversation id after a rollover, the next attempt number)."""
        given = {k: v for k, v in fields.items() if v is not None}
        if state == self._state and given.items() <= self._fields.items():
            return
        self._state = state
        self._fields = given
        try:
            self._on_state(state, given)
        except Exception:
            log.exception("on_state callback failed")

    async def _until_stopped(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await coro, or raise _Stopped as soon as stop() is called."""
        task = asyncio.ensure_future(coro)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise _Stopped
        return task.result()

    def _settings(self, carry: bool, extra: list[tuple[str, str]] | None = None) -> SessionSettings:
        cfg = self._cfg
        a = cfg.agent
        o = a.overrides
        first = o.first_message
        if carry and first is not None:
            first = ""  # continuing: no greeting (only when the agent allows this override)
        overrides = messages.build_overrides(
            first, o.prompt, o.language, o.voice_id, o.max_duration_s
        )
        lines = [*self._history, *(extra or [])]
        context = context_text(lines, cfg.conversation.context_turns) if carry else ""
        return SessionSettings(
            overrides=overrides,
            # the time as the session opens; a variable of the same name in the config wins
            dynamic_variables={**time_variables(self._clock()), **a.dynamic_variables},
            custom_llm_extra_body=dict(a.custom_llm_extra_body),
            user_id=a.user_id,
            metadata_timeout_s=a.metadata_timeout_s,
            idle_close_s=None if self._always_on else cfg.conversation.idle_close_s,
            voice_peak=VOICE_PEAK if self._hands_free else None,
            context=context or None,
        )

    def _start_link(self, ws: Any, settings: SessionSettings) -> SessionLink:
        loop = asyncio.get_running_loop()
        session = Session(settings, loop.time())
        link = SessionLink(
            ws,
            session,
            self._audio,
            self._tools,
            receive_timeout_s=lambda: self._receive_timeout,
            on_ready=self._on_ready,
            on_tick=self._on_tick,
            on_heard=lambda text: self.on_heard(text),
            mic_to_wire=self.mic_to_wire,
            pong_latency=self.pong_latency,
            round_trip=self.round_trip,
            probe_timing=lambda: (self._probe_interval, self._probe_timeout),
            probe_rtt=self.probe_rtt,
            replay_s=self._buffer.seconds,
        )
        self._counters["sessions"] += 1
        link.task = asyncio.create_task(link.run())
        link.task.add_done_callback(self._link_done)
        return link

    @staticmethod
    def _link_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("session I/O failed: %s", exc, exc_info=exc)

    def _on_ready(self, link: SessionLink) -> None:
        s = link.session
        event(
            log,
            "session.opened",
            conversation_id=s.conversation_id,
            input_format=s.input_format.name,
            output_format=s.output_format.name,
            carried=bool(s.settings.context),
        )
        if link is self._link:
            if not self._wanted or self._stopping:
                link.act(s.close(1000, "end of conversation"))
                return
            self._activate(link, rolled_over=self._after_cap)

    def _activate(self, link: SessionLink, rolled_over: bool) -> None:
        """This link now carries the mic: replay what the last link left unconfirmed, then the
        resume buffer, each frame once, in capture order. rolled_over: it continues a session
        that reached the duration cap (by a rollover or a cap restart), reported as
        reason=rollover (the daemon speaks announcements.rollover)."""
        self._link = link
        self._near_cap = False
        self._after_cap = False
        unconfirmed, self._unconfirmed = self._unconfirmed, []
        plan = plan_replay(unconfirmed, self._buffer.take(), self._buffer.seconds)
        link.reserve(len(plan.frames))
        for f in plan.frames:
            link.send_mic(f.chunk, f.rate, True, None, f.seq, f.replayed)
        if unconfirmed or plan.dropped:
            self._counters["replays"] += 1
            self._replayed_s += plan.replayed_s
            self._replay_dropped_s += plan.dropped_s
            event(
                log,
                "mic.replayed",
                conversation_id=link.session.conversation_id,
                replayed_s=round(plan.replayed_s, 2),
                buffered_s=round(plan.buffered_s, 2),
                dropped_s=round(plan.dropped_s, 2),
                repeated_s=round(plan.repeated_s, 2) or None,
            )
        self._set_state(
            State.SPEAKING if self._audio.playing else State.LISTENING,
            conversation_id=link.session.conversation_id,
            reason="rollover" if rolled_over else None,
        )

    async def _close_link(self, link: SessionLink, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S + 1.0):
                await link.close(1000, reason)
        except TimeoutError:
            link.ws.transport.abort()

    async def _attempt(self) -> None:
        """One session from connect to end, then act on how it ended."""
        degraded = self._policy.degraded
        self._after_cap = self._cap_restart
        woken, self._woken = self._woken, False
        if self._cap_restart:  # a planned continuation, not trouble: no backoff, no alarm
            self._cap_restart = False
            self._set_state(State.CONNECTING, reason="duration_cap")
        elif woken and self._policy.attempt == 0:
            # The wake word: the box is already listening (the pre-roll keeps what is said)
            # while the session opens behind it.
            self._set_state(State.LISTENING, reason="wake_word")
        elif not degraded:
            retrying = self._policy.attempt > 0
            self._set_state(
                State.RECONNECTING if retrying else State.CONNECTING,
                attempt=self._policy.attempt or None,
            )
        try:
            ws = await self._until_stopped(open_socket(self._cfg.agent, self._api_key))
        except ConnectFailure as failure:
            self._counters["connect_failures"] += 1
            await self._ended(failure.end, None, None)
            return
        settings = self._settings(self._carry)  # once the socket is open: the time is current
        link = self._start_link(ws, settings)
        self._link = link
        while True:
            try:
                await self._until_stopped(link.done.wait())
            except _Stopped:
                await self._close_link(link, "shutdown")
                raise
            nxt = self._successor.pop(link, None)
            if nxt is None:
                break
            self._log_closed(link, SessionEnd(EndClass.NORMAL, "rolled over to a new session"))
            self._absorb(link, history=False)
            link = nxt
        if self._link is link:
            self._link = None
        end = classify_end(**link.session.end_fields())
        self._absorb(link, history=True)
        self._unconfirmed = self._left_unheard(link, end)
        if link.session.failure == "half_open":
            self._counters["half_open"] += 1
        if link.oversize:
            self._counters["oversize_frames"] += 1
            event(
                log,
                "frame.oversize",
                logging.WARNING,
                conversation_id=link.session.conversation_id,
                limit_bytes=MAX_FRAME,
            )
        await self._ended(end, link.session.lifetime_s(), link)

    def _left_unheard(self, link: SessionLink, end: SessionEnd) -> list[MicFrame]:
        """The mic frames the ended link sent and the service never confirmed, to replay.

        After a failure: all of them. After a clean close (a close handshake says nothing of what
        the service read before it): only when the service closed (not we, not the agent's
        end_call) while the user was talking, so their words go to the next session; then a
        push-to-talk conversation goes on instead of going idle (`_continue_after_close`).
        """
        frames = link.unconfirmed.take()
        s = link.session
        if end.end_class not in (EndClass.NORMAL, EndClass.DURATION_CAP):
            return frames
        if s.local_close or s.end_call or not frames:
            return []
        talking = (
            (self._mic_live and not self._hands_free)  # the button is held
            or link.now() - s.user_active_at < USER_QUIET_S  # the service's VAD heard them
            or has_voice(frames, VOICE_PEAK)
        )
        if not talking:
            return []
        self._continue_after_close = True
        event(
            log,
            "session.closed_while_talking",
            logging.WARNING,
            conversation_id=s.conversation_id,
            close_code=s.close_code,
            close_reason=s.close_reason,
            unheard_s=round(sum(f.seconds for f in frames), 2),
        )
        return frames

    async def _failed(self, exc: Exception) -> None:
        """An exception no end classifies escaped a session: log it with its traceback, close
        what is open and retry with backoff, so one bug does not take the appliance down."""
        log.error(
            "supervisor.error error=%s detail=%s",
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra={"EVENT": "supervisor.error", "ERROR": type(exc).__name__},
        )
        link, self._link = self._link, None
        if link is not None and not link.done.is_set():
            await self._close_link(link, "internal error")
        end = SessionEnd(EndClass.TRANSIENT, f"internal error: {type(exc).__name__}: {exc}")
        await self._ended(end, None, None)

    def _absorb(self, link: SessionLink, history: bool) -> None:
        s = link.session
        self._rollover_tried.discard(link)
        self._counters["out_dropped"] += link.out_dropped
        for key, value in (
            ("malformed", s.malformed),
            ("unknown", s.unknown),
            ("stale_audio", s.stale_audio),
            ("tool_calls", s.tool_calls),
            ("turns", s.turns),
        ):
            self._counters[key] += value
        if history:
            self._history.extend(s.transcript)

    def _log_closed(self, link: SessionLink, end: SessionEnd) -> None:
        s = link.session
        lifetime = s.lifetime_s()
        self._last_close = {
            "code": s.close_code,
            "reason": s.close_reason,
            "class": str(end.end_class),
            "why": end.reason,
            "conversation_id": s.conversation_id,
        }
        level = (
            logging.INFO
            if end.end_class in (EndClass.NORMAL, EndClass.DURATION_CAP)
            else logging.WARNING
        )
        event(
            log,
            "session.closed",
            level,
            conversation_id=s.conversation_id,
            close_code=s.close_code if s.close_code is not None else 1006,
            close_reason=s.close_reason,
            **_cls(end),
            reason=end.reason,
            lifetime_s=round(lifetime, 2) if lifetime is not None else None,
            turns=s.turns,
        )

    async def _ended(
        self, end: SessionEnd, lifetime: float | None, link: SessionLink | None
    ) -> None:
        if link is not None:
            self._log_closed(link, end)
        else:
            self._last_close = {
                "code": None,
                "reason": "",
                "class": str(end.end_class),
                "why": end.reason,
                "conversation_id": None,
            }
            event(
                log,
                "connect.failed",
                logging.WARNING,
                **_cls(end),
                reason=end.reason,
            )
        was_degraded = self._policy.degraded
        s = link.session if link is not None else None
        worked = s is not None and s.ready_at is not None and s.turns >= 2
        decision = self._policy.session_ended(end, lifetime, worked)
        if self._stopping:
            return
        local = link is not None and link.session.local_close
        if decision.degraded:
            self._carry = False
            self._unconfirmed = []  # minutes old by the next session
            if not was_degraded:
                self._counters["degraded"] += 1
                event(
                    log,
                    "session.degraded",
                    logging.ERROR,
                    cause=decision.reason,
                    retry_s=round(decision.delay_s, 1),
                )
            self._set_state(
                State.DEGRADED, reason=decision.reason, delay_s=round(decision.delay_s, 2)
            )
            await self._sleep(decision.delay_s)
            return
        if end.end_class is EndClass.DURATION_CAP:
            self._counters["duration_caps"] += 1
            self._carry = True
            self._cap_restart = True
            event(log, "reconnect.scheduled", attempt=0, delay_s=0, **_cls(end))
            return
        if end.end_class is EndClass.NORMAL and self._continue_after_close:
            # The service closed while the user was talking: their words go to a new session
            # (replayed), with the conversation so far.
            self._continue_after_close = False
            self._carry = bool(self._history) or self._carry
            event(log, "reconnect.scheduled", attempt=0, delay_s=0, **_cls(end))
            return
        if end.end_class is EndClass.NORMAL:
            self._carry = False
            self._history.clear()
            if not self._always_on or self._one_conversation:  # idle until the next press
                self._wanted = False
                self._mic_live = False
                self._buffer.clear()
            if link is not None and not local:
                await self._drain()  # the agent's goodbye plays out before we go idle
            if decision.delay_s > 0:
                await self._sleep(decision.delay_s)
            return
        # TRANSIENT: back off, then continue the conversation in a new session.
        self._carry = bool(self._history) or self._carry
        self._counters["reconnects"] += 1
        event(
            log,
            "reconnect.scheduled",
            attempt=decision.attempt,
            delay_s=round(decision.delay_s, 3),
            **_cls(end),
        )
        self._set_state(
            State.RECONNECTING,
            attempt=decision.attempt,
            delay_s=round(decision.delay_s, 3),
            reason=end.reason,
        )
        await self._sleep(decision.delay_s)

    async def _sleep(self, seconds: float) -> None:
        """Wait, cut short by stop() or end_conversation()."""
        if seconds <= 0:
            return
        self._interrupt.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._interrupt.wait()
        except TimeoutError:
            pass

    async def _drain(self) -> None:
        self._set_state(State.SPEAKING if self._audio.playing else self._state)
        try:
            await self._until_stopped(self._audio.drain(DRAIN_MAX_S))
        except _Stopped:
            raise
        except Exception:
            log.exception("drain failed")

    # --- background: speaking state and rollover -----------------------------------------------

    def _on_tick(self, link: SessionLink) -> None:
        """Every link tick: follow playback into SPEAKING/LISTENING, and consider a rollover."""
        if link is not self._link or not link.session.ready or link.done.is_set():
            return
        if self._state in (State.LISTENING, State.SPEAKING):
            playing = self._audio.playing
            self._set_state(
                State.SPEAKING if playing else State.LISTENING,
                conversation_id=link.session.conversation_id,
            )
        self._maybe_rollover(link)

    def _cap_s(self) -> float:
        o = self._cfg.agent.overrides.max_duration_s
        return float(o if o else self._cfg.conversation.max_duration_s)

    def _maybe_rollover(self, link: SessionLink) -> None:
        conv = self._cfg.conversation
        if not conv.rollover or link in self._rollover_tried or self._rollover_task is not None:
            return
        ready_at = link.session.ready_at
        if ready_at is None or self._stopping:
            return
        if link.now() - ready_at < self._cap_s() - conv.rollover_margin_s:
            self._near_cap = False
            return
        self._near_cap = True
        if not self.quiet():
            return
        self._rollover_tried.add(link)
        self._rollover_task = asyncio.create_task(self._rollover(link))

    async def _rollover(self, old: SessionLink) -> None:
        """Open the next session, move the mic to it, then close the old one with 1000."""
        try:
            try:
                ws = await open_socket(self._cfg.agent, self._api_key)
            except ConnectFailure as failure:
                event(log, "rollover.failed", logging.WARNING, reason=failure.end.reason)
                return
            except Exception as exc:  # a bug: logged; the current session goes on to the cap
                log.error(
                    "rollover.failed error=%s detail=%s",
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                    extra={"EVENT": "rollover.failed", "ERROR": type(exc).__name__},
                )
                return
            settings = self._settings(carry=True, extra=list(old.session.transcript))
            new = self._start_link(ws, settings)
            timeout = self._cfg.agent.metadata_timeout_s
            try:
                async with asyncio.timeout(timeout):
                    await new.ready.wait()
            except TimeoutError:
                pass
            except asyncio.CancelledError:  # shutdown while the next session was opening
                new.ws.transport.abort()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await new.done.wait()  # its I/O loop has seen the abort and ended
                raise
            if (
                not new.ready.is_set()
                or new.done.is_set()
                or old.done.is_set()
                or self._link is not old
                or self._stopping
                or not self._wanted  # ended (or stopped) while the next session was opening
            ):
                if not new.ready.is_set():
                    event(log, "rollover.failed", logging.WARNING, reason="new session not ready")
                elif not self._wanted and not self._stopping:
                    event(log, "rollover.abandoned", reason="conversation ended")
                else:
                    event(log, "rollover.failed", logging.WARNING, reason="superseded")
                await self._close_link(new, "rollover abandoned")
                return
            self._successor[old] = new
            self._history.extend(old.session.transcript)
            self._counters["rollovers"] += 1
            event(
                log,
                "session.rollover",
                old=old.session.conversation_id,
                new=new.session.conversation_id,
            )
            self._activate(new, rolled_over=True)
            await self._close_link(old, "rollover")
        finally:
            self._rollover_task = None
