"""The daemon's side of Home Assistant (mqtt.*): starts, restarts and stops the broker link, hands
it the values to publish, and turns its commands into the controls the button and the status
socket use (no second implementation of mute, volume or mode)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from voicebox import __version__, config, logs
from voicebox.config import ConfigError, MqttConfig
from voicebox.mqtt.discovery import Command, Device

if TYPE_CHECKING:
    from voicebox.mqtt.link import MqttLink

log = logging.getLogger("voicebox.daemon")

START_REFUSED = {
    "muted": "the box is muted",
    "limited": "today's conversation limit is reached",
    "already_open": "a conversation is already open",
    "stopping": "the daemon is stopping",
}


class Controls(Protocol):
    """What a command may do: the daemon's own paths."""

    def set_muted(self, muted: bool, source: str = ...) -> dict[str, Any]: ...
    def set_volume(self, level: int, source: str) -> int: ...
    def set_mode(self, wanted: str, source: str) -> str | None: ...
    def start_conversation(self, source: str) -> str: ...
    def end_conversation(self, source: str) -> None: ...
    def say(self, text: str, source: str) -> None: ...
    def tell(self, text: str, reply: bool) -> bool: ...


class HomeAssistant:
    """The broker link mqtt.* asks for (none while mqtt.enabled is false)."""

    def __init__(self, controls: Controls, read: Callable[[], dict[str, str]], board: str) -> None:
        self._controls = controls
        self._read = read
        self._board = board
        self.link: MqttLink | None = None
        self._task: asyncio.Task[None] | None = None
        self._settings: tuple[MqttConfig, str | None] | None = None  # what the link runs with

    def start(self, cfg: MqttConfig) -> None:
        """Connect to the broker cfg names: a task the daemon never waits for."""
        if not cfg.enabled:
            return
        from voicebox.mqtt.link import MqttLink  # aiomqtt is imported by boxes that use it

        try:
            password = config.load_mqtt_password()
        except ConfigError as exc:
            logs.event(log, "mqtt.unavailable", logging.ERROR, error=str(exc))
            return
        if password is not None:
            logs.register_secret(password.reveal())
        self._settings = (cfg, password.reveal() if password else None)
        device = Device(socket.gethostname(), __version__, self._board)
        self.link = MqttLink(cfg, password, device, self._read, self.command)
        self._task = asyncio.create_task(self.link.run(), name="mqtt")

    async def stop(self) -> None:
        link, task = self.link, self._task
        self.link, self._task, self._settings = None, None, None
        if link is None or task is None:
            return
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def reload(self, cfg: MqttConfig) -> None:
        """SIGHUP: a change of mqtt.* or of the password reconnects; else nothing changes."""
        try:
            password = config.load_mqtt_password()
        except ConfigError as exc:
            logs.event(log, "config.reload_refused", logging.ERROR, problem=str(exc))
            password = None
        wanted = (cfg, password.reveal() if password else None)
        if self._settings is None and not cfg.enabled:
            return
        if wanted != self._settings:
            await self.stop()
            self.start(cfg)
        self.refresh()

    def refresh(self) -> None:
        """Anything Home Assistant shows may have changed: the link publishes what did."""
        if self.link is not None:
            self.link.refresh()

    def snapshot(self) -> dict[str, Any] | None:
        return self.link.snapshot() if self.link is not None else None

    def command(self, command: Command) -> str | None:
        """A command from the broker; the reason when it is refused (nothing changed)."""
        c, name, value = self._controls, command.name, command.value
        if name == "mute":
            error = c.set_muted(value is True, "mqtt").get("error")
            return str(error) if error else None
        if name == "volume" and isinstance(value, int):
            c.set_volume(value, "mqtt")
        elif name == "mode":
            return c.set_mode(str(value), "mqtt")
        elif name == "start":
            outcome = c.start_conversation("mqtt")
            return None if outcome == "opened" else START_REFUSED.get(outcome, outcome)
        elif name == "end":
            c.end_conversation("mqtt")
        elif name == "announce":
            c.say(str(value), "mqtt")
        elif name in ("tell", "context") and not c.tell(str(value), name == "tell"):
            return "no conversation is open (start one first)"
        return None
