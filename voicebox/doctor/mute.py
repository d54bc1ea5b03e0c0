"""`voicebox doctor`'s mute check: whether the box is muted, and the mute switch's position."""

from __future__ import annotations

import contextlib
from typing import Any

from voicebox import mute
from voicebox.config import Config
from voicebox.doctor.host import open_button
from voicebox.doctor.report import Check, fail, ok, warn


def check_mute(cfg: Config, pin_factory: Any = None, read_pin: bool = True) -> Check:
    """The state directory's mute, and gpio.mute.pin read when nothing else holds it."""
    muted = mute.load(cfg.paths.state_dir)
    switch = cfg.gpio.mute
    where = f"{switch.kind} on BCM pin {switch.pin}" if switch.pin is not None else None
    position = ""
    if switch.pin is not None and where is not None and read_pin:
        try:
            device = open_button(switch.pin, switch.active_low, pin_factory)
        except ImportError as exc:  # gpiozero's BadPinFactory: no GPIO on this machine
            position = f"; no GPIO here to read the {where} ({exc})"
        except Exception as exc:
            return fail(
                "mute",
                f"{where}: {type(exc).__name__}: {exc}",
                "choose a free pin for gpio.mute.pin (voicebox check-config lists clashes)",
            )
        else:
            try:
                closed = bool(device.is_pressed)
            finally:
                with contextlib.suppress(Exception):
                    device.close()
            position = f"; the {where} is {'closed' if closed else 'open'}"
            if closed and switch.kind == "switch":
                return warn("mute", "muted by the mute switch" + position, "open the switch")
    elif where is not None:
        position = f"; the {where} is held by the running service"
    if muted:
        return warn(
            "mute",
            "muted: nothing is heard or sent" + position,
            "voicebox unmute (or the mute switch / a long press, if configured)",
        )
    return ok("mute", "not muted" + position)
