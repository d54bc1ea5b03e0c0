"""Per-call log fields: every record logged inside a call's tasks carries CALL_SID and STREAM_SID.

A call's task sets the context variables; asyncio copies the context into every task created
from it (the supervisor, its session links), so their log lines carry the call's fields too.
"""

from __future__ import annotations

import contextvars
import logging

CALL_SID: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_sid", default=None)
STREAM_SID: contextvars.ContextVar[str | None] = contextvars.ContextVar("stream_sid", default=None)


class CallFields(logging.Filter):
    """Adds call_sid/stream_sid to the message and as journald fields (CALL_SID, STREAM_SID)."""

    def filter(self, record: logging.LogRecord) -> bool:
        call, stream = CALL_SID.get(), STREAM_SID.get()
        if call is None or getattr(record, "CALL_SID", None) is not None:
            return True
        record.CALL_SID = call
        text = f" call_sid={call}"
        if stream is not None:
            record.STREAM_SID = stream
            text += f" stream_sid={stream}"
        record.msg = record.getMessage() + text
        record.args = None
        return True


def install() -> None:
    """Put the filter on every root handler (after logs.setup)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, CallFields) for f in handler.filters):
            handler.filters.insert(0, CallFields())
