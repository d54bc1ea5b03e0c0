"""A ring on the box itself (gpiozero's MockFactory): the LED shows it in a pattern of its own, a
press of the talk button stops it without opening a conversation, and so does the wake word."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from tests.mute.test_mute_switch import factory, until, write_config  # noqa: F401
from voicebox import config
from voicebox.daemon import Daemon
from voicebox.state import State


async def _ringing(daemon: Daemon, name: str) -> None:
    assert daemon.timers is not None
    daemon.timers.book.set_timer(time.time() - 1, 1, name)  # due now
    daemon.timers.changed()
    await until(lambda: bool(daemon.timers and daemon.timers.ringing))


@pytest.mark.asyncio
async def test_the_led_rings_and_a_press_or_the_wake_word_stops_the_ring(
    tmp_path: Path,
    factory: MockFactory,  # noqa: F811
) -> None:
    path = write_config(tmp_path, "  button: {pin: 17, bounce_ms: 0}\n  led: {pin: 18}")
    daemon = Daemon(config.load(path), path, None, simulate_button=False)
    daemon._open_gpio(asyncio.get_running_loop())
    assert daemon.timers is not None and daemon.gpio.led is not None
    task = asyncio.create_task(daemon.timers.run())
    button = factory.pin(17)
    try:
        await _ringing(daemon, "tea")
        assert daemon.gpio.led._state is State.RINGING  # long flashes, its own pattern
        assert "ringing tea" in daemon._status_text()
        button.drive_low()  # pressed
        await until(lambda: not daemon.timers or not daemon.timers.ringing)
        button.drive_high()
        await asyncio.sleep(0.1)
        assert daemon.gpio.led._state is State.IDLE
        assert not daemon.supervisor._wanted  # the press opened no conversation
        await _ringing(daemon, "toast")
        daemon._on_wake(0)  # the wake word, while it rings
        await until(lambda: not daemon.timers or not daemon.timers.ringing)
        assert not daemon.supervisor._wanted
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await daemon.shutdown()
