"""Button and LED through gpiozero's MockFactory (a Pi 5 board), and the Enter-key button."""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero import PWMLED, Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from voicebox.config import ButtonConfig, GpioConfig, LedConfig
from voicebox.gpio import (
    ButtonAction,
    ButtonLogic,
    PushButton,
    StatusLed,
    StdinButton,
    open_gpio,
)
from voicebox.state import State

START, STOP, END = ButtonAction.TALK_START, ButtonAction.TALK_STOP, ButtonAction.END_CONVERSATION
HANG_GUARD_S = 10.0


# --- pure logic ------------------------------------------------------------------------------


def test_hold_mode() -> None:
    b = ButtonLogic("hold")
    assert b.pressed() == [START]
    assert b.released() == [STOP]
    assert b.pressed() == [START]
    assert b.held() == [END]
    assert b.released() == []  # the long hold ended it: no TALK_STOP after END


def test_toggle_mode() -> None:
    b = ButtonLogic("toggle")
    assert b.pressed() == [START]
    assert b.released() == []
    assert b.pressed() == [STOP]
    assert b.released() == []
    assert b.pressed() == [START]
    assert b.held() == [END]
    assert b.released() == []
    assert b.pressed() == [START]  # after END the next press starts again


@pytest.mark.parametrize("mode", ["hold", "toggle"])
def test_out_of_order_edges_are_ignored(mode: Any) -> None:
    b = ButtonLogic(mode)
    assert b.released() == []
    assert b.held() == []
    assert b.pressed() == [START]
    assert b.pressed() == []
    assert b.held() == [END]
    assert b.held() == []


# --- gpiozero MockFactory --------------------------------------------------------------------


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory(revision="d04170", pin_class=MockPWMPin)
    assert f.board_info.model == "5B"
    yield f
    f.reset()


class Actions:
    """on_action: records actions; wait() awaits a count (when_held runs in another thread)."""

    def __init__(self) -> None:
        self.got: list[ButtonAction] = []
        self._changed = asyncio.Event()

    def __call__(self, action: ButtonAction) -> None:
        self.got.append(action)
        self._changed.set()

    async def wait(self, n: int) -> list[ButtonAction]:
        async def until() -> None:
            while len(self.got) < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), HANG_GUARD_S)
        return self.got


async def settle() -> None:
    """Let call_soon_threadsafe callbacks queued by the mock pins run."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_hold_to_talk_button(factory: MockFactory) -> None:
    actions = Actions()
    cfg = ButtonConfig(pin=17, bounce_ms=30, hold_ms=5000, mode="hold")
    button = PushButton(cfg, asyncio.get_running_loop(), actions, pin_factory=factory)
    pin = factory.pin(17)
    try:
        pin.drive_low()
        assert await actions.wait(1) == [START]
        pin.drive_high()
        assert await actions.wait(2) == [START, STOP]
    finally:
        button.close()


@pytest.mark.asyncio
async def test_long_hold_ends_the_conversation(factory: MockFactory) -> None:
    actions = Actions()
    cfg = ButtonConfig(pin=17, hold_ms=100, mode="hold")
    button = PushButton(cfg, asyncio.get_running_loop(), actions, pin_factory=factory)
    pin = factory.pin(17)
    try:
        pin.drive_low()
        assert await actions.wait(2) == [START, END]  # END arrives from gpiozero's hold thread
        pin.drive_high()
        await settle()
        assert actions.got == [START, END]
    finally:
        button.close()


@pytest.mark.asyncio
async def test_active_high_button_and_toggle_mode(factory: MockFactory) -> None:
    actions = Actions()
    cfg = ButtonConfig(pin=22, active_low=False, hold_ms=5000, mode="toggle")
    button = PushButton(cfg, asyncio.get_running_loop(), actions, pin_factory=factory)
    pin = factory.pin(22)
    try:
        pin.drive_high()
        pin.drive_low()
        assert await actions.wait(1) == [START]
        pin.drive_high()
        pin.drive_low()
        assert await actions.wait(2) == [START, STOP]
    finally:
        button.close()


@pytest.mark.asyncio
async def test_reconfigure_moves_the_pin_and_mode(factory: MockFactory) -> None:
    actions = Actions()
    loop = asyncio.get_running_loop()
    button = PushButton(ButtonConfig(pin=17, hold_ms=5000), loop, actions, pin_factory=factory)
    try:
        button.reconfigure(ButtonConfig(pin=27, hold_ms=5000, mode="toggle"))
        factory.pin(17).drive_low()  # the old pin is released and ignored
        factory.pin(17).drive_high()
        factory.pin(27).drive_low()
        factory.pin(27).drive_high()
        assert await actions.wait(1) == [START]
        await settle()
        assert actions.got == [START]
        PWMLED(17, pin_factory=factory).close()  # pin 17 is free again
        button.reconfigure(ButtonConfig(pin=None))
        factory.pin(27).drive_low()
        await settle()
        assert actions.got == [START]
    finally:
        button.close()


def led_states(factory: MockFactory, pin: int) -> list[float]:
    return [float(s.state) for s in factory.pin(pin).states]


async def wait_states(factory: MockFactory, pin: int, ok: Callable[[list[float]], bool]) -> None:
    async def until() -> None:
        # gpiozero's blink thread writes the pin; there is nothing to await but time
        while not ok(led_states(factory, pin)):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until(), HANG_GUARD_S)


@pytest.mark.asyncio
async def test_led_patterns(factory: MockFactory) -> None:
    led = StatusLed(LedConfig(pin=18, brightness=0.5), pin_factory=factory)
    pin = factory.pin(18)
    try:
        led.show(State.LISTENING)
        assert pin.state == 0.5  # solid, at the configured brightness
        led.show(State.IDLE)
        assert pin.state == 0

        mark = len(pin.states)
        led.show(State.DEGRADED)  # fast blink: alternating full/off
        await wait_states(factory, 18, lambda s: len(s) - mark >= 6)
        blink = led_states(factory, 18)[mark:]
        assert set(blink) == {0.5, 0.0}
        assert all(a != b for a, b in zip(blink, blink[1:], strict=False))

        mark = len(pin.states)
        led.show(State.SPEAKING)  # pulse: a fade through intermediate levels
        await wait_states(factory, 18, lambda s: len(s) - mark >= 20)
        pulse = led_states(factory, 18)[mark:]
        assert max(pulse) <= 0.5
        assert any(0 < v < 0.5 for v in pulse)

        mark = len(pin.states)
        led.show(State.RECONNECTING)
        await wait_states(factory, 18, lambda s: len(s) - mark >= 3)
        assert set(led_states(factory, 18)[mark:]) <= {0.5, 0.0}

        mark = len(pin.states)
        led.show(State.MUTED)  # a short flash, then a long dark: on, but not listening
        await wait_states(factory, 18, lambda s: 0.5 in s[mark:] and s[-1] == 0.0)
        flash = led_states(factory, 18)[mark:]
        assert set(flash) <= {0.5, 0.0}
        assert pin.state == 0.0  # the flash was 0.08 s: now the long dark (2.92 s)

        led.show(State.STOPPING)
        assert pin.state == 0
        mark = len(pin.states)
        led.show(State.STOPPING)  # same state again: nothing rewritten
        assert len(pin.states) == mark
    finally:
        led.close()
    assert pin.state == 0
    PWMLED(18, pin_factory=factory).close()  # close() released the pin


@pytest.mark.asyncio
async def test_led_close_while_blinking_and_reconfigure(factory: MockFactory) -> None:
    led = StatusLed(LedConfig(pin=18), pin_factory=factory)
    try:
        led.show(State.CONNECTING)
        await wait_states(factory, 18, lambda s: 1.0 in s)
        led.reconfigure(LedConfig(pin=19, active_high=False, brightness=0.25))
        assert factory.pin(18).state == 0
        # the new LED carries on with the current pattern; active low: off is high
        await wait_states(factory, 19, lambda s: 0.75 in s)
        assert set(led_states(factory, 19)) <= {0.0, 1.0, 0.75}  # 0.0: the mock's initial state
        led.show(State.LISTENING)
        assert factory.pin(19).state == pytest.approx(0.75)
    finally:
        led.close()
    history = led_states(factory, 19)
    last_on = len(history) - 1 - history[::-1].index(0.75)
    assert 1.0 in history[last_on:]  # driven off (high) before the pin was released


@pytest.fixture
def global_factory(factory: MockFactory) -> Iterator[MockFactory]:
    old = Device.pin_factory
    Device.pin_factory = factory
    yield factory
    Device.pin_factory = old


@pytest.mark.asyncio
async def test_open_gpio_with_hardware(global_factory: MockFactory) -> None:
    actions = Actions()
    cfg = GpioConfig(button=ButtonConfig(pin=17, hold_ms=5000), led=LedConfig(pin=18))
    button, led = open_gpio(cfg, asyncio.get_running_loop(), actions)
    assert button is not None and led is not None
    try:
        global_factory.pin(17).drive_low()
        assert await actions.wait(1) == [START]
        led.show(State.LISTENING)
        assert global_factory.pin(18).state == 1
    finally:
        button.close()
        led.close()


@pytest.mark.asyncio
async def test_open_gpio_reports_a_busy_pin_and_keeps_the_rest(
    global_factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    holder = PWMLED(18)
    cfg = GpioConfig(button=ButtonConfig(pin=17), led=LedConfig(pin=18))
    try:
        button, led = open_gpio(cfg, asyncio.get_running_loop(), Actions())
        assert button is not None and led is None
        button.close()
    finally:
        holder.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("gpio.error device=led pin=18")


@pytest.mark.asyncio
async def test_no_gpio_is_one_line_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "voicebox_no_such_factory")
    cfg = GpioConfig(button=ButtonConfig(pin=17), led=LedConfig(pin=18))
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        result = open_gpio(cfg, asyncio.get_running_loop(), Actions())
    assert result == (None, None)
    assert leaked == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("gpio.unavailable reason=")
    assert "--simulate-button" in lines[0]


@pytest.mark.asyncio
async def test_no_pins_configured_opens_nothing(caplog: pytest.LogCaptureFixture) -> None:
    cfg = GpioConfig(button=ButtonConfig(pin=None), led=LedConfig(pin=None))
    assert open_gpio(cfg, asyncio.get_running_loop(), Actions()) == (None, None)
    assert caplog.records == []


@pytest.mark.asyncio
async def test_stdin_button() -> None:
    actions = Actions()
    r, w = os.pipe()
    button = StdinButton(asyncio.get_running_loop(), actions, fd=r)
    try:
        os.write(w, b"\n")
        assert await actions.wait(1) == [START]
        os.write(w, b"\nend\n\n")
        assert await actions.wait(4) == [START, STOP, END, START]
        os.close(w)  # end of input: reading stops, no error
        await settle()
    finally:
        button.close()
        os.close(r)
