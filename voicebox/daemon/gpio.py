"""The daemon's GPIO parts (gpio.*): the push button (or stdin), the status LED, the mute switch
and the volume buttons; opened at start, reconfigured by a reload, closed at the end. A pin that
cannot be opened is one log line; the daemon runs on without it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from voicebox import config, logs
from voicebox.config import GpioConfig, MuteSwitchConfig
from voicebox.gpio import ButtonAction, PushButton, StatusLed, StdinButton, no_gpio, open_gpio
from voicebox.mute_switch import MuteSwitch
from voicebox.state import State
from voicebox.volume_buttons import VolumeButton

log = logging.getLogger("voicebox.daemon")


class GpioParts:
    """What gpio.* names, with the daemon's handlers for each."""

    def __init__(
        self,
        on_button: Callable[[ButtonAction], None],
        set_muted: Callable[[bool], object],
        is_muted: Callable[[], bool],
        step_volume: Callable[[int], object],
    ) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_button = on_button
        self._set_muted = set_muted
        self._is_muted = is_muted
        self._step_volume = step_volume
        self.button: PushButton | StdinButton | None = None
        self.led: StatusLed | None = None
        self.mute_switch: MuteSwitch | None = None
        self.volume_buttons: list[VolumeButton] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def open(
        self, loop: asyncio.AbstractEventLoop, cfg: GpioConfig, simulate_button: bool, state: State
    ) -> None:
        self._loop = loop
        self.open_mute_switch(cfg.mute)
        self.open_volume_buttons(cfg)
        if simulate_button:
            self.button = StdinButton(self.loop, self._on_button)
            logs.event(log, "gpio.simulated", source="stdin")
            return
        self.button, self.led = open_gpio(cfg, self.loop, self._on_button)
        self.show(state)

    def open_mute_switch(self, cfg: MuteSwitchConfig) -> None:
        """Open gpio.mute (closing the one before); a closed switch mutes at once."""
        if self.mute_switch is not None:
            self.mute_switch.close()
            self.mute_switch = None
        if cfg.pin is None:
            return
        try:
            self.mute_switch = MuteSwitch(cfg, self.loop, self._set_muted, self._is_muted)
        except Exception as exc:
            _log_failure(exc, "mute", cfg.pin)
            return
        if self.mute_switch.holds_mute:
            self._set_muted(True)

    def open_volume_buttons(self, cfg: GpioConfig) -> None:
        """Open gpio.volume_up / volume_down (closing the ones before)."""
        for button in self.volume_buttons:
            button.close()
        self.volume_buttons = []
        for name, direction in (("volume_up", 1), ("volume_down", -1)):
            bcfg = getattr(cfg, name)
            if bcfg.pin is None:
                continue
            try:
                self.volume_buttons.append(
                    VolumeButton(bcfg, direction, self.loop, self._step_volume)
                )
            except Exception as exc:
                _log_failure(exc, name, bcfg.pin)

    def apply(self, old: GpioConfig, new: GpioConfig, state: State) -> None:
        """Reload: reconfigure what stays, open what is new, close what was removed."""
        if (new.volume_up, new.volume_down) != (old.volume_up, old.volume_down):
            self.open_volume_buttons(new)
        current = self.mute_switch.cfg if self.mute_switch is not None else None
        if new.mute != current and (new.mute.pin is not None or current is not None):
            self.open_mute_switch(new.mute)
        if isinstance(self.button, PushButton):
            if new.button.pin is None:
                self.button.close()
                self.button = None
            else:
                self.button.reconfigure(new.button)
        if self.led is not None:
            if new.led.pin is None:
                self.led.close()
                self.led = None
            else:
                self.led.reconfigure(new.led)
        missing = new
        if self.button is not None:
            missing = config.with_changes(missing, **{"button.pin": None})
        if self.led is not None:
            missing = config.with_changes(missing, **{"led.pin": None})
        if missing.button.pin is not None or missing.led.pin is not None:
            button, led = open_gpio(missing, self.loop, self._on_button)
            self.button = self.button or button
            self.led = self.led or led
        self.show(state)

    def show(self, state: State) -> None:
        if self.led is not None:
            self.led.show(state)

    def close(self) -> None:
        for part in (self.led, self.button, self.mute_switch, *self.volume_buttons):
            if part is not None:
                part.close()


def _log_failure(exc: Exception, device: str, pin: int) -> None:
    level, name = logging.ERROR, "gpio.error"
    if no_gpio(exc):
        level, name = logging.WARNING, "gpio.unavailable"
    logs.event(log, name, level, device=device, pin=pin, error=str(exc))
