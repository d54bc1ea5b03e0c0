"""The privacy mute from GPIO (gpiozero's MockFactory, a Pi 5 board): a switch on a pin of its own,
a push button on one, and a long press of the talk button."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from voicebox import config
from voicebox.config import ConfigError
from voicebox.daemon import Daemon
from voicebox.gpio import ButtonAction, ButtonLogic
from voicebox.simulator.voice import silence

HANG_GUARD_S = 10.0


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory(revision="d04170", pin_class=MockPWMPin)
    old, Device.pin_factory = Device.pin_factory, f
    yield f
    f.reset()
    Device.pin_factory = old


def write_config(tmp: Path, gpio: str) -> Path:
    with wave.open(str(tmp / "in.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(silence(1.0).astype("<i2").tobytes())
    path = tmp / "config.yaml"
    path.write_text(
        f"""agent:
  agent_id: test-agent
  api_base: http://127.0.0.1:9
audio:
  input: {{backend: file, path: {tmp / "in.wav"}}}
  output: {{backend: file, path: {tmp / "out.wav"}}}
conversation:
  mode: push_to_talk
announcements:
  enabled: false
gpio:
{gpio}
paths:
  state_dir: {tmp / "state"}
  runtime_dir: {tmp / "run"}
"""
    )
    return path


async def until(predicate: Callable[[], bool]) -> None:
    """Poll: an edge comes from gpiozero's thread via call_soon_threadsafe, no event to await."""
    async with asyncio.timeout(HANG_GUARD_S):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def stored(tmp: Path) -> str:
    return (tmp / "state" / "muted").read_text()


def test_a_long_press_toggles_the_mute_when_configured() -> None:
    b = ButtonLogic("hold", "mute")
    assert b.pressed() == [ButtonAction.TALK_START]
    assert b.held() == [ButtonAction.TOGGLE_MUTE]
    assert b.released() == []
    assert ButtonLogic("toggle", "mute").held() == []  # not down: nothing


def test_a_pin_used_twice_is_a_config_error_naming_both(tmp_path: Path) -> None:
    path = write_config(tmp_path, "  button: {pin: 17}\n  mute: {pin: 17}")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert any("gpio.mute.pin: GPIO17 is already gpio.button.pin" in p for p in err.value.problems)


@pytest.mark.asyncio
async def test_a_mute_switch_mutes_while_closed_and_overrules_voicebox_unmute(
    tmp_path: Path, factory: MockFactory
) -> None:
    path = write_config(tmp_path, "  button: {pin: null}\n  mute: {pin: 22}")
    daemon = Daemon(config.load(path), path, None, simulate_button=False)
    daemon._open_gpio(asyncio.get_running_loop())
    pin = factory.pin(22)
    try:
        assert not daemon.supervisor.muted
        pin.drive_low()  # the switch closed (to ground)
        await until(lambda: daemon.supervisor.muted)
        assert stored(tmp_path) == "1\n"
        answer = daemon.set_muted(False)  # voicebox unmute, over the status socket
        assert "mute switch on GPIO22 is closed" in answer["error"]
        assert daemon.supervisor.muted
        pin.drive_high()  # opened: unmuted
        await until(lambda: not daemon.supervisor.muted)
        assert stored(tmp_path) == "0\n"
        assert daemon.set_muted(True)["changed"]  # an open switch leaves the socket free
        assert daemon.set_muted(False)["changed"]
    finally:
        await daemon.shutdown()
    # Closed at start (the owner slid it while the box was off): muted before anything opens.
    pin = factory.pin(22)
    pin.drive_low()
    # A closed switch holds the line at ground against the pull-up (the mock pin would follow it).
    pin._set_pull = lambda value: setattr(pin, "_pull", value)  # type: ignore[method-assign]
    daemon = Daemon(config.load(path), path, None, simulate_button=False)
    daemon._open_gpio(asyncio.get_running_loop())
    try:
        assert daemon.supervisor.muted and stored(tmp_path) == "1\n"
    finally:
        await daemon.shutdown()


@pytest.mark.asyncio
async def test_a_mute_button_toggles_on_each_press(tmp_path: Path, factory: MockFactory) -> None:
    path = write_config(tmp_path, "  button: {pin: null}\n  mute: {pin: 22, kind: button}")
    daemon = Daemon(config.load(path), path, None, simulate_button=False)
    daemon._open_gpio(asyncio.get_running_loop())
    pin = factory.pin(22)
    try:
        for expected in (True, False, True):
            pin.drive_low()
            await until(lambda e=expected: daemon.supervisor.muted is e)
            pin.drive_high()
            await asyncio.sleep(0.05)
            assert daemon.supervisor.muted is expected  # the release changes nothing
        assert stored(tmp_path) == "1\n"
        assert daemon.set_muted(False)["changed"]  # a button does not hold the mute
    finally:
        await daemon.shutdown()


@pytest.mark.asyncio
async def test_a_long_press_of_the_talk_button_mutes_and_unmutes(
    tmp_path: Path, factory: MockFactory
) -> None:
    gpio = "  button: {pin: 17, hold_ms: 150, long_press: mute, bounce_ms: 0}"
    path = write_config(tmp_path, gpio)
    daemon = Daemon(config.load(path), path, None, simulate_button=False)
    daemon._open_gpio(asyncio.get_running_loop())
    pin = factory.pin(17)
    try:
        for expected in (True, False):
            pin.drive_low()
            await until(lambda e=expected: daemon.supervisor.muted is e)
            pin.drive_high()
            await asyncio.sleep(0.05)
        pin.drive_low()  # a short press is the talk button still
        await asyncio.sleep(0.02)
        pin.drive_high()
        await asyncio.sleep(0.3)
        assert not daemon.supervisor.muted
    finally:
        await daemon.shutdown()


@pytest.mark.asyncio
async def test_a_reload_opens_moves_and_closes_the_mute_switch(
    tmp_path: Path, factory: MockFactory
) -> None:
    def held() -> set[str]:
        return {pin.name for pin, holders in factory._reservations.items() if holders}

    path = write_config(tmp_path, "  button: {pin: null}")
    daemon = Daemon(config.load(path), path, None, simulate_button=False)
    daemon._open_gpio(asyncio.get_running_loop())
    try:
        assert held() == set()
        write_config(tmp_path, "  button: {pin: null}\n  mute: {pin: 22}")
        await daemon.reload()
        assert held() == {"GPIO22"}
        write_config(tmp_path, "  button: {pin: null}\n  mute: {pin: 23}")
        await daemon.reload()
        assert held() == {"GPIO23"}
        factory.pin(23).drive_low()
        await until(lambda: daemon.supervisor.muted)
        write_config(tmp_path, "  button: {pin: null}")
        await daemon.reload()
        assert held() == set()
    finally:
        await daemon.shutdown()
