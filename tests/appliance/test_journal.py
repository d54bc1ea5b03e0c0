"""journald fields through voicebox.logs' handler, with a sender that records what it is given."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from voicebox import logs
from voicebox.logs import event


class Sender:
    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    def __call__(self, MESSAGE: str, **fields: Any) -> None:  # noqa: N803 - journal.send's name
        self.sent.append({"MESSAGE": MESSAGE, **fields})


@pytest.fixture
def journal() -> Iterator[tuple[logging.Logger, Sender]]:
    sender = Sender()
    log = logging.getLogger(f"voicebox.test.{secrets.token_hex(4)}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    handler = logs.journal_handler(sender)
    log.addHandler(handler)
    yield log, sender
    log.removeHandler(handler)


@pytest.fixture
def secret() -> Iterator[str]:
    value = "sk_" + secrets.token_hex(16)
    logs.register_secret(value)
    yield value
    logs._SECRETS.discard(value)


def test_event_fields_are_upper_case_journal_fields(journal: tuple[logging.Logger, Sender]) -> None:
    log, sender = journal
    event(
        log,
        "session.closed",
        logging.WARNING,
        state="reconnecting",
        conversation_id="conv_1",
        close_code=1012,
        close_reason="service restart",
        attempt=2,
        delay_s=0.5,
        device=None,
    )
    (rec,) = sender.sent
    assert rec["SYSLOG_IDENTIFIER"] == "voicebox"
    assert rec["PRIORITY"] == "4"
    assert rec["EVENT"] == "session.closed"
    assert rec["STATE"] == "reconnecting"
    assert rec["CONVERSATION_ID"] == "conv_1"
    assert rec["CLOSE_CODE"] == "1012"
    assert rec["CLOSE_REASON"] == "service restart"
    assert rec["ATTEMPT"] == "2"
    assert "DEVICE" not in rec  # None fields are left out
    assert rec["MESSAGE"].startswith("session.closed state=reconnecting conversation_id=conv_1")
    assert "close_reason='service restart'" in rec["MESSAGE"]
    assert all(isinstance(v, str) for k, v in rec.items() if k != "CODE_LINE")
    assert isinstance(rec["CODE_LINE"], int)  # what systemd.journal.send requires


def test_priorities_follow_levels(journal: tuple[logging.Logger, Sender]) -> None:
    log, sender = journal
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        event(log, "x", level)
    assert [r["PRIORITY"] for r in sender.sent] == ["7", "6", "4", "3", "2"]


def test_invalid_field_names_are_dropped(journal: tuple[logging.Logger, Sender]) -> None:
    log, sender = journal
    fields = {"lower": 1, "_SOURCE_REALTIME": 2, "BAD-KEY": 3, "1ST": 4, "GOOD_KEY": 5}
    log.info("raw", extra=fields)
    (rec,) = sender.sent
    assert rec["GOOD_KEY"] == "5"
    for key in ("lower", "_SOURCE_REALTIME", "BAD-KEY", "1ST"):
        assert key not in rec
    assert all(k == k.upper() for k in rec)


def test_secret_never_reaches_the_journal(
    journal: tuple[logging.Logger, Sender], secret: str
) -> None:
    log, sender = journal
    event(log, "signed_url.fetched", url=f"wss://x/?token={secret}", api_key=secret)
    log.info("header xi-api-key: %s", secret)
    try:
        raise ValueError(f"rejected key {secret}")
    except ValueError:
        log.exception("request failed")
    assert len(sender.sent) == 3
    for rec in sender.sent:
        for key, value in rec.items():
            assert secret not in str(value), key
    assert "***" in sender.sent[0]["URL"]
    assert "***" in sender.sent[1]["MESSAGE"]
    assert "rejected key ***" in sender.sent[2]["MESSAGE"]


def test_fields_named_like_journal_handler_fields_are_renamed_not_lost(
    journal: tuple[logging.Logger, Sender],
) -> None:
    log, sender = journal
    event(log, "session.error", logging.WARNING, message="Maximum duration exceeded", logger="x")
    (rec,) = sender.sent  # a clash with JournalHandler's own keywords would lose the record
    assert rec["EVENT_MESSAGE"] == "Maximum duration exceeded"
    assert rec["EVENT_LOGGER"] == "x"
    assert rec["LOGGER"] == log.name
    assert rec["MESSAGE"].startswith("session.error message='Maximum duration exceeded'")


def test_the_real_journal_send_accepts_what_the_handler_passes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", True)
    log = logging.getLogger(f"voicebox.test.{secrets.token_hex(4)}")
    log.propagate = False
    handler = logs.journal_handler()  # systemd.journal.send itself (no journald needed)
    log.addHandler(handler)
    try:
        event(log, "session.closed", close_code=1012, delay_s=0.5, message="m")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("with a traceback")
    finally:
        log.removeHandler(handler)
    assert "Logging error" not in capsys.readouterr().err


def test_the_handler_is_systemds_journal_handler() -> None:
    from systemd.journal import JournalHandler

    assert isinstance(logs.journal_handler(Sender()), JournalHandler)


def test_a_failing_sender_does_not_raise(
    journal: tuple[logging.Logger, Sender], monkeypatch: pytest.MonkeyPatch
) -> None:
    log, sender = journal

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("journal socket gone")

    handler = log.handlers[0]
    monkeypatch.setattr(handler, "send", broken)
    monkeypatch.setattr(logging, "raiseExceptions", False)
    event(log, "still.alive", state="idle")  # must not raise
