"""classify_end for every way a session ends, and ReconnectPolicy with a seeded RNG."""

from __future__ import annotations

import random

import pytest

from voicebox.config import ReconnectConfig
from voicebox.convai.policy import EndClass, ReconnectPolicy, SessionEnd, classify_end

N, D, T, C = EndClass.NORMAL, EndClass.DURATION_CAP, EndClass.TRANSIENT, EndClass.CONFIG


@pytest.mark.parametrize(
    ("kwargs", "expected", "cause"),
    [
        ({"close_code": 1000, "close_reason": ""}, N, "conversation ended"),
        ({"close_code": 1001}, N, ""),
        ({"close_code": 1000, "local": True, "close_reason": "idle"}, N, "closed by us"),
        ({"close_code": 1000, "error_type": "max_duration_exceeded"}, D, "maximum duration"),
        ({"close_code": None, "error_type": "max_duration_exceeded"}, D, ""),
        ({"close_code": 1011, "close_reason": "Conversation has exceeded maximum duration"}, D, ""),
        ({"close_code": 1000, "close_reason": "Maximum duration exceeded"}, D, ""),
        ({"close_code": 1011, "close_reason": "internal error"}, T, ""),
        ({"close_code": 1012, "close_reason": "service restart"}, T, ""),
        ({"close_code": 1013}, T, ""),
        ({"close_code": 1002, "error_type": "llm_timeout"}, T, ""),
        ({"close_code": None}, T, "1006"),
        ({"failure": "refused"}, T, "refused"),
        ({"failure": "dns"}, T, "name resolution"),
        ({"failure": "tls"}, T, "TLS"),
        ({"failure": "timeout"}, T, "timed out"),
        ({"failure": "half_open"}, T, "half-open"),
        ({"failure": "metadata_timeout", "local": True}, T, "metadata"),
        ({"http_status": 302}, C, "redirect refused"),
        ({"failure": "bad_url", "error_message": "'https://': no host name"}, C, "api_base"),
        ({"failure": "protocol", "error_message": "BadStatusLine"}, T, "HTTP/WebSocket"),
        ({"http_status": 500}, T, "HTTP 500"),
        ({"http_status": 503, "retry_after_s": 2.0}, T, ""),
        ({"http_status": 429, "retry_after_s": 7.0}, T, "429"),
        ({"http_status": 401}, C, "API key rejected"),
        ({"http_status": 403}, C, "API key"),
        ({"http_status": 404}, C, "agent id not found"),
        ({"close_code": 1008, "close_reason": "policy violation"}, C, "rejected"),
        (
            {"close_code": 1008, "error_type": "override_error", "error_message": "x"},
            C,
            "override not enabled",
        ),
        ({"close_code": 1008, "close_reason": "Invalid agent: not found"}, C, "agent id not found"),
        ({"close_code": 3000, "close_reason": "request error"}, C, ""),
        ({"close_code": 4001, "close_reason": "whatever"}, C, ""),
        (
            {"close_code": 1002, "error_message": "This request exceeds your quota limit."},
            C,
            "quota exceeded",
        ),
        (
            {
                "close_code": 1000,
                "error_message": "received 1002 (protocol error) This request "
                "exceeds your quota limit.",
            },
            C,
            "quota",
        ),
        (
            {
                "close_code": 1002,
                "close_reason": "The AI agent you are trying to reach appears to be misconfigured",
            },
            C,
            "misconfigured",
        ),
    ],
)
def test_classify_end(kwargs: dict[str, object], expected: EndClass, cause: str) -> None:
    end = classify_end(**kwargs)  # type: ignore[arg-type]
    assert end.end_class is expected, end
    assert cause in end.reason


def test_retry_after_is_kept() -> None:
    assert classify_end(http_status=429, retry_after_s=7.0).retry_after_s == 7.0


CFG = ReconnectConfig(
    initial_s=0.5,
    max_s=8.0,
    degraded_s=300.0,
    stable_after_s=30.0,
    quick_failure_s=5.0,
    quick_failures=3,
)
TRANSIENT = SessionEnd(T, "1012")


def test_full_jitter_bounds_and_cap() -> None:
    policy = ReconnectPolicy(CFG, random.Random(1))
    caps = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    for i, cap in enumerate(caps):
        d = policy.session_ended(TRANSIENT, None)  # connect failures: never a quick session
        assert 0.0 <= d.delay_s <= cap
        assert d.attempt == i + 1
        assert not d.degraded
    # Full jitter really spreads over [0, cap]: many draws at the cap cover both halves.
    draws = [policy.backoff_s(10) for _ in range(200)]
    assert max(draws) <= 8.0
    assert min(draws) < 2.0 < 6.0 < max(draws)


def test_backoff_resets_after_a_stable_session() -> None:
    policy = ReconnectPolicy(CFG, random.Random(2))
    for _ in range(4):
        policy.session_ended(TRANSIENT, None)
    assert policy.attempt == 4
    d = policy.session_ended(TRANSIENT, 31.0)  # lived longer than stable_after_s
    assert d.attempt == 1 and d.delay_s <= 0.5
    d = policy.session_ended(TRANSIENT, 10.0)  # not stable: keeps growing
    assert d.attempt == 2 and d.delay_s <= 1.0


def test_quick_failure_breaker_degrades_and_recovers() -> None:
    policy = ReconnectPolicy(CFG, random.Random(3))
    normal = SessionEnd(N, "close 1000")
    assert not policy.session_ended(normal, 0.5).degraded
    assert not policy.session_ended(TRANSIENT, 1.0).degraded
    d = policy.session_ended(normal, 2.0)
    assert d.degraded and d.delay_s == 300.0
    assert "3 sessions in a row" in d.reason
    # While degraded, transient failures retry at the degraded period: no hot loop.
    assert policy.session_ended(TRANSIENT, None).delay_s == 300.0
    # A session that lives past quick_failure_s ends the degraded mode.
    d = policy.session_ended(TRANSIENT, 6.0)
    assert not d.degraded and d.delay_s <= 8.0
    assert not policy.degraded


def test_connect_failures_do_not_trip_the_breaker() -> None:
    policy = ReconnectPolicy(CFG, random.Random(4))
    for _ in range(10):
        assert not policy.session_ended(SessionEnd(T, "refused"), None).degraded


def test_config_end_is_degraded_at_once() -> None:
    policy = ReconnectPolicy(CFG, random.Random(5))
    d = policy.session_ended(classify_end(http_status=401), None)
    assert d.degraded and d.delay_s == 300.0 and "API key" in d.reason


def test_retry_after_is_a_floor() -> None:
    policy = ReconnectPolicy(CFG, random.Random(6))
    d = policy.session_ended(classify_end(http_status=429, retry_after_s=7.5), None)
    assert d.delay_s >= 7.5
    cfg = ReconnectConfig(degraded_s=5.0)
    d = ReconnectPolicy(cfg).session_ended(SessionEnd(C, "quota", 9.0), None)
    assert d.delay_s == 9.0


def test_duration_cap_is_immediate_and_not_a_quick_failure() -> None:
    policy = ReconnectPolicy(CFG, random.Random(7))
    for _ in range(5):
        d = policy.session_ended(SessionEnd(D, "cap"), 1.0)
        assert d.delay_s == 0.0 and not d.degraded


def test_a_session_that_worked_resets_the_backoff_however_short() -> None:
    # the dense chaos run: 12-16 s sessions with 8-12 turns waited 9.8, 17.7, 47 s
    policy = ReconnectPolicy(CFG, random.Random(11))
    drop = SessionEnd(T, "1006")
    for _ in range(6):
        policy.session_ended(drop, None)  # refusals: the exponent grows
    assert policy.attempt == 6
    d = policy.session_ended(drop, 12.0, worked=True)
    assert d.attempt == 1 and d.delay_s <= CFG.initial_s
    d = policy.session_ended(drop, 14.0, worked=False)  # lived, but no turns: no proof
    assert d.attempt == 2


def test_1013_and_retry_after_still_set_a_floor_after_a_working_session() -> None:
    policy = ReconnectPolicy(CFG, random.Random(12))
    end = classify_end(close_code=1013, close_reason="try again later")
    assert end.end_class is T and end.retry_after_s is not None
    d = policy.session_ended(end, 12.0, worked=True)
    assert d.delay_s >= end.retry_after_s
    d = policy.session_ended(SessionEnd(T, "HTTP 503", 7.0), 12.0, worked=True)
    assert d.delay_s >= 7.0


def test_a_config_end_after_a_working_session_is_retried_and_one_without_proof_degrades() -> None:
    policy = ReconnectPolicy(CFG, random.Random(13))
    quota = SessionEnd(C, "quota exceeded")
    d = policy.session_ended(quota, 20.0, worked=True)
    assert not d.degraded and d.delay_s <= CFG.initial_s
    for _ in range(3):  # refusals in between do not use the retry up
        policy.session_ended(SessionEnd(T, "HTTP 429", 1.0), None)
    # make chaos, seed 13: a session that worked (5 turns) then got a 1008 went degraded for
    # 300 s because an earlier quota end had used the one retry up
    d = policy.session_ended(SessionEnd(C, "1008"), 5.4, worked=True)
    assert not d.degraded
    d = policy.session_ended(quota, 2.0, worked=False)
    assert d.degraded
    fresh = ReconnectPolicy(CFG, random.Random(14))
    assert fresh.session_ended(quota, 20.0, worked=False).degraded  # no proof: degraded at once


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_no_decision_delay_is_ever_non_finite(bad: float) -> None:
    """asyncio.timeout(nan) never fires: whatever the settings or the server's Retry-After say,
    the policy hands out finite, non-negative delays."""
    cfg = ReconnectConfig(initial_s=bad, max_s=bad, degraded_s=bad, quick_failure_s=bad)
    policy = ReconnectPolicy(cfg, random.Random(4))
    ends = [
        TRANSIENT,
        SessionEnd(T, "overloaded", retry_after_s=bad),
        SessionEnd(C, "quota", retry_after_s=bad),
        TRANSIENT,
        SessionEnd(D, "cap", retry_after_s=bad),
        SessionEnd(N, "close 1000", retry_after_s=bad),
    ]
    delays = [
        policy.session_ended(end, lifetime).delay_s for end in ends for lifetime in (None, 1.0)
    ]
    delays += [policy.backoff_s(n) for n in range(70)]
    assert all(0.0 <= d < float("inf") for d in delays), delays
    assert policy.session_ended(SessionEnd(C, "quota"), None).delay_s == 300.0  # the default
