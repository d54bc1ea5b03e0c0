"""The conversation mode chosen at run time (Home Assistant's select): `<state_dir>/mode` holds it
with the configured `conversation.mode` it replaced, so it survives a restart until the YAML
names a different mode (the file's edit wins, as for the volume). Written atomically."""

from __future__ import annotations

import logging
from pathlib import Path

from voicebox.logs import event
from voicebox.statefile import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "mode"
MODES = ("push_to_talk", "wake_word", "always_on")


def load(state_dir: str | Path, configured: str) -> str | None:
    """The mode chosen over `configured`, or None (none chosen, or chosen over another one)."""
    path = Path(state_dir) / FILE_NAME
    try:
        chosen, _, over = path.read_text(encoding="ascii").strip().partition(" ")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        event(log, "mode.unreadable", logging.WARNING, path=path, error=str(exc))
        return None
    if chosen not in MODES:
        event(log, "mode.unreadable", logging.WARNING, path=path, error=f"not a mode: {chosen!r}")
        return None
    return chosen if over == configured and chosen != configured else None


def store(state_dir: str | Path, chosen: str, configured: str) -> None:
    path = Path(state_dir) / FILE_NAME
    try:
        if chosen == configured:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, f"{chosen} {configured}\n")
    except OSError as exc:
        event(log, "mode.not_stored", logging.WARNING, path=path, error=str(exc))
