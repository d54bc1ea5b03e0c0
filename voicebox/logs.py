"""Event logging: one line per event with its fields, as journald fields under systemd.

`event(log, "session.closed", conversation_id=..., close_code=1012)` writes
`session.closed conversation_id=conv_1 close_code=1012` and, through the journal handler, the
fields EVENT, CONVERSATION_ID and CLOSE_CODE. Registered secrets are scrubbed from every record.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

_SECRETS: set[str] = set()
REDACTED = "***"


def register_secret(value: str) -> None:
    """Scrub `value` from every log record from now on."""
    if len(value) >= 4:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    text = str(value)
    if text == "" or any(c in text for c in " \t\n\"'="):
        return repr(text)
    return text


def event(log: logging.Logger, name: str, /, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event: its name then key=value pairs; keys become upper-case journald fields."""
    if not log.isEnabledFor(level):
        return
    parts = [name] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    extra = {k.upper(): v for k, v in fields.items() if v is not None}
    extra["EVENT"] = name
    log.log(level, " ".join(parts), extra={"journal_fields": extra})


# journald field names: upper-case letters, digits and _, not starting with _ or a digit.
_JOURNAL_FIELD = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            try:
                record.msg = scrub(record.getMessage())
            except Exception:  # bad %-args: keep the raw template, scrubbed
                record.msg = scrub(str(record.msg))
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = scrub(record.exc_text)
            if record.stack_info:
                record.stack_info = scrub(record.stack_info)
            fields = getattr(record, "journal_fields", None)
            if isinstance(fields, dict):
                record.journal_fields = {k: scrub(str(v)) for k, v in fields.items()}
        return True


class _JournalFieldsHandler(logging.Handler):
    """Sends records to journald with SYSLOG_IDENTIFIER=voicebox and the event's fields."""

    PRIORITY = ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3))

    def __init__(self, send: Callable[..., Any]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            priority = 2
            for limit, prio in self.PRIORITY:
                if record.levelno <= limit:
                    priority = prio
                    break
            fields: dict[str, Any] = {
                "PRIORITY": str(priority),
                "SYSLOG_IDENTIFIER": "voicebox",
                "LOGGER": record.name,
                "THREAD_NAME": record.threadName or "",
            }
            extra = getattr(record, "journal_fields", None)
            if isinstance(extra, dict):
                for key, value in extra.items():
                    if _JOURNAL_FIELD.fullmatch(key):
                        fields[key] = str(value)
            message = self.format(record)
            self._send(message, **fields)
        except Exception:  # a logging failure must never take the daemon down
            self.handleError(record)


def setup(level: str = "info", *, journal: bool | None = None) -> None:
    """Route logs to journald when systemd runs us ($JOURNAL_STREAM), else to stderr. Never both."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    use_journal = bool(os.environ.get("JOURNAL_STREAM")) if journal is None else journal
    handler: logging.Handler | None = None
    if use_journal:
        try:
            from systemd import journal as sd_journal

            handler = _JournalFieldsHandler(sd_journal.send)
            handler.setFormatter(logging.Formatter("%(message)s"))
        except ImportError:
            pass
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ScrubFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def journal_handler(send: Callable[..., Any]) -> logging.Handler:
    """A journald handler with a custom sender (tests pass one that records the fields)."""
    handler = _JournalFieldsHandler(send)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_ScrubFilter())
    return handler
