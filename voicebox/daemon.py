"""`voicebox run`: wires audio, the conversation supervisor, GPIO, monitor, status and systemd.

Lifecycle: config → audio → GPIO → status → READY=1 (never waiting for the cloud); SIGHUP reloads
(an invalid file keeps the old config); SIGTERM stops within a few seconds and exits 0. The one
`State` drives the LED, STATUS= and the status socket; every transition is one log event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import faulthandler
import logging
import re
import signal
import socket
import time
import typing
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from voicebox import __version__, config, logs, mode, mute, usage, volume
from voicebox.announcements import Announcer
from voicebox.audio.devices import AudioDeviceError
from voicebox.audio.echo.processor import processing_settings
from voicebox.audio.engine import AudioEngine
from voicebox.audio.port import Chunk
from voicebox.config import EX_CONFIG, Config, ConfigError, MuteSwitchConfig, Secret
from voicebox.convai.supervisor import Supervisor
from voicebox.convai.tools import builtin_tools
from voicebox.gpio import ButtonAction, PushButton, StatusLed, StdinButton, no_gpio, open_gpio
from voicebox.monitor import Monitor, Sample, detect_environment, health_line_fields
from voicebox.mqtt import discovery
from voicebox.mqtt.discovery import Command
from voicebox.mute_switch import MuteSwitch
from voicebox.state import State
from voicebox.status import MetricsFile, StatusServer, write_metrics_periodically
from voicebox.systemd import Notifier, feed_watchdog
from voicebox.timers import tools as timer_tools
from voicebox.timers.book import TimerError
from voicebox.timers.ringer import Timers
from voicebox.tuning import Tuner, TuningChange
from voicebox.volume_buttons import VolumeButton
from voicebox.wake import WakeError, WakeListener

if typing.TYPE_CHECKING:
    from voicebox.mqtt.link import MqttLink

log = logging.getLogger("voicebox.daemon")

EX_UNAVAILABLE = 69  # the audio configuration cannot work at all (a missing device is waited for)
STOP_TIMEOUT_S = 5.0
USAGE_SAVE_S = 60.0  # a power cut loses at most this much of the minutes counted

# Announcements spoken on state changes: (previous state group, new state) -> event.
_TROUBLE = {State.RECONNECTING, State.DEGRADED}
_START_REFUSED = {
    "muted": "the box is muted",
    "limited": "today's conversation limit is reached",
    "already_open": "a conversation is already open",
    "stopping": "the daemon is stopping",
}


class Daemon:
    """One running voicebox: owns the parts and the state they are driven by."""

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
        self._counted_at = time.monotonic()  # the usage ledger is counted up to here
        self._saved_at = self._counted_at
        self.button: PushButton | StdinButton | None = None
        self.led: StatusLed | None = None
        self.mute_switch: MuteSwitch | None = None
        self.volume_buttons: list[VolumeButton] = []
        self.status_server: StatusServer | None = None
        self.mqtt: MqttLink | None = None
        self._mqtt_task: asyncio.Task[None] | None = None
        self._mqtt_secret: str | None = None
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
        self._start_mqtt(self.cfg)
        self._apply_tuning(self._initial_tuning())
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
        await self._stop_mqtt()
        self._count_usage(time.monotonic())
        self.usage.save()
        if self.led is not None:
            self.led.close()
        if self.button is not None:
            self.button.close()
        if self.mute_switch is not None:
            self.mute_switch.close()
        for button in self.volume_buttons:
            button.close()
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
        old_mqtt, self.cfg = self.cfg.mqtt, new
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
        self._apply_gpio(new)
        self.configured_mode = configured
        self.tuner = Tuner(new, self.env)
        self._apply_tuning(self._initial_tuning())
        try:
            password = config.load_mqtt_password()
        except ConfigError as exc:
            password = None
            logs.event(log, "config.reload_refused", logging.ERROR, problem=str(exc))
        if (new.mqtt, password and password.reveal()) != (old_mqtt, self._mqtt_secret):
            await self._stop_mqtt()
            self._start_mqtt(new)
        self._refresh_mqtt()
        logs.event(log, "config.reloaded", config=str(self.config_path))

    # --- parts ---------------------------------------------------------------------------

    def _open_gpio(self, loop: asyncio.AbstractEventLoop) -> None:
        self._open_mute_switch(loop, self.cfg.gpio.mute)
        self._open_volume_buttons(loop, self.cfg)
        if self.simulate_button:
            self.button = StdinButton(loop, self._on_button)
            logs.event(log, "gpio.simulated", source="stdin")
            return
        self.button, self.led = open_gpio(self.cfg.gpio, loop, self._on_button)
        if self.led is not None:
            self.led.show(self.state)

    def _open_mute_switch(self, loop: asyncio.AbstractEventLoop, cfg: MuteSwitchConfig) -> None:
        """Open gpio.mute (closing the one before); a closed switch mutes at once."""
        if self.mute_switch is not None:
            self.mute_switch.close()
            self.mute_switch = None
        if cfg.pin is None:
            return
        try:
            on_change = lambda muted: self.set_muted(muted, "gpio")  # noqa: E731
            self.mute_switch = MuteSwitch(cfg, loop, on_change, lambda: self.supervisor.muted)
        except Exception as exc:
            level, name = logging.ERROR, "gpio.error"
            if no_gpio(exc):
                level, name = logging.WARNING, "gpio.unavailable"
            logs.event(log, name, level, device="mute", pin=cfg.pin, error=str(exc))
            return
        if self.mute_switch.holds_mute:
            self.set_muted(True, "gpio")

    def _open_volume_buttons(self, loop: asyncio.AbstractEventLoop, cfg: Config) -> None:
        """Open gpio.volume_up / volume_down (closing the ones before)."""
        for button in self.volume_buttons:
            button.close()
        self.volume_buttons = []
        for name, direction in (("volume_up", 1), ("volume_down", -1)):
            bcfg = getattr(cfg.gpio, name)
            if bcfg.pin is None:
                continue
            try:
                on_step = lambda d: self.set_volume(self.volume.level + d * volume.STEP, "gpio")  # noqa: E731
                self.volume_buttons.append(VolumeButton(bcfg, direction, loop, on_step))
            except Exception as exc:
                level, what = logging.ERROR, "gpio.error"
                if no_gpio(exc):
                    level, what = logging.WARNING, "gpio.unavailable"
                logs.event(log, what, level, device=name, pin=bcfg.pin, error=str(exc))

    def _apply_gpio(self, new: Config) -> None:
        """Reload: reconfigure the button and LED, open ones that are new, close removed ones."""
        if (new.gpio.volume_up, new.gpio.volume_down) != (
            self.cfg.gpio.volume_up, self.cfg.gpio.volume_down,
        ):  # fmt: skip
            self._open_volume_buttons(asyncio.get_running_loop(), new)
        current = self.mute_switch.cfg if self.mute_switch is not None else None
        if new.gpio.mute != current and (new.gpio.mute.pin is not None or current is not None):
            self._open_mute_switch(asyncio.get_running_loop(), new.gpio.mute)
        if isinstance(self.button, PushButton):
            if new.gpio.button.pin is None:
                self.button.close()
                self.button = None
            else:
                self.button.reconfigure(new.gpio.button)
        if self.led is not None:
            if new.gpio.led.pin is None:
                self.led.close()
                self.led = None
            else:
                self.led.reconfigure(new.gpio.led)
        missing = new.gpio
        if self.button is not None:
            missing = config.with_changes(missing, **{"button.pin": None})
        if self.led is not None:
            missing = config.with_changes(missing, **{"led.pin": None})
        if missing.button.pin is not None or missing.led.pin is not None:
            button, led = open_gpio(missing, asyncio.get_running_loop(), self._on_button)
            self.button = self.button or button
            self.led = self.led or led
        if self.led is not None:
            self.led.show(self.state)

    async def _open_status(self) -> None:
        path = Path(self.cfg.paths.runtime_dir) / "status.sock"
        server = StatusServer(
            path,
            self.snapshot,
            {
                "mute": lambda _: self.set_muted(True),
                "unmute": lambda _: self.set_muted(False),
                "volume": self._volume_command,
                "timers": self._timers_command,
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

    def _start_mqtt(self, cfg: Config) -> None:
        """Connect to the broker mqtt.* names: a task the daemon never waits for."""
        if not cfg.mqtt.enabled:
            return
        from voicebox.mqtt.link import MqttLink  # aiomqtt is imported by boxes that use it

        try:
            password = config.load_mqtt_password()
        except ConfigError as exc:
            logs.event(log, "mqtt.unavailable", logging.ERROR, error=str(exc))
            return
        if password is not None:
            logs.register_secret(password.reveal())
        self._mqtt_secret = password.reveal() if password else None
        device = discovery.Device(socket.gethostname(), __version__, self.env.board)
        self.mqtt = MqttLink(cfg.mqtt, password, device, self._mqtt_values, self._on_mqtt_command)
        self._mqtt_task = asyncio.create_task(self.mqtt.run(), name="mqtt")

    async def _stop_mqtt(self) -> None:
        link, task = self.mqtt, self._mqtt_task
        self.mqtt, self._mqtt_task = None, None
        if link is None or task is None:
            return
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def _refresh_mqtt(self) -> None:
        """Anything Home Assistant shows may have changed: the link publishes what did."""
        if self.mqtt is not None:
            self.mqtt.refresh()

    def _mqtt_values(self) -> dict[str, str]:
        heard = self._heard if self.cfg.mqtt.publish_transcripts else None
        return discovery.values(self.snapshot(), self.state_fields, heard)

    def _on_mqtt_command(self, command: Command) -> str | None:
        """A command from the broker, through the paths the button and the socket take; the
        reason when it is refused (nothing changed)."""
        name, value = command.name, command.value
        if name == "mute":
            return self.set_muted(value is True, "mqtt").get("error")
        if name == "volume" and isinstance(value, int):
            self.set_volume(value, "mqtt")
        elif name == "mode":
            return self.set_mode(str(value), "mqtt")
        elif name == "start":
            outcome = self.supervisor.start_conversation()
            if outcome != "opened":
                return _START_REFUSED.get(outcome, outcome)
            self.announcer.chime("wake")
        elif name == "end":
            self.supervisor.end_conversation()
        elif name == "announce":
            self._spawn(self.announcer.say(str(value), "mqtt"))
        elif name in ("tell", "context") and not self.supervisor.tell(str(value), name == "tell"):
            return "no conversation is open (start one first)"
        return None

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
        self._refresh_mqtt()
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
        switch = self.mute_switch
        if not muted and source != "gpio" and switch is not None and switch.holds_mute:
            logs.event(log, "mute.unmute_refused", source=source, pin=switch.cfg.pin)
            return {"error": f"the mute switch on GPIO{switch.cfg.pin} is closed: open it"}
        changed = self.supervisor.set_muted(muted)
        if changed:
            mute.store(self.cfg.paths.state_dir, muted)
            logs.event(log, "mute.on" if muted else "mute.off", state=self.state, source=source)
            self.announcer.chime("mute" if muted else "unmute")
            self._refresh_mqtt()
        return {"muted": muted, "changed": changed, "state": "muted" if muted else "idle"}

    def set_volume(self, level: int, source: str) -> int:
        """Set the output level (the tool, the socket, the buttons): kept in the state directory;
        a short tone at the new level, unless something is playing (that is heard at it)."""
        before = self.volume.level
        level = self.volume.set(level, source)
        if level != before and source != "tool" and not self.audio.playing and level > 0:
            self.announcer.chime("volume")
        self._refresh_mqtt()
        return level

    def _volume_command(self, argument: str) -> dict[str, Any]:
        """`volume` (the level) or `volume N` over the status socket."""
        if argument:
            try:
                wanted = int(argument)
            except ValueError:
                return {"error": f"not a level 0-100: {argument!r}"}
            if not 0 <= wanted <= 100:
                return {"error": f"not a level 0-100: {wanted}"}
            self.set_volume(wanted, "socket")
        return {"level": self.volume.level}

    def _timers_command(self, argument: str) -> dict[str, Any]:
        """`timers` (the list), `timers cancel NAME`, `timers stop` over the status socket."""
        if self.timers is None:
            return {"error": "timers are off (timers.enabled: false)"}
        verb, _, name = argument.partition(" ")
        answer: dict[str, Any] = {}
        if verb == "stop":
            answer["stopped"] = self.timers.stop("socket")
        elif verb == "cancel":
            try:
                answer["said"] = self.timers.cancel(name.strip() or None, "socket")
            except TimerError as exc:
                return {"error": str(exc)}
        elif verb:
            return {"error": f"unknown timers command {verb!r} (known: cancel NAME, stop)"}
        return answer | {
            "timers": self.timers.listing(),
            "ringing": self.timers.snapshot()["ringing"],
        }

    def _on_timers(self) -> None:
        """A ring started or stopped, or the list changed: the LED and STATUS= follow."""
        if self.led is not None:
            self.led.show(self._shown_state())
        self.notifier.status(self._status_text())

    def _shown_state(self) -> State:
        if self.timers is not None and self.timers.ringing and self.state is not State.STOPPING:
            return State.RINGING
        return self.state

    def _on_heard(self, text: str) -> None:
        """The user's words in an open conversation: "stop" stops a ring."""
        self._heard = text
        if self.cfg.mqtt.publish_transcripts:
            self._refresh_mqtt()
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
        if state is State.RECONNECTING and previous not in _TROUBLE:
            self._announce("reconnecting")
        elif state is State.DEGRADED and previous is not State.DEGRADED:
            self._announce("degraded")
        elif state in (State.LISTENING, State.SPEAKING, State.IDLE) and previous in _TROUBLE:
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
        if self.led is not None:
            self.led.show(self._shown_state())
        self.notifier.status(self._status_text())
        self._refresh_mqtt()

    def _count_usage(self, now: float) -> None:
        """Add the time since the last count to the ledger if a session was open; apply the
        daily limit; save the ledger every USAGE_SAVE_S."""
        elapsed, self._counted_at = now - self._counted_at, now
        wall = datetime.datetime.now()
        if self.supervisor.session_open:
            quiet = self.supervisor.quiet_for_s() > usage.QUIET_AFTER_S
            self.usage.add(wall, elapsed, quiet)
        self._apply_limit(wall, announce=True)
        if now - self._saved_at >= USAGE_SAVE_S:
            self._saved_at = now
            self.usage.save()

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
        self._apply_tuning(changes)
        self._refresh_mqtt()  # the minutes and echo figures

    def _initial_tuning(self) -> list[TuningChange]:
        t = self.tuner.current
        return [
            TuningChange("prebuffer_ms", None, t.prebuffer_ms, "initial", False),
            TuningChange("receive_timeout_s", None, t.receive_timeout_s, "initial", False),
            TuningChange("resume_buffer_s", None, t.resume_buffer_s, "initial", False),
            TuningChange("probe_timeout_s", None, t.probe_timeout_s, "initial", False),
            TuningChange("ring_ms", None, t.ring_ms, "initial", True),
        ]

    def _apply_tuning(self, changes: list[TuningChange]) -> None:
        for change in changes:
            if change.name == "prebuffer_ms":
                self.audio.set_prebuffer_ms(int(change.new))
            elif change.name == "ring_ms":
                self.audio.set_ring_ms(int(change.new))
            elif change.name == "chunk_ms":
                self.audio.set_chunk_ms(int(change.new))
            elif change.name == "latency_s":
                if change.new is not None:
                    self.audio.set_latency(float(change.new))
            elif change.name == "receive_timeout_s":
                self.supervisor.set_receive_timeout(float(change.new))
            elif change.name == "resume_buffer_s":
                self.supervisor.set_resume_buffer_s(float(change.new))
            elif change.name in ("probe_interval_s", "probe_timeout_s"):
                t = self.tuner.current
                self.supervisor.set_probe_timing(t.probe_interval_s, t.probe_timeout_s)
            else:
                continue
            if change.reason != "initial":
                logs.event(
                    log,
                    "tuning.changed",
                    name=change.name,
                    old=change.old,
                    new=change.new,
                    reason=change.reason,
                )

    async def _health_lines(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.monitor.health_interval_s)
            sample = self.monitor.latest()
            if sample is None:
                continue
            counters = {**self.supervisor.snapshot().get("counters", {})}
            stats = self.audio.stats()
            counters.update(
                underruns=stats.underruns,
                overflows=stats.input_overflows,
                dropped_audio=stats.dropped_chunks,
            )
            if stats.processing:
                counters.update(
                    erle_db=stats.erle_db,
                    echo_delay_ms=stats.echo_delay_ms,
                    processing_cpu_percent=stats.processing_cpu_percent,
                    echo_converged=stats.echo_converged,
                )
            minutes = self.usage.summary(datetime.datetime.now())
            counters.update(today_minutes=minutes["today_minutes"],
                            month_minutes=minutes["month_minutes"])  # fmt: skip
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
        parts = [str(self.state)]
        if self.timers is not None and self.timers.ringing:
            parts.append("ringing " + ", ".join(t.name for t in self.timers.ringing))
        cid = self.state_fields.get("conversation_id")
        if cid:
            parts.append(f"conv={cid}")
        reason = self.state_fields.get("reason")
        if reason and self.state in _TROUBLE:
            parts.append(f"reason={reason}")
        waiting = self.state_fields.get("waiting_for")
        if waiting and self.state in _TROUBLE:
            parts.append(f"waiting for {waiting}")
        delay = self.state_fields.get("delay_s")
        if delay is not None and self.state in _TROUBLE:
            parts.append(f"retry in {float(delay):.0f}s")
        sample = self.monitor.latest()
        if sample is not None:
            parts.append(f"cpu={sample.cpu_percent:.0f}%")
            if sample.temp_c is not None:
                parts.append(f"temp={sample.temp_c:.0f}C")
        return " ".join(parts)

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
                {"pin": self.mute_switch.cfg.pin, "closed": self.mute_switch.closed}
                if self.mute_switch is not None
                else None
            ),
            "usage": {
                **self.usage.summary(datetime.datetime.now()),
                "daily_limit_minutes": self.limit.minutes,
                "limited": self.supervisor.limited,
            },
            "wake": self.wake.snapshot() if self.wake is not None else None,
            "mqtt": self.mqtt.snapshot() if self.mqtt is not None else None,
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


def _check_startable(cfg: Config, api_key: Secret | None) -> list[str]:
    problems = []
    if not cfg.agent.agent_id:
        problems.append("agent.agent_id: required to run (the id of your ElevenLabs agent)")
    if cfg.agent.requires_auth and api_key is None:
        problems.append(
            "agent.requires_auth is true but no API key was found: set the systemd credential "
            f"'{config.CREDENTIAL_NAME}', ${config.API_KEY_ENV}, or agent.api_key_file"
        )
    return problems


def main_run(args: argparse.Namespace) -> int:
    logs.setup("info")
    path = Path(args.config)
    try:
        cfg = config.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            logs.event(log, "config.invalid", logging.ERROR, problem=problem)
        return EX_CONFIG
    logs.setup(cfg.logging.level)
    api_key = config.load_api_key(cfg)
    if api_key is not None:
        logs.register_secret(api_key.reveal())
    problems = _check_startable(cfg, api_key)
    if problems:
        for problem in problems:
            logs.event(log, "config.invalid", logging.ERROR, problem=problem)
        return EX_CONFIG
    faulthandler.enable()  # a watchdog SIGABRT dumps every thread's stack into the journal
    daemon = Daemon(cfg, path, api_key, bool(getattr(args, "simulate_button", False)))
    return asyncio.run(daemon.run())
