"""The privacy mute on a GPIO pin of its own (gpiozero): a switch, or a push button.

switch: muted while the switch is closed; a closed switch mutes at start and refuses `voicebox
unmute` (a hardware privacy switch is the truth); opened, it unmutes. button: each press
mutes or unmutes. Edges arrive in gpiozero's thread and are handed to the event loop with
`loop.call_soon_threadsafe`; `on_change(muted)` runs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Callable
from typing import Any

from voicebox.config import MuteSwitchConfig
from voicebox.logs import event

log = logging.getLogger(__name__)


class MuteSwitch:
    """A gpiozero Button on gpio.mute.pin calling `on_change(muted)` on the event loop."""

    def __init__(
        self,
        cfg: MuteSwitchConfig,
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[bool], object],
        is_muted: Callable[[], bool],
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import Button

        assert cfg.pin is not None
        self.cfg = cfg
        self._loop = loop
        self._on_change = on_change
        self._is_muted = is_muted  # a button toggles what the daemon has now
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._button: Any = Button(
                cfg.pin,
                pull_up=cfg.active_low,
                bounce_time=cfg.bounce_ms / 1000 if cfg.bounce_ms > 0 else None,
                pin_factory=pin_factory,
            )
        self._button.when_pressed = lambda: self._forward(True)
        self._button.when_released = lambda: self._forward(False)
        event(log, "mute_switch.opened", pin=cfg.pin, kind=cfg.kind, closed=self.closed)

    @property
    def closed(self) -> bool:
        """The switch is closed (the button is down) now."""
        button = self._button
        return bool(button.is_pressed) if button is not None else False

    @property
    def holds_mute(self) -> bool:
        """A switch that is closed: muted whatever else asks."""
        return self.cfg.kind == "switch" and self.closed

    def _forward(self, closed: bool) -> None:
        """Runs in gpiozero's thread: hand the edge to the loop, nothing else."""
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._edge, closed)

    def _edge(self, closed: bool) -> None:
        if self._button is None:
            return
        if self.cfg.kind == "switch":
            muted = closed
        elif closed:
            muted = not self._is_muted()
        else:
            return  # a button's release does nothing
        try:
            self._on_change(muted)
        except Exception as exc:  # a handler bug must not kill the switch
            event(log, "mute_switch.handler_failed", logging.ERROR, error=repr(exc))

    def close(self) -> None:
        button, self._button = self._button, None
        if button is None:
            return
        try:
            button.close()
        except Exception as exc:
            event(log, "mute_switch.close_failed", logging.WARNING, error=str(exc))
