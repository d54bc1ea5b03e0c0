"""The privacy mute's persistent switch: `<state_dir>/muted`, so a mute survives a restart and a
power cut. Written atomically (temp file, fsync, rename, fsync of the directory); an unreadable
file counts as muted, the side that keeps the room private."""

from __future__ import annotations

import logging
from pathlib import Path

from voicebox.logs import event
from voicebox.statefile import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "muted"


def load(state_dir: str | Path) -> bool:
    """Whether the box was muted when it last ran."""
    path = Path(state_dir) / FILE_NAME
    try:
        return path.read_text(encoding="ascii").strip() != "0"
    except FileNotFoundError:
        return False
    except (OSError, UnicodeError) as exc:
        event(log, "mute.unreadable", logging.WARNING, path=path, error=str(exc), muted=True)
        return True


def store(state_dir: str | Path, muted: bool) -> None:
    """Record the mute; a failure is logged (the mute itself still holds until a restart)."""
    path = Path(state_dir) / FILE_NAME
    try:
        write_atomic(path, "1\n" if muted else "0\n")
    except OSError as exc:
        event(log, "mute.not_stored", logging.WARNING, path=path, error=str(exc))
