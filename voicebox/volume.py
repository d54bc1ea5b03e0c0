"""The output level people set: 0-100 on a perceptual curve, kept in `<state_dir>/volume`.

The curve: 0 is silent; 1-100 are linear in dB from MIN_DB (level 1) to 0 dB (level 100), so each
step is the same change to the ear (0.4 dB; 10 steps = 4 dB). `audio.output.volume` is the level
of a fresh box; a level set since (the set_volume tool, `voicebox volume N`, the volume buttons)
is written atomically to the state directory and wins at the next start, until a SIGHUP brings a
new `audio.output.volume`. An unreadable file is logged and the configured level is used.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

from voicebox.logs import event
from voicebox.statefile import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "volume"
MIN_DB = -40.0  # level 1; level 0 is silence
STEP = 5  # one press of a volume button


def gain(level: int) -> float:
    """The linear gain of a level 0-100."""
    level = clamp(level)
    if level == 0:
        return 0.0
    db = MIN_DB + (level - 1) * (0.0 - MIN_DB) / 99
    return float(10 ** (db / 20))


def level_of_gain(value: float) -> int:
    """The nearest level of a linear gain (the old `audio.output.volume: 0..1`)."""
    if value <= 0:
        return 0
    db = 20 * math.log10(min(1.0, value))
    return clamp(round(1 + (db - MIN_DB) * 99 / (0.0 - MIN_DB)))


def configured_level(value: float) -> int:
    """`audio.output.volume` as a level: up to 1.0 it is the linear gain the key took before
    levels (1.0 is 100, 0.5 is 85; so level 1 cannot be configured), above it a level."""
    if value <= 1.0:
        return level_of_gain(value)
    return clamp(round(value))


def clamp(level: int) -> int:
    return max(0, min(100, int(level)))


def load(state_dir: str | Path) -> int | None:
    """The level kept from the last run (None: none kept, or unreadable)."""
    path = Path(state_dir) / FILE_NAME
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        event(log, "volume.unreadable", logging.WARNING, path=path, error=str(exc))
        return None
    try:
        return clamp(int(text))
    except ValueError:
        event(log, "volume.unreadable", logging.WARNING, path=path, error=f"not a level: {text!r}")
        return None


def store(state_dir: str | Path, level: int) -> None:
    path = Path(state_dir) / FILE_NAME
    try:
        write_atomic(path, f"{clamp(level)}\n")
    except OSError as exc:
        event(log, "volume.not_stored", logging.WARNING, path=path, error=str(exc))


class Volume:
    """The level now: applied through `apply(gain)`, kept in the state directory on change."""

    def __init__(self, state_dir: str | Path, configured: int, apply: Callable[[float], None]):
        self.state_dir = state_dir
        self.configured = clamp(configured)
        self._apply = apply
        kept = load(state_dir)
        self.level = self.configured if kept is None else kept
        self._apply(gain(self.level))

    def set(self, level: int, source: str) -> int:
        """Set, apply, keep and log the level; the level set."""
        new = clamp(level)
        old, self.level = self.level, new
        self._apply(gain(new))
        if new != old:
            store(self.state_dir, new)
            event(log, "volume.changed", old=old, new=new, source=source,
                  db=None if new == 0 else round(20 * math.log10(gain(new)), 1))  # fmt: skip
        return new

    def step(self, steps: int, source: str) -> int:
        return self.set(self.level + steps * STEP, source)

    def reconfigure(self, configured: int) -> None:
        """SIGHUP: a changed `audio.output.volume` applies; an unchanged one leaves the level."""
        configured = clamp(configured)
        if configured != self.configured:
            self.configured = configured
            self.set(configured, "config")


def describe(level: int) -> str:
    return "0 (silent)" if level <= 0 else f"{level} ({20 * math.log10(gain(level)):.1f} dB)"


def main_volume(args: argparse.Namespace) -> int:
    """`voicebox volume [LEVEL]`: the running daemon's level, or set it (kept across restarts)."""
    from voicebox.status import ask

    if args.level is not None and not 0 <= args.level <= 100:
        print(f"voicebox volume: {args.level} is not a level 0-100", file=sys.stderr)
        return 2
    answer = ask(args, "volume" if args.level is None else f"volume {args.level}")
    if isinstance(answer, int):
        return answer
    print(f"volume {describe(int(answer.get('level', 0)))}")
    return 0
