"""The timers on disk: `<state_dir>/timers.json`, written atomically on every change, so a power
cut leaves the list before the change or after it. An unreadable file is kept aside as
`timers.json.bad` (logged) and the box starts with none, never with half of one."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from voicebox.logs import event
from voicebox.statefile import write_atomic
from voicebox.timers.book import Timer

log = logging.getLogger(__name__)

FILE_NAME = "timers.json"
VERSION = 1


def load(state_dir: str | Path) -> list[Timer]:
    path = Path(state_dir) / FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError("not a voicebox timers file of version 1")
        return [Timer.from_json(d) for d in data["timers"]]
    except FileNotFoundError:
        return []
    except (OSError, UnicodeError, ValueError, KeyError, TypeError) as exc:
        event(log, "timers.unreadable", logging.ERROR, path=path, error=str(exc))
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(FILE_NAME + ".bad"))
        return []


def save(state_dir: str | Path, timers: list[Timer]) -> bool:
    """Write the list; False (logged) if it could not be written."""
    path = Path(state_dir) / FILE_NAME
    text = json.dumps({"version": VERSION, "timers": [t.to_json() for t in timers]}, indent=1)
    try:
        write_atomic(path, text + "\n")
    except OSError as exc:
        event(log, "timers.not_stored", logging.ERROR, path=path, error=str(exc))
        return False
    return True
