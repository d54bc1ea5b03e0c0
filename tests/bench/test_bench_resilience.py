"""bench_resilience.py --quick runs end to end and reports both clients on the 1012 scenario."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_resilience.py"


def test_quick_run_prints_a_row_per_client() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--seconds", "6"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Link faults")
    rows = [line for line in lines if line.startswith("| 1012 close")]
    assert [r.split("|")[2].strip().split()[0] for r in rows] == ["voicebox", "SDK"]
    ours, sdk = (r.split("|") for r in rows)
    # voicebox reconnects after a 1012 and the user's audio reaches the second session;
    # the SDK ends the conversation and reports the close code.
    assert ours[3].strip().startswith("yes")
    assert ours[6].strip() == "2 / 2"
    assert sdk[3].strip() == "**no**"
    assert "code=1012" in sdk[9]
