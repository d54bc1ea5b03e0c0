"""The output level: the perceptual curve, the state file, and the volume buttons (gpiozero's
MockFactory) through the daemon, with the confirmation tone."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from tests.mute.test_mute_switch import factory, until, write_config  # noqa: F401
from voicebox import config, volume
from voicebox.daemon import Daemon
from voicebox.daemon.report import volume_command


def test_the_curve_is_silent_at_0_and_even_in_db_from_1_to_100() -> None:
    assert volume.gain(0) == 0.0
    assert volume.gain(100) == 1.0
    assert 20 * math.log10(volume.gain(1)) == pytest.approx(volume.MIN_DB)
    steps = np.diff([20 * math.log10(volume.gain(n)) for n in range(1, 101)])
    assert np.allclose(steps, steps[0]) and steps[0] == pytest.approx(40 / 99)
    assert volume.gain(-5) == 0.0 and volume.gain(250) == 1.0  # clamped
    assert all(volume.level_of_gain(volume.gain(n)) == n for n in range(101))


def test_the_old_gain_form_of_the_config_key_reads_as_the_level_that_sounds_the_same() -> None:
    assert volume.configured_level(1.0) == 100
    assert volume.configured_level(0.5) == 85  # -6 dB
    assert volume.configured_level(0.0) == 0
    assert volume.configured_level(40.0) == 40


def test_a_level_set_is_kept_and_wins_until_the_configured_level_changes(tmp_path: Path) -> None:
    applied: list[float] = []
    v = volume.Volume(tmp_path, 100, applied.append)
    assert v.level == 100 and applied == [1.0]
    assert v.set(40, "tool") == 40 and applied[-1] == volume.gain(40)
    assert (tmp_path / "volume").read_text() == "40\n"
    again = volume.Volume(tmp_path, 100, applied.append)  # a restart
    assert again.level == 40 and applied[-1] == volume.gain(40)
    again.reconfigure(100)  # a SIGHUP with the same configured level: the kept level stays
    assert again.level == 40
    again.reconfigure(70)  # a new audio.output.volume applies
    assert again.level == 70 and (tmp_path / "volume").read_text() == "70\n"
    assert again.step(-1, "gpio") == 65 and again.step(+10, "gpio") == 100


def test_an_unreadable_level_file_falls_back_to_the_configured_level(tmp_path: Path) -> None:
    (tmp_path / "volume").write_text("loud\n")
    assert volume.Volume(tmp_path, 60, lambda g: None).level == 60


@pytest.mark.asyncio
async def test_volume_buttons_step_repeat_on_hold_and_confirm_with_a_tone(
    tmp_path: Path,
    factory: MockFactory,  # noqa: F811
) -> None:
    gpio = (
        "  button: {pin: null}\n"
        "  volume_up: {pin: 23, bounce_ms: 0}\n"
        "  volume_down: {pin: 24, bounce_ms: 0, repeat_ms: 100}"
    )
    path = write_config(tmp_path, gpio)
    daemon = Daemon(config.load(path), path, None, simulate_button=False)
    daemon._open_gpio(asyncio.get_running_loop())
    played: list[int] = []
    daemon.announcer.chime = lambda name: played.append(daemon.volume.level)  # type: ignore[method-assign]
    up, down = factory.pin(23), factory.pin(24)
    try:
        assert daemon.volume.level == 100
        down.drive_low()
        await until(lambda: daemon.volume.level == 95)
        await until(lambda: daemon.volume.level <= 85)  # held: it repeats
        down.drive_high()
        await asyncio.sleep(0.3)
        held_to = daemon.volume.level
        assert held_to <= 85 and daemon.volume.level == held_to  # released: it stops
        up.drive_low()
        await until(lambda: daemon.volume.level == held_to + 5)
        up.drive_high()
        assert (tmp_path / "state" / "volume").read_text() == f"{held_to + 5}\n"
        assert played[0] == 95 and played[-1] == held_to + 5  # a tone at each new level
        volume_at = lambda: daemon.volume.level  # noqa: E731
        assert volume_command("30", volume_at, daemon.set_volume) == {"level": 30}  # `volume 30`
        assert "not a level" in volume_command("300", volume_at, daemon.set_volume)["error"]
        assert daemon.snapshot()["volume"] == 30
    finally:
        await daemon.shutdown()
