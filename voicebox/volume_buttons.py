"""The volume buttons (gpio.volume_up, gpio.volume_down): gpiozero Buttons; a press is one step,
a hold repeats it every `repeat_ms`. Edges arrive in gpiozero's thread and are handed to the event
loop with `loop.call_soon_threadsafe`; `on_step(+1 | -1)` runs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Callable
from typing import Any

from voicebox.config import VolumeButtonConfig
from voicebox.logs import event

log = logging.getLogger(__name__)


class VolumeButton:
    """One gpiozero Button calling `on_step(direction)` on the event loop per press or repeat."""

    def __init__(
        self,
        cfg: VolumeButtonConfig,
        direction: int,
        loop: asyncio.AbstractEventLoop,
        on_step: Callable[[int], object],
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import Button

        assert cfg.pin is not None
        self.cfg = cfg
        self.direction = direction
        self._loop = loop
        self._on_step = on_step
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._button: Any = Button(
                cfg.pin,
                pull_up=cfg.active_low,
                bounce_time=cfg.bounce_ms / 1000 if cfg.bounce_ms > 0 else None,
                hold_time=cfg.repeat_ms / 1000,
                hold_repeat=True,
                pin_factory=pin_factory,
            )
        self._button.when_pressed = self._forward
        self._button.when_held = self._forward
        event(log, "volume_button.opened", pin=cfg.pin, direction=direction)

    def _forward(self) -> None:
        """Runs in gpiozero's thread: hand the step to the loop, nothing else."""
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._step)

    def _step(self) -> None:
        if self._button is None:
            return
        try:
            self._on_step(self.direction)
        except Exception as exc:  # a handler bug must not kill the button
            event(log, "volume_button.handler_failed", logging.ERROR, error=repr(exc))

    def close(self) -> None:
        button, self._button = self._button, None
        if button is None:
            return
        try:
            button.close()
        except Exception as exc:
            event(log, "volume_button.close_failed", logging.WARNING, error=str(exc))
