"""`voicebox doctor`'s conversation-time check: the minutes counted today and this month."""

from __future__ import annotations

import datetime as dt

from voicebox.config import Config
from voicebox.doctor.report import Check, ok, warn
from voicebox.usage import DailyLimit, UsageLedger


def check_usage(cfg: Config, now: dt.datetime | None = None) -> Check:
    """What the ledger in the state directory says, against conversation.daily_limit_minutes."""
    when = now or dt.datetime.now()
    ledger = UsageLedger.load(cfg.paths.state_dir)
    s = ledger.summary(when)
    limit = cfg.conversation.daily_limit_minutes
    detail = (
        f"today {s['today_minutes']:.1f} min ({s['today_quiet_minutes']:.1f} at the silence "
        f"rate), this month {s['month_minutes']:.1f} min; "
        + (f"daily limit {limit:g} min" if limit is not None else "no daily limit")
    )
    if limit is None and cfg.conversation.mode == "always_on" and s["today_minutes"] > 8 * 60:
        return warn(
            "conversation time",
            detail,
            "always_on keeps a billed conversation open: wake_word, or "
            "conversation.daily_limit_minutes",
        )
    if DailyLimit(limit).reached(ledger, when):
        return warn("conversation time", detail + " (reached)", "it resets at midnight")
    return ok("conversation time", detail)
