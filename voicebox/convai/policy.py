"""How a session ended and when to open the next one: pure classification and backoff policy.

`classify_end` maps every way a conversation socket can end (close frame, error event, HTTP
status at the handshake or signed-URL fetch, network failure, half-open link) to one `EndClass`
with a human reason. `ReconnectPolicy` turns a sequence of ends into delays: full-jitter
exponential backoff for transient failures, an immediate restart at the duration cap, and a
degraded mode (long fixed period) for configuration problems and for sessions that keep dying
right after opening. A session that worked (metadata received, turns exchanged) proves the
service is back and resets the backoff; a Retry-After, or a 1013 (TRY_AGAIN_S), still sets a
floor. A configuration end (quota, 1008) of a session that worked gets an ordinary retry: the
same key and agent just worked; a config end of a session that did not work means degraded.
No I/O, no clock: lifetimes and the RNG are passed in.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass

from voicebox.config import ReconnectConfig


class EndClass(enum.StrEnum):
    NORMAL = "normal"  # end_call, our own close, a clean 1000/1001
    DURATION_CAP = "duration_cap"  # the service's conversation length cap
    TRANSIENT = "transient"  # network, server restart, overload: back off and retry
    CONFIG = "config"  # key, agent, override, quota: retry slowly and say why


@dataclass(frozen=True)
class SessionEnd:
    """The class of one session's end, a reason for the log, and a server-given retry floor."""

    end_class: EndClass
    reason: str
    retry_after_s: float | None = None


# Failures detected before or outside a close frame. `bad_url`: the URL built from the config is
# unusable (a configuration problem); `protocol`: the peer answered, but not in HTTP/WebSocket.
FAILURES = (
    "refused",
    "dns",
    "tls",
    "timeout",
    "network",
    "half_open",
    "metadata_timeout",
    "oversize",
    "bad_url",
    "protocol",
)

TRY_AGAIN_S = 2.0  # 1013 "try again later" without a Retry-After: wait at least this long

_DURATION_TEXT = ("exceeded maximum duration", "maximum duration exceeded", "max_duration")


def _is_quota(text: str) -> bool:
    t = text.lower()
    return "quota" in t or "credits" in t or "entitlement" in t


def _config_cause(error_type: str, text: str) -> str:
    t = f"{error_type} {text}".lower()
    if _is_quota(t):
        return "quota exceeded"
    if "override" in t:
        return "override not enabled for this agent"
    if "dynamic_variable" in t or "dynamic variable" in t:
        return "a dynamic variable the prompt needs is missing"
    if "agent" in t and ("not found" in t or "does not exist" in t or "invalid agent" in t):
        return "agent id not found"
    if "api key" in t or "api_key" in t or "unauthori" in t or "signature" in t:
        return "API key rejected"
    if "misconfigured" in t:
        return "the agent is misconfigured"
    return "the service rejected the session"


def classify_end(
    *,
    close_code: int | None = None,
    close_reason: str = "",
    error_type: str | None = None,
    error_message: str | None = None,
    http_status: int | None = None,
    retry_after_s: float | None = None,
    failure: str | None = None,
    local: bool = False,
) -> SessionEnd:
    """Classify one session end.

    close_code: the close frame received (None when none was, i.e. 1006 or no socket);
    error_type/error_message: the last `error` event of the session (nested or flat);
    http_status/retry_after_s: a rejected handshake or signed-URL fetch;
    failure: one of FAILURES when the end was detected locally;
    local: we closed the session ourselves (end_conversation, idle close, shutdown, rollover).
    """
    etype = (error_type or "").lower()
    emsg = error_message or ""
    code_text = f"close {close_code} {close_reason!r}".strip() if close_code else ""
    # Failures seen before any session existed.
    if http_status is not None:
        if http_status == 401:
            return SessionEnd(EndClass.CONFIG, "HTTP 401: API key rejected")
        if http_status == 403:
            return SessionEnd(
                EndClass.CONFIG, "HTTP 403: API key rejected or agent not allowed for this key"
            )
        if http_status == 404:
            return SessionEnd(EndClass.CONFIG, "HTTP 404: agent id not found")
        if http_status == 429:
            return SessionEnd(
                EndClass.TRANSIENT,
                "HTTP 429: too many requests or concurrent conversations",
                retry_after_s,
            )
        if http_status >= 500:
            return SessionEnd(
                EndClass.TRANSIENT, f"HTTP {http_status}: service error", retry_after_s
            )
        if 300 <= http_status < 400:
            return SessionEnd(
                EndClass.CONFIG,
                f"HTTP {http_status}: redirect refused (the API key is never sent on; set "
                "agent.api_base to the service's own URL)",
            )
        return SessionEnd(EndClass.CONFIG, f"HTTP {http_status}: request rejected")
    # A quota error frame is fatal until fixed, whatever close follows it.
    if emsg and _is_quota(emsg) or _is_quota(etype) or _is_quota(close_reason):
        return SessionEnd(EndClass.CONFIG, f"quota exceeded: {emsg or close_reason}".strip())
    # The duration cap: an error event, a 1000 after it, or the older 1011 reason text.
    if etype == "max_duration_exceeded" or (
        close_code in (1000, 1011) and any(t in close_reason.lower() for t in _DURATION_TEXT)
    ):
        return SessionEnd(EndClass.DURATION_CAP, "conversation reached the maximum duration")
    if local and failure is None:
        return SessionEnd(EndClass.NORMAL, f"closed by us: {close_reason or 'done'}")
    if failure == "bad_url":
        return SessionEnd(EndClass.CONFIG, f"agent.api_base is not usable: {emsg or 'bad URL'}")
    if failure is not None:
        text = {
            "refused": "connection refused",
            "dns": "name resolution failed",
            "tls": "TLS handshake failed",
            "timeout": "connection timed out",
            "network": "network error",
            "half_open": "no answer to a link probe (half-open connection)",
            "metadata_timeout": "no conversation metadata in time",
            "oversize": "the service sent a frame over our size limit (1009)",
            "protocol": "the peer did not answer in HTTP/WebSocket",
        }.get(failure, failure)
        detail = f": {emsg}" if emsg else ""
        return SessionEnd(EndClass.TRANSIENT, text + detail)
    if close_code in (1000, 1001):
        return SessionEnd(EndClass.NORMAL, f"{code_text}: conversation ended")
    if close_code == 1008 or close_code == 3000 or (close_code or 0) // 1000 == 4:
        cause = _config_cause(etype, f"{emsg} {close_reason}")
        return SessionEnd(EndClass.CONFIG, f"{code_text}: {cause}")
    if close_code == 1002 and (
        etype in ("override_error", "value_error")
        or "misconfigured" in f"{emsg} {close_reason}".lower()
    ):
        cause = _config_cause(etype, f"{emsg} {close_reason}")
        return SessionEnd(EndClass.CONFIG, f"{code_text}: {cause}")
    if close_code is None:
        return SessionEnd(EndClass.TRANSIENT, "connection lost without a close frame (1006)")
    if close_code == 1013:
        return SessionEnd(EndClass.TRANSIENT, f"{code_text}: retryable", TRY_AGAIN_S)
    # 1002 (service-side timeouts and failures), 1006, 1011, 1012, 1013 and anything else.
    detail = f" ({etype})" if etype else ""
    return SessionEnd(EndClass.TRANSIENT, f"{code_text}{detail}: retryable")


@dataclass(frozen=True)
class Decision:
    """What to do after a session end: wait delay_s, then open the next session (if wanted)."""

    delay_s: float
    attempt: int  # consecutive failed attempts so far (0 after a good session)
    degraded: bool
    reason: str


_DEFAULTS = ReconnectConfig()
MAX_RETRY_AFTER_S = 3600.0  # a server-given floor longer than this is not believed


def _seconds(value: float | None, fallback: float) -> float:
    """`value` if it is a finite number >= 0, else `fallback` (NaN and infinity never pass)."""
    if value is None or not math.isfinite(value) or value < 0:
        return fallback
    return float(value)


class ReconnectPolicy:
    """Backoff with full jitter, reset after a stable session, and a quick-failure breaker.

    Every delay it returns is finite: a NaN or infinite setting or Retry-After falls back to
    the default (the config loader refuses them; this is the policy's own guarantee)."""

    def __init__(self, cfg: ReconnectConfig, rng: random.Random | None = None) -> None:
        self._cfg = cfg
        self._rng = rng or random.Random()
        self._failures = 0  # consecutive transient failures (backoff exponent)
        self._quick = 0  # consecutive sessions that died within quick_failure_s
        self.degraded = False

    def update_config(self, cfg: ReconnectConfig) -> None:
        self._cfg = cfg

    @property
    def attempt(self) -> int:
        return self._failures

    def reset(self) -> None:
        """Forget past failures (a user-initiated fresh start after a clean end)."""
        self._failures = 0
        self._quick = 0
        self.degraded = False

    def backoff_s(self, n: int) -> float:
        """Full jitter: uniform(0, min(max_s, initial_s * 2**n))."""
        initial = _seconds(self._cfg.initial_s, _DEFAULTS.initial_s)
        cap = min(_seconds(self._cfg.max_s, _DEFAULTS.max_s), initial * 2.0 ** min(n, 60))
        return self._rng.uniform(0.0, cap)

    def session_ended(
        self, end: SessionEnd, lifetime_s: float | None, worked: bool = False
    ) -> Decision:
        """Record one end. lifetime_s is None when no session opened (a connect failure);
        worked: the session got its metadata and exchanged turns, so the service was fine."""
        cfg = self._cfg
        opened = lifetime_s is not None
        quick = opened and lifetime_s is not None and lifetime_s < cfg.quick_failure_s
        if worked:
            quick = False
        if opened and not quick:
            self._quick = 0
            if end.end_class is not EndClass.CONFIG:
                self.degraded = False
        if worked or (opened and lifetime_s is not None and lifetime_s >= cfg.stable_after_s):
            self._failures = 0
        if quick and end.end_class is not EndClass.DURATION_CAP:
            self._quick += 1
        floor = min(_seconds(end.retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        degraded_s = _seconds(cfg.degraded_s, _DEFAULTS.degraded_s)
        config_end = end.end_class is EndClass.CONFIG
        if config_end and worked and not self.degraded:
            delay = max(self.backoff_s(self._failures), floor)
            self._failures += 1
            return Decision(delay, self._failures, False, end.reason)
        if config_end:
            self.degraded = True
            return Decision(max(degraded_s, floor), self._failures, True, end.reason)
        if self._quick >= cfg.quick_failures:
            self.degraded = True
            reason = (
                f"{self._quick} sessions in a row closed within {cfg.quick_failure_s:g} s of "
                f"opening (likely cause: agent configuration or overrides): {end.reason}"
            )
            return Decision(max(degraded_s, floor), self._failures, True, reason)
        if self.degraded and end.end_class is EndClass.TRANSIENT:
            return Decision(max(degraded_s, floor), self._failures, True, end.reason)
        if end.end_class is EndClass.TRANSIENT:
            delay = max(self.backoff_s(self._failures), floor)
            self._failures += 1
            return Decision(delay, self._failures, False, end.reason)
        # NORMAL and DURATION_CAP: no wait.
        self.degraded = False
        return Decision(floor, self._failures, False, end.reason)
