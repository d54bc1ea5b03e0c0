"""The usage ledger and the daily limit: pure rules, and the file in the state directory."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from voicebox.usage import FILE_NAME, KEEP_DAYS, DailyLimit, UsageLedger

NOON = dt.datetime(2026, 12, 7, 12, 0)


def test_seconds_are_counted_per_local_day_and_month_with_the_quiet_part_apart() -> None:
    ledger = UsageLedger()
    ledger.add(NOON, 90.0, quiet=False)
    ledger.add(NOON, 30.0, quiet=True)
    ledger.add(NOON, -5.0, quiet=True)  # a clock step backwards counts nothing
    ledger.add(NOON - dt.timedelta(days=1), 60.0, quiet=False)
    ledger.add(dt.datetime(2026, 11, 30, 23, 59), 600.0, quiet=False)  # last month
    today = ledger.day(NOON.date())
    assert (today.open_s, today.quiet_s) == (120.0, 30.0)
    assert ledger.month(NOON.date()).open_s == 180.0
    assert ledger.summary(NOON) == {
        "today_minutes": 2.0,
        "today_quiet_minutes": 0.5,
        "month_minutes": 3.0,
        "month_quiet_minutes": 0.5,
    }
    assert ledger.day(dt.date(2027, 1, 1)).open_s == 0.0


def test_the_ledger_survives_a_restart_and_keeps_a_bounded_history(tmp_path: Path) -> None:
    ledger = UsageLedger.load(tmp_path / "state")  # no file yet: empty, no warning
    assert ledger.days == {}
    start = dt.datetime(2025, 1, 1, 8, 0)
    for n in range(KEEP_DAYS + 5):
        ledger.add(start + dt.timedelta(days=n), 60.0, quiet=n % 2 == 0)
    ledger.save()
    assert not list((tmp_path / "state").glob(".usage.*"))  # the temporary file was renamed
    again = UsageLedger.load(tmp_path / "state")
    assert len(again.days) == KEEP_DAYS
    assert min(again.days) == (start + dt.timedelta(days=5)).date().isoformat()
    last = (start + dt.timedelta(days=KEEP_DAYS + 4)).date()
    assert again.day(last).open_s == 60.0 and again.day(last).quiet_s == 60.0


@pytest.mark.parametrize(
    "content", ["{not json", '{"days": {"2026-13-01": {"open_s": 1, "quiet_s": 0}}}', '{"days": 3}']
)
def test_an_unreadable_ledger_is_logged_and_started_afresh(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILE_NAME).write_text(content)
    with caplog.at_level(logging.WARNING):
        ledger = UsageLedger.load(tmp_path)
    assert ledger.days == {}
    assert any("usage.unreadable" in r.getMessage() for r in caplog.records)
    ledger.add(NOON, 1.0, quiet=False)
    ledger.save()  # the bad file is replaced, not kept
    assert json.loads((tmp_path / FILE_NAME).read_text())["days"]["2026-12-07"]["open_s"] == 1.0


def test_a_ledger_that_cannot_be_written_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    ledger = UsageLedger(blocker / "state" / FILE_NAME)  # its directory cannot be made
    ledger.add(NOON, 1.0, quiet=False)
    with caplog.at_level(logging.WARNING):
        ledger.save()
    assert any("usage.not_stored" in r.getMessage() for r in caplog.records)


def test_the_daily_limit_blocks_until_midnight_but_for_one_conversation_more() -> None:
    ledger = UsageLedger()
    assert not DailyLimit(None).blocks(ledger, NOON)
    ledger.add(NOON, 5 * 60 - 1, quiet=False)
    limit = DailyLimit(5)
    assert not limit.reached(ledger, NOON)
    ledger.add(NOON, 1, quiet=True)
    assert limit.reached(ledger, NOON) and limit.blocks(ledger, NOON)
    limit.allow_one(NOON)
    assert limit.overridden(NOON) and not limit.blocks(ledger, NOON)
    assert limit.blocks(ledger, NOON) is False
    limit.end_override()
    assert limit.blocks(ledger, NOON)
    tomorrow = NOON + dt.timedelta(hours=13)
    assert not limit.blocks(ledger, tomorrow)  # a new day, a new allowance
    limit.allow_one(NOON)  # an override of yesterday's does not carry into today
    assert not limit.overridden(tomorrow)
