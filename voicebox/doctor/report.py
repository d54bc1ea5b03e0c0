"""Check results and how they are shown: one line each, or JSON; the exit status."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One check's verdict. `fix` is one sentence, present for every warn and fail."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.upper():<4}  {self.name:<22} {self.detail}"
        if self.status != "ok" and self.fix:
            text += f"  -> {self.fix}"
        return text


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, "warn", detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, "fail", detail, fix)


def exit_code(checks: Iterable[Check]) -> int:
    """0 when nothing failed, 1 otherwise."""
    return 1 if any(c.status == "fail" for c in checks) else 0


def summary(checks: list[Check]) -> str:
    counts = {s: sum(1 for c in checks if c.status == s) for s in ("ok", "warn", "fail")}
    return f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failures"


def as_json(checks: list[Check]) -> str:
    return json.dumps(
        {
            "ok": exit_code(checks) == 0,
            "summary": summary(checks),
            "checks": [asdict(c) for c in checks],
        },
        indent=2,
    )
