"""Fault injection grammar: which connection gets which fault, parsed from `N:KIND[:ARG...]`.

    N        1-based number of the convai WebSocket handshake (counting rejected ones), or "all"
    KIND     one of:
      close:CODE[:AFTER[:REASON]]  close with CODE (1000 1002 1008 1011 1012 1013 3000 ...)
      http:STATUS[:RETRY_AFTER]    reject the handshake with HTTP STATUS (401 403 404 429 500 503);
                                   429/503 carry Retry-After (default 1 s)
      drop[:AFTER]                 abort the TCP connection without a close frame (client sees 1006)
      silent[:AFTER]               half-open link: stop sending and stop reading, socket stays open
      malformed[:AFTER]            send a burst of bad frames (bad JSON, binary, missing fields,
                                   bad base64, unknown type), then carry on normally
      quota[:AFTER]                flat error frame "This request exceeds your quota limit.",
                                   then close 1002 with that reason
      delay:SECONDS                send conversation_initiation_metadata only after SECONDS
      cap[:AFTER]                  the duration cap now: max_duration_exceeded error, close 1000
      interrupt[:AFTER]            act as if the user barged in (interruption + correction)
      tool[:AFTER]                 a client_tool_call (the configured tool) in mid-conversation
      end_call[:AFTER]             the agent says goodbye and ends the call (close 1000)
      oversize[:AFTER]             one 4 MiB audio frame (over any sane client's frame limit)
    AFTER    when, counted from the metadata: "2.5" or "2.5s" = seconds, "10c" = after the 10th
             user_audio_chunk; default: right after the metadata

Examples: `2:close:1012`, `1:close:1011:5c`, `1:http:503`, `all:drop:3s`, `3:silent`,
`1:malformed`, `1:quota:2`, `1:delay:4`, `2:cap:10`, `1:oversize`.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = (
    "close",
    "http",
    "drop",
    "silent",
    "malformed",
    "quota",
    "delay",
    "cap",
    "interrupt",
    "tool",
    "end_call",
    "oversize",
)
OVERSIZE_BYTES = 4 * 1024 * 1024

CLOSE_REASONS = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1008: "policy violation",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    3000: "request error",
}
QUOTA_MESSAGE = "This request exceeds your quota limit."

# The part of the module docstring after its first paragraph (shown by `simulate --help`).
GRAMMAR = (__doc__ or "").split("\n\n", 1)[-1]


class FaultError(ValueError):
    """A fault spec that does not parse; the message names the spec and what is wrong."""


@dataclass(frozen=True, slots=True)
class Fault:
    connection: int | None  # None = every connection
    kind: str
    code: int = 0  # close code or HTTP status
    after_s: float = 0.0
    after_chunks: int = 0  # > 0: trigger on that user_audio_chunk instead of a time
    reason: str = ""
    retry_after_s: float = 1.0
    delay_s: float = 0.0

    def applies_to(self, index: int) -> bool:
        return self.connection is None or self.connection == index

    def describe(self) -> str:
        parts = [self.kind]
        if self.code:
            parts.append(str(self.code))
        if self.after_chunks:
            parts.append(f"after {self.after_chunks} chunks")
        elif self.after_s:
            parts.append(f"after {self.after_s:g}s")
        if self.delay_s:
            parts.append(f"{self.delay_s:g}s")
        return " ".join(parts)


def _after(spec: str, text: str) -> tuple[float, int]:
    try:
        if text.endswith("c"):
            n = int(text[:-1])
            if n < 1:
                raise ValueError
            return 0.0, n
        s = float(text.removesuffix("s"))
        if not s >= 0:
            raise ValueError
        return s, 0
    except ValueError:
        raise FaultError(
            f"fault {spec!r}: AFTER {text!r} must be seconds (2.5 or 2.5s) or chunks (10c)"
        ) from None


def _int(spec: str, what: str, text: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise FaultError(f"fault {spec!r}: {what} {text!r} must be an integer in {lo}..{hi}")
    return value


def parse_fault(spec: str) -> Fault:
    """Parse one `N:KIND[:ARG...]` spec; FaultError says what is wrong."""
    parts = spec.strip().split(":")
    if len(parts) < 2:
        raise FaultError(f"fault {spec!r}: expected N:KIND[:ARG], e.g. 2:close:1012")
    who, kind, args = parts[0], parts[1], parts[2:]
    if who in KINDS:
        raise FaultError(
            f"fault {spec!r}: missing the connection; expected N:KIND[:ARG], e.g. 1:{spec}"
        )
    connection = None if who == "all" else _int(spec, "connection number", who, 1, 1_000_000)
    if kind not in KINDS:
        raise FaultError(f"fault {spec!r}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    after_s, after_chunks = 0.0, 0
    if kind == "close":
        if not args:
            raise FaultError(f"fault {spec!r}: close needs a code, e.g. {who}:close:1012")
        code = _int(spec, "close code", args[0], 1000, 4999)
        if code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000:
            raise FaultError(f"fault {spec!r}: {code} cannot be sent in a close frame")
        if len(args) > 1:
            after_s, after_chunks = _after(spec, args[1])
        reason = ":".join(args[2:]) if len(args) > 2 else CLOSE_REASONS.get(code, "closed")
        return Fault(connection, kind, code, after_s, after_chunks, reason)
    if kind == "http":
        if not args:
            raise FaultError(f"fault {spec!r}: http needs a status, e.g. {who}:http:503")
        status = _int(spec, "HTTP status", args[0], 400, 599)
        retry = 1.0
        if len(args) > 1:
            retry, chunks = _after(spec, args[1])
            if chunks:
                raise FaultError(f"fault {spec!r}: RETRY_AFTER is in seconds")
        return Fault(connection, kind, status, retry_after_s=retry)
    if kind == "delay":
        if len(args) != 1:
            raise FaultError(f"fault {spec!r}: delay needs seconds, e.g. {who}:delay:4")
        delay, chunks = _after(spec, args[0])
        if chunks:
            raise FaultError(f"fault {spec!r}: delay is in seconds")
        return Fault(connection, kind, delay_s=delay)
    if len(args) > 1:
        raise FaultError(f"fault {spec!r}: {kind} takes at most one argument (AFTER)")
    if args:
        after_s, after_chunks = _after(spec, args[0])
    code = 1002 if kind == "quota" else 0
    reason = QUOTA_MESSAGE if kind == "quota" else ""
    return Fault(connection, kind, code, after_s, after_chunks, reason)
