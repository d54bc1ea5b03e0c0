"""Event logging: one line per event with its fields, as journald fields under systemd.

`event(log, "session.closed", conversation_id=..., close_code=1012)` writes
`session.closed conversation_id=conv_1 close_code=1012` and, through the journal handler, the
fields EVENT, CONVERSATION_ID and CLOSE_CODE. Registered secrets are scrubbed from every record.
"""

from __future__ import annotations

import contextlib
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


# journald field names: upper-case letters, digits and _, not starting with _ or a digit.
_JOURNAL_FIELD = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# Fields JournalHandler sets itself: an event field of the same name is renamed EVENT_<NAME>.
_RESERVED = frozenset(
    {
        "MESSAGE", "MESSAGE_ID", "PRIORITY", "LOGGER", "THREAD_NAME", "PROCESS_NAME",
        "CODE_FILE", "CODE_LINE", "CODE_FUNC", "CODE_ARGS", "EXCEPTION_TEXT", "EXCEPTION_INFO",
        "SYSLOG_IDENTIFIER",
    }
)  # fmt: skip


def _field_name(key: str) -> str:
    name = key.upper()
    return f"EVENT_{name}" if name in _RESERVED else name


def event(log: logging.Logger, name: str, /, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event: its name then key=value pairs; keys become upper-case journald fields."""
    if not log.isEnabledFor(level):
        return
    parts = [name] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    extra = {_field_name(k): v for k, v in fields.items() if v is not None}
    extra["EVENT"] = name
    log.log(level, " ".join(parts), extra=extra)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The journald fields an event put on a log record."""
    return {k: v for k, v in vars(record).items() if _JOURNAL_FIELD.fullmatch(k)}


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
            for key, value in fields_of(record).items():
                if isinstance(value, str):
                    setattr(record, key, scrub(value))
        return True


def _journal_sender(send: Callable[..., Any]) -> Callable[..., None]:
    """Wraps journal.send: keeps valid field names only, every value a scrubbed string.

    JournalHandler passes the whole record (lower-case attributes, EXCEPTION_INFO with the
    exception's repr), so this is the last place a secret could slip into the journal.
    """

    def sender(MESSAGE: str, **fields: Any) -> None:  # noqa: N803 - journal.send's name
        valid: dict[str, Any] = {
            k: scrub(str(v)) for k, v in fields.items() if _JOURNAL_FIELD.fullmatch(k)
        }
        if isinstance(fields.get("CODE_LINE"), int):
            valid["CODE_LINE"] = fields["CODE_LINE"]  # journal.send formats it as an integer
        send(scrub(MESSAGE), **valid)

    return sender


def journal_handler(send: Callable[..., Any] | None = None) -> logging.Handler:
    """systemd's JournalHandler with SYSLOG_IDENTIFIER=voicebox (tests pass their own sender)."""
    from systemd import journal as sd_journal

    handler: logging.Handler = sd_journal.JournalHandler(
        sender_function=_journal_sender(send or sd_journal.send), SYSLOG_IDENTIFIER="voicebox"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_ScrubFilter())
    return handler


def setup(level: str = "info", *, journal: bool | None = None) -> None:
    """Route logs to journald when systemd runs us ($JOURNAL_STREAM), else to stderr. Never both."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    use_journal = bool(os.environ.get("JOURNAL_STREAM")) if journal is None else journal
    handler: logging.Handler | None = None
    if use_journal:
        with contextlib.suppress(ImportError):
            handler = journal_handler()
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_ScrubFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
