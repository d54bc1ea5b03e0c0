"""The push-to-talk button and status LED (gpiozero), and an Enter-key button for foreground runs.

Button edges arrive in gpiozero's threads and are handed to the event loop with
`loop.call_soon_threadsafe`; the pure `ButtonLogic` turns them into `ButtonAction`s there. LED
patterns use gpiozero's own background blink/pulse.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, Literal

from voicebox.config import ButtonConfig, GpioConfig, LedConfig
from voicebox.logs import event
from voicebox.state import State

log = logging.getLogger(__name__)

SIMULATE_HINT = "use `voicebox run --simulate-button` to press the button with Enter"


class ButtonAction(enum.Enum):
    TALK_START = "talk_start"
    TALK_STOP = "talk_stop"
    END_CONVERSATION = "end_conversation"
    TOGGLE_MUTE = "toggle_mute"  # gpio.button.long_press: mute


class ButtonLogic:
    """Button edges + mode -> actions; pure (no I/O, no clock).

    hold: press starts talking, release stops. toggle: each press starts or stops. In both modes a
    long hold ends the conversation (long_press "mute": toggles the mute, which ends it too) and
    its release does nothing more. Repeated or out-of-order edges (a press while down, a release
    while up, a second hold) are ignored.
    """

    def __init__(
        self, mode: Literal["hold", "toggle"], long_press: Literal["end", "mute"] = "end"
    ) -> None:
        self.mode = mode
        self.long_press = long_press
        self._down = False
        self._held = False
        self._talking = False

    def pressed(self) -> list[ButtonAction]:
        if self._down:
            return []
        self._down, self._held = True, False
        if self.mode == "toggle" and self._talking:
            self._talking = False
            return [ButtonAction.TALK_STOP]
        self._talking = True
        return [ButtonAction.TALK_START]

    def released(self) -> list[ButtonAction]:
        if not self._down:
            return []
        self._down = False
        if self._held or self.mode == "toggle":
            return []
        self._talking = False
        return [ButtonAction.TALK_STOP]

    def held(self) -> list[ButtonAction]:
        if not self._down or self._held:
            return []
        self._held = True
        self._talking = False
        if self.long_press == "mute":
            return [ButtonAction.TOGGLE_MUTE]
        return [ButtonAction.END_CONVERSATION]


def no_gpio(exc: BaseException) -> bool:
    """True for 'this machine has no usable GPIO' (no pin factory), not for a bad pin."""
    return isinstance(exc, ImportError)  # gpiozero's BadPinFactory is an ImportError too


class PushButton:
    """A gpiozero Button feeding ButtonActions to `on_action` on the event loop."""

    def __init__(
        self,
        cfg: ButtonConfig,
        loop: asyncio.AbstractEventLoop,
        on_action: Callable[[ButtonAction], None],
        pin_factory: Any = None,
    ) -> None:
        self._loop = loop
        self._on_action = on_action
        self._factory = pin_factory
        self._cfg = cfg
        self._logic = ButtonLogic(cfg.mode, cfg.long_press)
        self._generation = 0
        self._button: Any = None
        self._open(cfg)

    def _open(self, cfg: ButtonConfig) -> None:
        """Create the gpiozero Button; raises what gpiozero raises."""
        from gpiozero import Button

        if cfg.pin is None:
            return
        self._generation += 1
        gen = self._generation
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            button = Button(
                cfg.pin,
                pull_up=cfg.active_low,
                bounce_time=cfg.bounce_ms / 1000 if cfg.bounce_ms > 0 else None,
                hold_time=cfg.hold_ms / 1000,
                pin_factory=self._factory,
            )
        button.when_pressed = lambda: self._forward(gen, "pressed")
        button.when_released = lambda: self._forward(gen, "released")
        button.when_held = lambda: self._forward(gen, "held")
        self._button = button
        event(log, "button.opened", pin=cfg.pin, mode=cfg.mode, hold_ms=cfg.hold_ms)

    def _forward(self, gen: int, edge: str) -> None:
        """Runs in gpiozero's thread: hand the edge to the loop, nothing else."""
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._edge, gen, edge)

    def _edge(self, gen: int, edge: str) -> None:
        if gen != self._generation:
            return  # an edge from a button replaced by reconfigure()
        actions: list[ButtonAction] = getattr(self._logic, edge)()
        for action in actions:
            event(log, "button.action", logging.DEBUG, action=action.value)
            try:
                self._on_action(action)
            except Exception as exc:  # a handler bug must not kill the button
                event(log, "button.handler_failed", logging.ERROR, error=repr(exc))

    def reconfigure(self, cfg: ButtonConfig) -> None:
        """Apply a new button config (SIGHUP); a failing pin is logged and leaves no button."""
        if cfg == self._cfg:
            return
        hardware_same = (cfg.pin, cfg.bounce_ms, cfg.hold_ms, cfg.active_low) == (
            self._cfg.pin,
            self._cfg.bounce_ms,
            self._cfg.hold_ms,
            self._cfg.active_low,
        )
        self._cfg = cfg
        self._logic = ButtonLogic(cfg.mode, cfg.long_press)
        if hardware_same and self._button is not None:
            event(log, "button.reconfigured", pin=cfg.pin, mode=cfg.mode)
            return
        self._close_button()
        try:
            self._open(cfg)
        except Exception as exc:
            event(log, "button.error", logging.ERROR, pin=cfg.pin, error=str(exc))

    def _close_button(self) -> None:
        self._generation += 1
        if self._button is not None:
            button, self._button = self._button, None
            try:
                button.close()
            except Exception as exc:
                event(log, "button.close_failed", logging.WARNING, error=str(exc))

    def close(self) -> None:
        self._close_button()


_SLOW_BLINK = (0.5, 1.0)  # on, off seconds
_FAST_BLINK = (0.1, 0.1)
_MUTED_BLINK = (0.08, 2.92)  # muted
_RING_BLINK = (0.4, 0.1)  # a timer or alarm ringing: long flashes, twice a second
_PULSE = (0.6, 0.6)  # fade in, fade out seconds


class StatusLed:
    """A PWM LED showing the daemon state; gpiozero runs the blink/pulse in its own thread.

    idle and stopping: off; listening: solid; speaking: pulse; connecting and reconnecting: slow
    blink; degraded: fast blink; muted: a short flash every 3 s; ringing: long flashes twice a
    second. `brightness` caps every pattern.
    """

    def __init__(self, cfg: LedConfig, pin_factory: Any = None) -> None:
        self._cfg = cfg
        self._factory = pin_factory
        self._state: State | None = None
        self._led: Any = None
        if cfg.pin is not None:
            self._led = _make_led(cfg, pin_factory)
            event(log, "led.opened", pin=cfg.pin)

    def show(self, state: State) -> None:
        if state == self._state or self._led is None:
            self._state = state
            return
        self._state = state
        try:
            led = self._led
            if state == State.LISTENING:
                led.on()
            elif state == State.SPEAKING:
                led.pulse(fade_in_time=_PULSE[0], fade_out_time=_PULSE[1])
            elif state in (State.CONNECTING, State.RECONNECTING):
                led.blink(on_time=_SLOW_BLINK[0], off_time=_SLOW_BLINK[1])
            elif state == State.DEGRADED:
                led.blink(on_time=_FAST_BLINK[0], off_time=_FAST_BLINK[1])
            elif state == State.MUTED:  # a short flash every few seconds: on, but not listening
                led.blink(on_time=_MUTED_BLINK[0], off_time=_MUTED_BLINK[1])
            elif state == State.RINGING:  # quick double flashes: look at me
                led.blink(on_time=_RING_BLINK[0], off_time=_RING_BLINK[1])
            else:  # idle, stopping
                led.off()
        except Exception as exc:  # an LED fault is cosmetic: log, keep running
            event(log, "led.error", logging.WARNING, state=state, error=str(exc))

    def reconfigure(self, cfg: LedConfig) -> None:
        if cfg == self._cfg:
            return
        state = self._state
        self.close()
        self._cfg = cfg
        if cfg.pin is not None:
            try:
                self._led = _make_led(cfg, self._factory)
            except Exception as exc:
                event(log, "led.error", logging.ERROR, pin=cfg.pin, error=str(exc))
        if state is not None:
            self.show(state)

    def close(self) -> None:
        """LED off and its pin released."""
        led, self._led = self._led, None
        self._state = None
        if led is None:
            return
        try:
            led.off()
            led.close()
        except Exception as exc:
            event(log, "led.close_failed", logging.WARNING, error=str(exc))


def _make_led(cfg: LedConfig, pin_factory: Any) -> Any:
    from gpiozero import PWMLED

    class DimmedLed(PWMLED):  # type: ignore[misc]
        """PWMLED whose every written value (solid, blink, pulse) is scaled by brightness."""

        def _write(self, value: float) -> None:
            super()._write(value * cfg.brightness)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DimmedLed(cfg.pin, active_high=cfg.active_high, pin_factory=pin_factory)


def open_gpio(
    cfg: GpioConfig,
    loop: asyncio.AbstractEventLoop,
    on_action: Callable[[ButtonAction], None],
) -> tuple[PushButton | None, StatusLed | None]:
    """Open the configured button and LED; (None, None) with one log line where there is no GPIO."""
    button: PushButton | None = None
    led: StatusLed | None = None
    for name, pin in (("button", cfg.button.pin), ("led", cfg.led.pin)):
        if pin is None:
            continue
        try:
            if name == "button":
                button = PushButton(cfg.button, loop, on_action)
            else:
                led = StatusLed(cfg.led)
        except Exception as exc:
            if no_gpio(exc):
                if button is not None:
                    button.close()
                reason = f"{type(exc).__name__}: {exc}"
                event(log, "gpio.unavailable", logging.WARNING, reason=reason, hint=SIMULATE_HINT)
                return None, None
            event(log, "gpio.error", logging.ERROR, device=name, pin=pin, error=str(exc))
    return button, led


class StdinButton:
    """Enter on stdin as the button (foreground runs without GPIO): each Enter toggles talking.

    A line reading `end` ends the conversation. End of input stops reading.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_action: Callable[[ButtonAction], None],
        fd: int | None = None,
    ) -> None:
        self._loop = loop
        self._on_action = on_action
        self._fd = sys.stdin.fileno() if fd is None else fd
        self._logic = ButtonLogic("toggle")
        self._pending = b""
        self._reading = False
        try:
            loop.add_reader(self._fd, self._readable)
            self._reading = True
        except (OSError, ValueError, NotImplementedError) as exc:
            event(log, "button.simulate_unavailable", logging.WARNING, error=str(exc))
            return
        event(log, "button.simulated", hint="Enter starts/stops talking; 'end' + Enter ends")

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            if line.strip().lower() == b"end":
                self._logic = ButtonLogic("toggle")
                actions = [ButtonAction.END_CONVERSATION]
            else:
                actions = self._logic.pressed() + self._logic.released()
            for action in actions:
                self._on_action(action)

    def close(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
