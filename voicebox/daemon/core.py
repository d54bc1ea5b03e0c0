"""The daemon: owns the parts and the one `State` they are driven by (the LED, STATUS=, the status
socket and Home Assistant show it; every transition is one log event).

Lifecycle: config → audio → GPIO → status → READY=1 (never waiting for the cloud); SIGHUP reloads
(an invalid file keeps the old config); SIGTERM stops within a few seconds and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import re
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from voicebox import __version__, config, logs, mode, mute, usage, volume
from voicebox.announcements import Announcer
from voicebox.audio.devices import AudioDeviceError
from voicebox.audio.echo.processor import processing_settings
from voicebox.audio.engine import AudioEngine
from voicebox.audio.port import Chunk
from voicebox.config import EX_CONFIG, Config, ConfigError, Secret
from voicebox.convai.supervisor import Supervisor
from voicebox.convai.tools import builtin_tools
from voicebox.daemon.gpio import GpioParts
from voicebox.daemon.home import HomeAssistant
from voicebox.daemon.report import (
    TROUBLE,
    health_counters,
    status_text,
    timers_command,
    volume_command,
)
from voicebox.daemon.retune import apply_changes, initial_changes
from voicebox.gpio import ButtonAction
from voicebox.monitor import Monitor, Sample, detect_environment, health_line_fields
from voicebox.mqtt import discovery
from voicebox.state import State
from voicebox.status import MetricsFile, StatusServer, write_metrics_periodically
from voicebox.systemd import Notifier, feed_watchdog
from voicebox.timers import tools as timer_tools
from voicebox.timers.ringer import Timers
from voicebox.tuning import Tuner, TuningChange
from voicebox.wake import WakeError, WakeListener

log = logging.getLogger("voicebox.daemon")

EX_UNAVAILABLE = 69  # the audio configuration cannot work at all (a missing device is waited for)
STOP_TIMEOUT_S = 5.0


class Daemon:
    """One running voicebox and the one state its parts are driven by: one class (over 250 lines)
    as each handler reads or changes that state; what it wires lives beside it."""

    def __init__(
        self, cfg: Config, config_path: Path, api_key: Secret | None, simulate_button: bool
    ) -> None:
        self.configured_mode = cfg.conversation.mode
        chosen = mode.load(cfg.paths.state_dir, cfg.conversation.mode)
        if chosen is not None:  # chosen at run time (Home Assistant) over this configured mode
            cfg = config.with_changes(cfg, **{"conversation.mode": chosen})
        self.cfg = cfg
        self.config_path = config_path
        self.api_key = api_key
        self.simulate_button = simulate_button
        self.state = State.IDLE
        self.state_fields: dict[str, Any] = {}
        self.started = time.monotonic()
        self.notifier = Notifier()
        self.audio = AudioEngine(cfg.audio, processing=processing_settings(cfg))
        self.env = detect_environment()
        self.tuner = Tuner(cfg, self.env)
        self.monitor = Monitor(cfg.monitor)
        self.volume = volume.Volume(
            cfg.paths.state_dir,
            volume.configured_level(cfg.audio.output.volume),
            self.audio.set_volume,
        )
        self.tools = builtin_tools(self.audio, status=self.snapshot, set_level=self.set_volume)
        self.supervisor = Supervisor(cfg, self.audio, api_key, self.tools, self._on_state)
        self.announcer = Announcer(cfg, self.audio, api_key, cut_agent=self.supervisor.cut_agent)
        self.timers: Timers | None = None
        if cfg.timers.enabled:  # read at start: a change of timers.enabled needs a restart
            self.timers = Timers(cfg.timers, cfg.paths.state_dir, self.announcer,
                                 on_change=self._on_timers)  # fmt: skip
            timer_tools.register(self.tools, self.timers)
        self.supervisor.on_heard = self._on_heard
        self.wake: WakeListener | None = None
        self.usage = usage.UsageLedger.load(cfg.paths.state_dir)
        self.limit = usage.DailyLimit(cfg.conversation.daily_limit_minutes)
        self.usage.tick(time.monotonic(), datetime.datetime.now(), False, False)
        self.gpio = GpioParts(
            self._on_button,
            set_muted=lambda muted: self.set_muted(muted, "gpio"),
            is_muted=lambda: self.supervisor.muted,
            step_volume=lambda d: self.set_volume(self.volume.level + d * volume.STEP, "gpio"),
        )
        self.status_server: StatusServer | None = None
        self.home = HomeAssistant(self, self._mqtt_values, self.env.board)
        self._heard: str | None = None  # the user's last final transcript (mqtt, if published)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._supervisor_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._announcement: asyncio.Task[None] | None = None
        self._shutting_down = False  # a SIGHUP from now on is ignored (GPIO is being closed)

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        logs.event(
            log,
            "daemon.starting",
            version=__version__,
            config=str(self.config_path),
            board=self.env.board,
            profile=self.env.profile,
            mode=self.cfg.conversation.mode,
        )
        try:
            self._set_wake(self.cfg)
        except WakeError as exc:
            logs.event(log, "config.invalid", logging.ERROR, problem=str(exc))
            return EX_CONFIG
        try:
            await self.audio.start(self._on_mic_chunk)
        except AudioDeviceError as exc:
            logs.event(log, "audio.unavailable", logging.ERROR, error=str(exc))
            self._set_wake(None)
            return EX_UNAVAILABLE
        if self.volume.level != self.volume.configured:
            logs.event(log, "volume.restored", level=self.volume.level,
                       configured=self.volume.configured)  # fmt: skip
        if mute.load(self.cfg.paths.state_dir):
            self.supervisor.set_muted(True)
            logs.event(log, "mute.restored", muted=True)
        self._apply_limit(datetime.datetime.now(), announce=False)  # over today's limit at start
        self._open_gpio(loop)
        await self._open_status()
        if self.cfg.conversation.mode != self.configured_mode:
            logs.event(log, "mode.restored", mode=self.cfg.conversation.mode,
                       configured=self.configured_mode)  # fmt: skip
        self.home.start(self.cfg.mqtt)
        self._retune(initial_changes(self.tuner.current))
        self._tasks = [asyncio.create_task(self.monitor.run(self._on_sample), name="monitor")]
        if self.timers is not None:
            self._tasks.append(asyncio.create_task(self.timers.run(), name="timers"))
        interval = self.notifier.watchdog_interval_s
        if interval:
            self._tasks.append(
                asyncio.create_task(
                    feed_watchdog(self.notifier, self._healthy, interval), name="watchdog"
                )
            )
        if self.cfg.monitor.health_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._health_lines(), name="health"))
        if self.cfg.monitor.metrics_path:
            metrics = MetricsFile(Path(self.cfg.monitor.metrics_path))
            self._tasks.append(
                asyncio.create_task(
                    write_metrics_periodically(
                        metrics, self.snapshot, self.cfg.monitor.metrics_interval_s
                    ),
                    name="metrics",
                )
            )
        waiting = self.audio.waiting_for
        if waiting is not None:  # a device late at boot: up and saying so, not restart-looping
            self._set_state(State.DEGRADED, {"reason": "audio_device", "waiting_for": waiting})
        self.notifier.ready(self._status_text())
        logs.event(log, "daemon.ready", state=self.state)
        stopped = asyncio.create_task(self._stop.wait())
        if waiting is not None:
            opened = asyncio.create_task(self.audio.opened())
            await asyncio.wait([stopped, opened], return_when=asyncio.FIRST_COMPLETED)
            if not opened.done():
                opened.cancel()
                await self.shutdown()
                return 0
            self._set_state(State.IDLE, {})
        self._supervisor_task = asyncio.create_task(self.supervisor.run(), name="supervisor")
        self._tasks.append(self._supervisor_task)
        self._announce("ready")
        await asyncio.wait([stopped, self._supervisor_task], return_when=asyncio.FIRST_COMPLETED)
        crashed = self._supervisor_task.done() and not self._stop.is_set()
        await self.shutdown()
        if crashed:
            error = self._supervisor_task.exception()
            logs.event(log, "daemon.supervisor_died", logging.CRITICAL, error=repr(error))
            return 1
        return 0

    async def shutdown(self) -> None:
        self._shutting_down = True
        self._set_state(State.STOPPING, {})
        self.notifier.stopping()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.supervisor.stop()
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.audio.stop()
        self._set_wake(None)
        await self.home.stop()
        self._count_usage(time.monotonic())
        self.usage.save()
        self.gpio.close()
        if self.status_server is not None:
            await self.status_server.stop()
        logs.event(log, "daemon.stopped", uptime_s=round(time.monotonic() - self.started, 1))

    async def reload(self) -> None:
        """SIGHUP: apply the file if it is valid; READY=1 follows RELOADING=1 whatever happens."""
        if self._shutting_down:  # it would reopen the GPIO and wake the supervisor being closed
            logs.event(log, "config.reload_ignored", reason="stopping")
            return
        self.notifier.reloading()
        try:
            await self._reload()
        except Exception as exc:  # a bug applying a valid file: keep running, say what failed
            logs.event(log, "config.reload_failed", logging.ERROR, error=repr(exc))
        finally:
            self.notifier.ready(self._status_text())

    async def _reload(self) -> None:
        try:
            new = config.load(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                logs.event(log, "config.reload_refused", logging.ERROR, problem=problem)
            return
        configured = new.conversation.mode
        if configured == self.configured_mode and self.cfg.conversation.mode != configured:
            new = config.with_changes(new, **{"conversation.mode": self.cfg.conversation.mode})
        elif configured != self.configured_mode:  # the file's new mode wins over a chosen one
            mode.store(new.paths.state_dir, configured, configured)
        if (new.conversation.mode, new.wake) != (self.cfg.conversation.mode, self.cfg.wake):
            try:
                self._set_wake(new)
            except WakeError as exc:
                logs.event(log, "config.reload_refused", logging.ERROR, problem=str(exc))
                return
        old_gpio, self.cfg = self.cfg.gpio, new
        logging.getLogger().setLevel(new.logging.level.upper())
        self.supervisor.update_config(new)
        self.announcer.update_config(new)
        self.limit.minutes = new.conversation.daily_limit_minutes
        if self.timers is not None:
            self.timers.cfg = new.timers
            self.timers.book.limit = new.timers.max
        if new.timers.enabled != (self.timers is not None):
            logs.event(log, "config.restart_needed", key="timers.enabled")
        self.volume.reconfigure(volume.configured_level(new.audio.output.volume))
        self.audio.set_processing(processing_settings(new))
        self.gpio.apply(old_gpio, new.gpio, self._shown_state())
        self.configured_mode = configured
        self.tuner = Tuner(new, self.env)
        self._retune(initial_changes(self.tuner.current))
        await self.home.reload(new.mqtt)
        logs.event(log, "config.reloaded", config=str(self.config_path))

    # --- parts ---------------------------------------------------------------------------

    def _open_gpio(self, loop: asyncio.AbstractEventLoop) -> None:
        self.gpio.open(loop, self.cfg.gpio, self.simulate_button, self._shown_state())

    async def _open_status(self) -> None:
        path = Path(self.cfg.paths.runtime_dir) / "status.sock"
        server = StatusServer(
            path,
            self.snapshot,
            {
                "mute": lambda _: self.set_muted(True),
                "unmute": lambda _: self.set_muted(False),
                "volume": lambda a: volume_command(a, lambda: self.volume.level, self.set_volume),
                "timers": lambda a: timers_command(a, self.timers),
            },
        )
        try:
            await server.start()
        except OSError as exc:
            logs.event(log, "status.unavailable", logging.WARNING, path=str(path), error=str(exc))
            return
        self.status_server = server

    def _set_wake(self, cfg: Config | None) -> None:
        """The wake-word listener the config asks for (None: stop it); WakeError if its model
        does not load (the listener running before is kept then)."""
        listener = None
        if cfg is not None and cfg.conversation.mode == "wake_word":
            listener = WakeListener(cfg.wake, asyncio.get_running_loop(), self._on_wake)
        if self.wake is not None:
            self.wake.stop()
        self.wake = listener
        if listener is not None:
            listener.start()
            logs.event(log, "wake.listening", model=listener.cfg.model, word=listener.wake_word)

    def _mqtt_values(self) -> dict[str, str]:
        heard = self._heard if self.cfg.mqtt.publish_transcripts else None
        return discovery.values(self.snapshot(), self.state_fields, heard)

    def start_conversation(self, source: str) -> str:
        """Open a conversation (Home Assistant's button): the supervisor's outcome."""
        outcome = self.supervisor.start_conversation()
        if outcome == "opened":
            logs.event(log, "conversation.started", source=source)
            self.announcer.chime("wake")
        return outcome

    def end_conversation(self, source: str) -> None:
        logs.event(log, "conversation.ended", source=source, state=self.state)
        self.supervisor.end_conversation()

    def say(self, text: str, source: str) -> None:
        """Speak text through the announcement path (cached or live TTS, else a tone)."""
        self._spawn(self.announcer.say(text, source))

    def tell(self, text: str, reply: bool) -> bool:
        return self.supervisor.tell(text, reply)

    def set_mode(self, wanted: str, source: str) -> str | None:
        """conversation.mode changed at run time: kept in the state directory until the YAML
        names another mode; the reason when it cannot be (a wake-word model that fails)."""
        before = self.cfg.conversation.mode
        if wanted == before:
            return None
        new = config.with_changes(self.cfg, **{"conversation.mode": wanted})
        try:
            self._set_wake(new)
        except WakeError as exc:
            return str(exc)
        self.cfg = new
        if before == "always_on":  # the open mic of always_on closes with it
            self.supervisor.end_conversation()
        self.supervisor.update_config(new)
        mode.store(new.paths.state_dir, wanted, self.configured_mode)
        self.home.refresh()
        logs.event(log, "mode.changed", mode=wanted, previous=before, source=source,
                   configured=self.configured_mode)  # fmt: skip
        self.notifier.status(self._status_text())
        return None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- events --------------------------------------------------------------------------

    def set_muted(self, muted: bool, source: str = "socket") -> dict[str, Any]:
        """Mute or unmute (the status socket, the button, gpio.mute): kept in the state
        directory, a chime. A closed mute switch refuses an unmute from anywhere else."""
        switch = self.gpio.mute_switch
        if not muted and source != "gpio" and switch is not None and switch.holds_mute:
            logs.event(log, "mute.unmute_refused", source=source, pin=switch.cfg.pin)
            return {"error": f"the mute switch on GPIO{switch.cfg.pin} is closed: open it"}
        changed = self.supervisor.set_muted(muted)
        if changed:
            mute.store(self.cfg.paths.state_dir, muted)
            logs.event(log, "mute.on" if muted else "mute.off", state=self.state, source=source)
            self.announcer.chime("mute" if muted else "unmute")
            self.home.refresh()
        return {"muted": muted, "changed": changed, "state": "muted" if muted else "idle"}

    def set_volume(self, level: int, source: str) -> int:
        """Set the output level (the tool, the socket, the buttons): kept in the state directory;
        a short tone at the new level, unless something is playing (that is heard at it)."""
        before = self.volume.level
        level = self.volume.set(level, source)
        if level != before and source != "tool" and not self.audio.playing and level > 0:
            self.announcer.chime("volume")
        self.home.refresh()
        return level

    def _on_timers(self) -> None:
        """A ring started or stopped, or the list changed: the LED and STATUS= follow."""
        self.gpio.show(self._shown_state())
        self.notifier.status(self._status_text())

    def _shown_state(self) -> State:
        if self.timers is not None and self.timers.ringing and self.state is not State.STOPPING:
            return State.RINGING
        return self.state

    def _on_heard(self, text: str) -> None:
        """The user's words in an open conversation: "stop" stops a ring."""
        self._heard = text
        if self.cfg.mqtt.publish_transcripts:
            self.home.refresh()
        if self.timers is not None and self.timers.ringing and re.search(r"\bstop\b", text, re.I):
            self.timers.stop("said")

    def _on_mic_chunk(self, chunk: Chunk) -> None:
        self.supervisor.on_mic_chunk(chunk)
        if self.wake is not None and not self.supervisor.muted:
            self.wake.feed(chunk, self.supervisor.last_seq, self.audio.input_format.rate)

    def _on_wake(self, seq: int) -> None:
        if self.timers is not None and self.timers.stop("wake_word"):
            return  # the word stopped the ring; it opens nothing
        outcome = self.supervisor.wake(seq)
        logs.event(log, "wake.detected", word=self.wake.wake_word if self.wake else None,
                   state=self.state, outcome=outcome)  # fmt: skip
        if outcome == "opened":
            self.announcer.chime("wake")
        elif outcome == "limited":
            self._announce("daily_limit")

    def _on_button(self, action: ButtonAction) -> None:
        logs.event(log, "button", action=action.name.lower(), state=self.state)
        if self.timers is not None and self.timers.ringing:
            if action in (ButtonAction.TALK_START, ButtonAction.TOGGLE_MUTE):
                self.timers.stop("button")
            return  # the press stopped the ring: its release or hold does nothing else
        if action is ButtonAction.TOGGLE_MUTE:  # gpio.button.long_press: mute
            self.set_muted(not self.supervisor.muted, "button")
            return
        if action is ButtonAction.TALK_START and self.supervisor.limited:
            # Over the daily limit the button still works: one conversation more, then the limit.
            now = datetime.datetime.now()
            self.limit.allow_one(now)
            self.supervisor.set_limited(False)
            logs.event(log, "usage.limit_overridden", **self.usage.summary(now))
        if self.cfg.conversation.mode == "wake_word":  # hands-free: a press starts or ends
            if action is ButtonAction.TALK_START:
                self.supervisor.toggle()
            elif action is ButtonAction.END_CONVERSATION:
                self.supervisor.end_conversation()
            return
        if action is ButtonAction.TALK_START:
            self.supervisor.press()
        elif action is ButtonAction.TALK_STOP:
            self.supervisor.release()
        elif action is ButtonAction.END_CONVERSATION:
            self.supervisor.end_conversation()

    def _on_state(self, state: State, fields: dict[str, Any]) -> None:
        if state is self.state and fields == self.state_fields:
            return
        previous = self.state
        self._set_state(state, fields)
        if self.state is State.STOPPING:
            return
        if state is State.IDLE and previous is not State.IDLE:
            self.limit.end_override()  # the one conversation more is over
        if state is State.IDLE and previous is not State.IDLE and self.wake is not None:
            logs.event(log, "wake.listening", model=self.wake.cfg.model, word=self.wake.wake_word)
        if state is State.RECONNECTING and previous not in TROUBLE:
            self._announce("reconnecting")
        elif state is State.DEGRADED and previous is not State.DEGRADED:
            self._announce("degraded")
        elif state in (State.LISTENING, State.SPEAKING, State.IDLE) and previous in TROUBLE:
            self._announce("back_online")
        if fields.get("reason") == "rollover":
            self._announce("rollover")

    def _announce(self, event: str) -> None:
        """Speak an announcement; one still waiting for its turn is stale now and is dropped."""
        if self._announcement is not None and not self._announcement.done():
            self._announcement.cancel()
        self._announcement = asyncio.create_task(self.announcer.announce(event))
        self._background.add(self._announcement)
        self._announcement.add_done_callback(self._background.discard)

    def _set_state(self, state: State, fields: dict[str, Any]) -> None:
        self.state = state
        self.state_fields = dict(fields)
        logs.event(log, "state", state=state, **fields)
        self.gpio.show(self._shown_state())
        self.notifier.status(self._status_text())
        self.home.refresh()

    def _count_usage(self, now: float) -> None:
        """Count the open session's time in the ledger; apply the daily limit."""
        wall, sup = datetime.datetime.now(), self.supervisor
        quiet = sup.session_open and sup.quiet_for_s() > usage.QUIET_AFTER_S
        self.usage.tick(now, wall, sup.session_open, quiet)
        self._apply_limit(wall, announce=True)

    def _apply_limit(self, wall: datetime.datetime, announce: bool) -> None:
        """Hold the supervisor to the daily limit; reaching it is logged (and said)."""
        blocked = self.limit.blocks(self.usage, wall)
        if blocked == self.supervisor.limited:
            return
        self.supervisor.set_limited(blocked)
        if blocked:
            logs.event(log, "usage.limit_reached", limit_minutes=self.limit.minutes,
                       **self.usage.summary(wall))  # fmt: skip
            if announce:
                self._announce("daily_limit")

    def _on_sample(self, sample: Sample) -> None:
        self._count_usage(time.monotonic())
        changes = self.tuner.update(
            time.monotonic(),
            sample,
            self.audio.stats(),
            self.supervisor.snapshot().get("pong_ms_p50"),
            between_replies=self.supervisor.quiet(),
            probe_rtt_ms=self.supervisor.snapshot().get("probe_rtt_ms_p99"),
        )
        self._retune(changes)
        self.home.refresh()  # the minutes and echo figures

    def _retune(self, changes: list[TuningChange]) -> None:
        apply_changes(changes, self.audio, self.supervisor, self.tuner.current)

    async def _health_lines(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.monitor.health_interval_s)
            sample = self.monitor.latest()
            if sample is None:
                continue
            counters = health_counters(
                self.supervisor.snapshot().get("counters", {}),
                self.audio.stats(),
                self.usage.summary(datetime.datetime.now()),
            )
            logs.event(log, "health", state=self.state, **health_line_fields(sample, counters))

    # --- health and status ---------------------------------------------------------------

    def _healthy(self) -> bool:
        task = self._supervisor_task
        # A lost device being reopened with backoff is healthy: restarting would not bring it back.
        # So is the wait for a device missing at start (the supervisor starts once it opens).
        audio_ok = self.audio.alive() or self.audio.recovering
        if task is None:
            return self.audio.waiting_for is not None and audio_ok
        return not task.done() and audio_ok

    def _status_text(self) -> str:
        ringing = [t.name for t in self.timers.ringing] if self.timers is not None else []
        return status_text(self.state, self.state_fields, ringing, self.monitor.latest())

    def snapshot(self) -> dict[str, Any]:
        sup = self.supervisor.snapshot()
        stats = self.audio.stats()
        t = self.tuner.current
        return {
            "version": __version__,
            "state": str(self.state),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "conversation": {
                "id": sup.get("conversation_id"),
                "age_s": sup.get("age_s"),
                "turns": sup.get("turns"),
            },
            "last_close": sup.get("last_close"),
            "counters": sup.get("counters", {}),
            "audio": dataclasses.asdict(stats),
            "monitor": self.monitor.snapshot(),
            "tuning": dataclasses.asdict(t) | {"adaptive": self.cfg.tuning.adaptive},
            "runtime": {"tasks": _task_count()},
            "mode": self.cfg.conversation.mode,
            "muted": self.supervisor.muted,
            "volume": self.volume.level,
            "timers": self.timers.snapshot() if self.timers is not None else None,
            "mute_switch": (
                {"pin": switch.cfg.pin, "closed": switch.closed}
                if (switch := self.gpio.mute_switch) is not None
                else None
            ),
            "usage": {
                **self.usage.summary(datetime.datetime.now()),
                "daily_limit_minutes": self.limit.minutes,
                "limited": self.supervisor.limited,
            },
            "wake": self.wake.snapshot() if self.wake is not None else None,
            "mqtt": self.home.snapshot(),
            "environment": {
                "board": self.env.board,
                "cores": self.env.cores,
                "ram_mb": self.env.ram_mb,
                "profile": self.env.profile,
            },
        }


def _task_count() -> int | None:
    """asyncio tasks alive (flat over months, or something leaks)."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        return None
