"""doctor's mute check: the stored mute, and the mute switch read through gpiozero's MockFactory."""

from __future__ import annotations

import warnings
from pathlib import Path

from gpiozero import Button
from gpiozero.pins.mock import MockFactory

from voicebox import mute
from voicebox.config import Config, with_changes
from voicebox.doctor.mute import check_mute


def _cfg(tmp: Path, **changes: object) -> Config:
    return with_changes(Config(), **{"paths.state_dir": str(tmp / "state"), **changes})


def test_not_muted_and_muted_by_the_state_directory(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert check_mute(cfg).status == "ok"
    mute.store(cfg.paths.state_dir, True)
    c = check_mute(cfg)
    assert c.status == "warn" and c.detail.startswith("muted") and "voicebox unmute" in c.fix


def test_the_switch_is_read_and_a_closed_one_is_the_mute(tmp_path: Path) -> None:
    factory = MockFactory(revision="d04170")
    cfg = _cfg(tmp_path, **{"gpio.mute.pin": 22})
    c = check_mute(cfg, factory)
    assert c.status == "ok" and c.detail.endswith("the switch on BCM pin 22 is open")
    pin = factory.pin(22)
    pin.drive_low()
    pin._set_pull = lambda value: setattr(pin, "_pull", value)  # held at ground by the switch
    c = check_mute(cfg, factory)
    assert c.status == "warn" and c.detail.startswith("muted by the mute switch")
    button = with_changes(cfg, **{"gpio.mute.kind": "button"})
    c = check_mute(button, factory)  # a button held down is not a mute
    assert c.status == "ok" and c.detail.endswith("the button on BCM pin 22 is closed")
    held = check_mute(cfg, factory, read_pin=False)
    assert held.status == "ok" and "held by the running service" in held.detail


def test_a_pin_another_device_holds_fails_naming_it(tmp_path: Path) -> None:
    factory = MockFactory(revision="d04170")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = Button(22, pin_factory=factory)
    try:
        c = check_mute(_cfg(tmp_path, **{"gpio.mute.pin": 22}), factory)
        assert c.status == "fail" and "BCM pin 22" in c.detail and "gpio.mute.pin" in c.fix
    finally:
        other.close()
